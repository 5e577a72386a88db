"""The probing session: the shared settings (and their old home, the dynamics section), one load
per input set, and a new analysis that every driver runs with no edit of its own (trained live,
probed offline, in the notebook API)."""

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest
import torch
import yaml
from jsonargparse import Namespace
from train_helpers import check_ok, launch_train, probe_here, read_numbers, train_here

from attnconv_pl import analyses
from attnconv_pl.analyses.base import Analysis, AnalysisResult, LabelledInputs, MetricFamily
from attnconv_pl.analyses.session import ProbingSession, ProbingSettings, probing_settings_of, settings_for
from attnconv_pl.analyses.single_node import SingleNodeSettings
from attnconv_pl.analyses.stiffness import StiffnessSettings
from callbacks.probing_session import move_legacy_probing_keys


@dataclass(frozen=True)
class MeanSettings:
    """Settings of the made-up analysis below.

    Args:
        scale: multiplies the number.
        seed: draws the inputs (None: the session's).
        probe_size: inputs (None: the session's).
    """

    scale: float = 1.0
    seed: Optional[int] = None
    probe_size: Optional[int] = None


class MeanInput(Analysis):
    """A made-up analysis no driver knows: ``scale`` times the mean of its inputs, and the mean
    logit of the network on them."""

    name = "mean_input"
    settings_type = MeanSettings
    families = (MetricFamily("mean_input", "Mean input", r"mean_(input|logit)"),)

    def probe_checkpoint(self, checkpoint):
        inputs = checkpoint.inputs("val", self.settings.probe_size)
        with torch.no_grad():
            logits = checkpoint.model(inputs.images.to(checkpoint.device))
        return AnalysisResult(checkpoint.epoch, {("", "mean_input"): self.settings.scale * inputs.images.mean().item(),
                                                 ("", "mean_logit"): logits.mean().item()})

    def run(self, epoch, **needs):
        raise NotImplementedError


@pytest.fixture
def registered(monkeypatch):
    """:class:`MeanInput` in the registry, as one line of ``ANALYSES`` would put it."""
    monkeypatch.setitem(analyses.ANALYSES, "mean_input", (__name__, "MeanInput"))


def test_shared_settings_of_a_config_made_before_the_probing_section_are_read_from_dynamics():
    old = {"dynamics": {"seed": 3, "batch_size": 64, "probe_split": "test", "probe_size": 50, "layers": None}}
    assert probing_settings_of(old) == ProbingSettings(seed=3, batch_size=64, probe_split="test", probe_size=50)
    new = {"probing": {"seed": 4, "probe_size": 20}, "dynamics": {"seed": None, "probe_size": None}}
    assert probing_settings_of(new) == ProbingSettings(seed=4, probe_size=20)
    assert probing_settings_of(new, {"seed": 9}).seed == 9
    with pytest.raises(ValueError, match="probe_size must be >= 1"):
        probing_settings_of({"probing": {"probe_size": 0}})


def test_the_session_fills_only_the_shared_fields_an_analysis_leaves_open():
    shared = ProbingSettings(seed=5, batch_size=32, probe_split="test", probe_size=70)
    assert shared.fill(StiffnessSettings(seed=1)) == StiffnessSettings(seed=1, batch_size=32, probe_split="test",
                                                                       probe_size=70)
    assert shared.fill(SingleNodeSettings()).seed == 5 and shared.fill(SingleNodeSettings()).train_split == "train"
    with pytest.raises(ValueError, match="stiffness has no setting.s. sed; its settings are: probe_split"):
        settings_for("stiffness", {}, {"sed": 1})
    assert settings_for("stiffness", {"enabled": True, "seed": 2}, {}).seed == 2  # a section's extra keys: ignored


def test_the_session_loads_each_input_set_once_for_every_analysis(registered):
    loads = []

    def load(split, size, seed):
        loads.append((split, size, seed))
        generator = torch.Generator().manual_seed(seed)
        return LabelledInputs(torch.randn(size, 3, generator=generator), torch.zeros(size, dtype=torch.long),
                              torch.arange(size), "made-up", split, own_data=True)

    session = ProbingSession(ProbingSettings(seed=2, probe_size=30), load, torch.device("cpu"))
    model = torch.nn.Linear(3, 2)
    built = {"a": session.build("mean_input", MeanSettings(), model),
             "b": session.build("mean_input", MeanSettings(scale=2.0), model)}
    first = session.run(0, model, built)
    assert loads == [("val", 30, 2)]  # one load, shared
    means = [first.results[name].values[("", "mean_input")] for name in ("a", "b")]
    assert means[1] == pytest.approx(2 * means[0])
    assert set(first.seconds) == {"a", "b"}
    other = session.run(1, model, {"c": session.build("mean_input", MeanSettings(seed=7), model)})
    assert loads[-1] == ("val", 30, 7) and other.epoch == 1


