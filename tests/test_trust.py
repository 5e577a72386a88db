"""Checkpoints and run directories from someone else: ``probe.py`` builds only ``ClassifierModule``
and the registered data modules, from plain values, and never imports or calls a class path
stored in a checkpoint or a ``config.yaml`` (crafted ones that try to run a command are refused
with one message, and the command does not run)."""

import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml
from train_helpers import train_here

import probe
from attnconv_pl.data import DATAMODULES
from attnconv_pl.errors import ProbeInputError
from attnconv_pl.offline.checkpoints import check_plain, data_config, datamodule_classes

TINY_RUN = ("--run_id", "tiny", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
            "--trainer.limit_val_batches", "1", "--dynamics.enabled", "false", "--trainer.logger", "false")
REGISTERED = "attnconv_pl.data.CIFAR100DataModule, attnconv_pl.data.CIFAR10DataModule, " \
             "attnconv_pl.data.DigitsDataModule, attnconv_pl.data.Flowers102DataModule"
"""The allowed names, as the refusal lists them."""
CHECKPOINT = Path("runs/default/r/checkpoints/epoch=001.ckpt")
"""A checkpoint path for the messages of unit tests (never read)."""
NESTED = {"class_path": "os.system", "init_args": {"command": "true"}}
"""An argument in jsonargparse's form of a class to build."""


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A run directory of one short digits epoch (config.yaml, checkpoints/epoch=00N.ckpt)."""
    runs_dir = tmp_path_factory.mktemp("runs")
    return train_here(runs_dir, "tiny", *TINY_RUN)


def crafted_checkpoint(trained_run, path, hyper_parameters=None, datamodule=None):
    """The run's epoch=001.ckpt saved to ``path`` with its model hyper-parameters updated by
    ``hyper_parameters`` and its data-module ones replaced by ``datamodule`` (when given)."""
    content = torch.load(trained_run / "checkpoints" / "epoch=001.ckpt", map_location="cpu", weights_only=True)
    content["hyper_parameters"].update(hyper_parameters or {})
    if datamodule is not None:
        content["datamodule_hyper_parameters"] = datamodule
    torch.save(content, path)
    return path


def crafted_run_dir(trained_run, folder, data_section):
    """A copy of the run whose checkpoints do not name their data module and whose config.yaml
    has ``data_section`` as its data section."""
    run_dir = folder / "crafted" / "run"
    shutil.copytree(trained_run, run_dir)
    for path in (run_dir / "checkpoints").glob("*.ckpt"):
        content = torch.load(path, map_location="cpu", weights_only=True)
        del content["datamodule_hyper_parameters"]
        torch.save(content, path)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["data"] = data_section
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    return run_dir


def probe_errors(capsys, *args):
    """Exit status and the ``probe.py: error:`` lines of ``probe.py ARGS...`` run in this process."""
    status = probe.main([str(arg) for arg in args])
    stderr = capsys.readouterr().err
    return status, [line for line in stderr.splitlines() if line.startswith("probe.py: error: ")]


@pytest.fixture
def marker(tmp_path):
    """A file the crafted inputs try to create by running ``touch``."""
    return tmp_path / "pwned"


@pytest.mark.slow
def test_a_checkpoint_naming_os_system_as_its_data_module_is_refused_and_nothing_runs(
        trained_run, tmp_path, marker, capsys):
    path = crafted_checkpoint(trained_run, tmp_path / "crafted.ckpt",
                              datamodule={"_class_path": "os.system", "command": f"touch {marker}"})
    status, errors = probe_errors(capsys, path, "--out", tmp_path / "report")
    assert status == 2 and len(errors) == 1, errors
    assert errors[0] == (
        f"probe.py: error: {path} names the data module 'os.system' (datamodule_hyper_parameters._class_path), "
        f"which probe.py does not build: it builds only the registered data modules ({REGISTERED}). Probe on a "
        "registered dataset with --data NAME (cifar10, cifar100, digits, flowers102)")
    assert not marker.exists() and not (tmp_path / "report").exists()


@pytest.mark.slow
def test_a_config_yaml_naming_os_system_as_its_data_module_is_refused_and_nothing_runs(
        trained_run, tmp_path, marker, capsys):
    run_dir = crafted_run_dir(trained_run, tmp_path,
                              {"class_path": "os.system", "init_args": {"command": f"touch {marker}"}})
    status, errors = probe_errors(capsys, run_dir, "--out", tmp_path / "report")
    assert status == 2 and len(errors) == 1, errors
    assert f"{run_dir.resolve() / 'config.yaml'} names the data module 'os.system' (data.class_path)" in errors[0]
    assert REGISTERED in errors[0] and "--data NAME" in errors[0]
    assert not marker.exists() and not (tmp_path / "report").exists()


@pytest.mark.slow
def test_a_metrics_csv_that_is_another_file_is_named_never_shown(trained_run, tmp_path, capsys):
    """A metrics.csv linked to someone's file: the error names the file, not one byte of it."""
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-TOKEN:x:0:0\n")
    run_dir = tmp_path / "linked" / "run"
    shutil.copytree(trained_run, run_dir)
    (run_dir / "metrics.csv").unlink()
    (run_dir / "metrics.csv").symlink_to(secret)
    status, errors = probe_errors(capsys, run_dir, "--out", tmp_path / "report", "--probing.probe_size", "50",
                                  "--dynamics.topology", "false", "--dynamics.layers", "[head]")
    assert status == 2 and len(errors) == 1, errors
    assert errors[0].startswith(f"probe.py: error: {run_dir / 'metrics.csv'} is not a metrics.csv (its first line")
    assert "SECRET" not in capsys.readouterr().out + errors[0]