def test_old_dynamics_keys_are_read_as_probing_keys_with_one_deprecation_line(caplog):
    config = Namespace(probing=Namespace(seed=0, batch_size=256, probe_split="val", probe_size=1000, precision=None),
                       dynamics=Namespace(seed=None, batch_size=None, probe_split="test", probe_size=100))
    move_legacy_probing_keys(config)
    assert (config.probing.probe_split, config.probing.probe_size) == ("test", 100)
    assert config.dynamics.probe_size is None and config.dynamics.probe_split is None
    deprecations = [record.getMessage() for record in caplog.records if "deprecated" in record.getMessage()]
    assert len(deprecations) == 1
    assert deprecations[0].startswith("deprecated: dynamics.probe_split, dynamics.probe_size moved to the probing: ")
    both = Namespace(probing=Namespace(seed=3), dynamics=Namespace(seed=4))  # a saved config, an old flag
    move_legacy_probing_keys(both)
    assert both.probing.seed == 4 and both.dynamics.seed is None
    old_run = Namespace(probing=Namespace(seed=0), dynamics=Namespace(seed=5))  # an old config.yaml, a new flag
    move_legacy_probing_keys(old_run, ["--config", "config.yaml", "--probing.seed", "0"])
    assert old_run.probing.seed == 0 and old_run.dynamics.seed is None


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A short run with dynamics (probe set given in the old spelling, ``--dynamics.probe_size``)
    and the made-up analysis live, trained while it is registered."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setitem(analyses.ANALYSES, "mean_input", (__name__, "MeanInput"))
        return train_here(tmp_path_factory.mktemp("runs"), "run", "--trainer.max_epochs", "1",
                          "--trainer.limit_train_batches", "2", "--trainer.logger", "false",
                          "--dynamics.probe_size", "40", "--dynamics.topology", "false",
                          "--dynamics.id_methods", "[twonn]", "--mean_input.enabled", "true",
                          "--mean_input.scale", "3", "--checkpoint.every_n_epochs", "1")


def test_a_new_analysis_runs_live_offline_and_in_the_api_with_no_driver_edit(registered, run_dir, tmp_path):
    """One line in the registry: train.py gets ``--mean_input.*`` and its training callback,
    probe.py ``--analyses mean_input``, and the live numbers equal the offline ones."""
    import attnconv_pl as ac

    live = {(epoch, metric): value for (epoch, _, metric), value in read_numbers(run_dir / "dynamics.csv").items()
            if "mean_" in metric}
    assert {metric for _, metric in live} == {"mean_input", "mean_logit", "mean_input_seconds"}
    result = probe_here(run_dir, "--out", tmp_path / "report", "--analyses", "mean_input")
    assert result.returncode == 0, result.stderr
    offline = read_numbers(tmp_path / "report" / "dynamics.csv")
    for epoch in (0, 1):
        for metric in ("mean_input", "mean_logit"):
            assert offline[(epoch, "", metric)] == pytest.approx(live[(epoch, metric)], rel=1e-6), (epoch, metric)
    images = torch.randn(10, 1, 16, 16)
    rows = ac.probe_model(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 3)), images,
                          torch.zeros(10, dtype=torch.long), analyses=["mean_input"],
                          settings={"probing": {"probe_size": 10}, "mean_input": {"scale": 2.0}})
    assert rows[0] == ("mean_input", "", "mean_input", pytest.approx(2 * images.mean().item()))


def as_made_before_the_probing_section(run: Path, into: Path) -> Path:
    """A copy of ``run`` whose ``config.yaml`` is laid out as train.py wrote it before the
    ``probing:`` section: the shared keys in ``dynamics:``, no ``probing:``."""
    copy = into / run.parent.name / run.name
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("*.lock"))
    config = yaml.safe_load((copy / "config.yaml").read_text())
    config["dynamics"].update(config.pop("probing"))
    del config["dynamics"]["precision"]
    (copy / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return copy


def test_a_run_made_before_the_probing_section_probes_and_resumes_with_its_numbers(registered, run_dir, tmp_path,
                                                                                  monkeypatch, caplog):
    old = as_made_before_the_probing_section(run_dir, tmp_path)
    logged = {key: value for key, value in read_numbers(old / "dynamics.csv").items()
              if "mean_" not in key[2] and not key[2].endswith("_seconds")}
    assert check_ok(probe_here(old, "--out", tmp_path / "report", "--analyses", "dynamics"))
    probed = read_numbers(tmp_path / "report" / "dynamics.csv")
    assert {key for key in logged} <= set(probed) and len(logged) > 20
    for key, value in logged.items():
        assert probed[key] == pytest.approx(value, rel=1e-5, abs=1e-9, nan_ok=True), key
    launch_train(monkeypatch, tmp_path, "--config", str(old / "config.yaml"), "--ckpt_path",
                 str(old / "checkpoints" / "last.ckpt"), "--trainer.max_epochs", "2")
    resumed = read_numbers(old / "dynamics.csv")
    assert {epoch for epoch, _, _ in resumed} == {0, 1, 2}
    assert resumed[(1, "mixer", "variance")] == logged[(1, "mixer", "variance")]
    assert any("deprecated: dynamics.seed, dynamics.batch_size, dynamics.probe_split, dynamics.probe_size"
               in record.getMessage() for record in caplog.records)
    saved = yaml.safe_load((old / "config.yaml").read_text())
    assert saved["probing"]["probe_size"] == 40 and saved["dynamics"]["probe_size"] is None