@pytest.mark.slow
@pytest.mark.parametrize("case, hyper_parameters, datamodule, expected", [
    ("a real class that is no data module", {}, {"_class_path": "collections.OrderedDict", "seed": 0},
     "names the data module 'collections.OrderedDict' (datamodule_hyper_parameters._class_path)"),
    ("a data module path that is not a string", {}, {"_class_path": ["attnconv_pl.data.DigitsDataModule"]},
     "names the data module ['attnconv_pl.data.DigitsDataModule']"),
    ("a model class other than ClassifierModule", {"_class_path": "torch.nn.Identity"}, None,
     "names the model class 'torch.nn.Identity' (hyper_parameters._class_path); probe.py builds only "
     "attnconv_pl.module.ClassifierModule"),
    ("a class path inside a data module argument", {},
     {"_class_path": "attnconv_pl.data.DigitsDataModule", "data_dir": NESTED},
     "datamodule_hyper_parameters.data_dir names a class to build ('os.system')"),
    ("a class path inside a model argument", {"arch_kwargs": {"dim": NESTED}}, None,
     "hyper_parameters.arch_kwargs.dim names a class to build ('os.system')"),
    ("a model argument that is no plain value", {"arch_kwargs": {"dim": torch.tensor(64)}}, None,
     "hyper_parameters.arch_kwargs.dim is a Tensor, not a plain value"),
])
def test_a_checkpoint_naming_anything_else_is_refused_with_one_message(
        trained_run, tmp_path, capsys, case, hyper_parameters, datamodule, expected):
    path = crafted_checkpoint(trained_run, tmp_path / "crafted.ckpt", hyper_parameters, datamodule)
    status, errors = probe_errors(capsys, path, "--out", tmp_path / "report")
    assert status == 2 and len(errors) == 1, (case, errors)
    assert errors[0].startswith(f"probe.py: error: {path}") and expected in errors[0], (case, errors)


@pytest.mark.slow
def test_data_names_a_registered_dataset_and_the_stored_class_path_is_never_built(
        trained_run, tmp_path, marker, capsys):
    path = crafted_checkpoint(trained_run, tmp_path / "crafted.ckpt",
                              datamodule={"_class_path": "os.system", "command": f"touch {marker}"})
    status = probe.main([str(path), "--out", str(tmp_path / "report"), "--data", "digits:val",
                         "--probing.probe_size", "50", "--dynamics.topology", "false", "--dynamics.layers", "[head]"])
    assert status == 0, capsys.readouterr().err[-2000:]
    assert (tmp_path / "report" / "summary.json").is_file() and not marker.exists()


@pytest.mark.parametrize("name, cls", sorted(DATAMODULES.items()))
def test_a_registered_data_module_is_accepted_by_its_public_and_its_module_path(name, cls):
    public, defining = f"attnconv_pl.data.{cls.__name__}", f"{cls.__module__}.{cls.__name__}"
    assert defining != public
    for class_path in (public, defining):
        from_checkpoint = {"datamodule_hyper_parameters": {"_class_path": class_path, "seed": 3,
                                                           "_instantiator": "lightning.pytorch.cli.x"}}
        assert data_config(from_checkpoint, {}, CHECKPOINT) == (public, {"seed": 3})
        from_config = {"data": {"class_path": class_path, "init_args": {"data_dir": "d"}}}
        assert data_config({}, from_config, CHECKPOINT) == (public, {"data_dir": "d"})
    assert datamodule_classes()[public] is datamodule_classes()[defining] is cls


def test_a_class_path_is_looked_up_never_imported(tmp_path, monkeypatch):
    (tmp_path / "planted.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\n"
                                         "class DigitsDataModule: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    checkpoint = {"datamodule_hyper_parameters": {"_class_path": "planted.DigitsDataModule"}}
    with pytest.raises(ProbeInputError, match="names the data module 'planted.DigitsDataModule'"):
        data_config(checkpoint, {}, CHECKPOINT)
    assert "planted" not in sys.modules and not (tmp_path / "imported").exists()


@pytest.mark.parametrize("value", [None, True, 3, 0.5, "conv_net", [1, 2], (16, 16),
                                   {"dim": 64, "widths": [32, 64], "norm": {"eps": 1e-6}}])
def test_plain_values_pass(value):
    assert check_plain(value, "hyper_parameters.x", CHECKPOINT) is None


@pytest.mark.parametrize("value, message", [
    ({"class_path": "os.system"}, "hyper_parameters.x names a class to build ('os.system')"),
    ({"a": [{"class_path": "os.system", "init_args": {}}]}, "hyper_parameters.x.a[0] names a class to build"),
    ({1: "one"}, "hyper_parameters.x has a key 1 that is not a string"),
    (torch.zeros(2), "hyper_parameters.x is a Tensor, not a plain value"),
    ({"s": {1, 2}}, "hyper_parameters.x.s is a set, not a plain value"),
    (b"bytes", "hyper_parameters.x is a bytes, not a plain value"),
])
def test_other_values_are_refused_naming_the_argument(value, message):
    with pytest.raises(ProbeInputError, match=r"^runs/default/r/checkpoints/epoch=001\.ckpt: ") as raised:
        check_plain(value, "hyper_parameters.x", CHECKPOINT)
    assert message in str(raised.value)
