"""``probe.py`` on short digits runs: parity with the training callback, a two-run comparison
report, training records and robustness, and every bad input (one clear message, exit 2).

The runs are trained once per module, in this process; the two-run report is the one
``python probe.py`` subprocess (the end-to-end path, W&B included), the other calls run
``probe.main`` in this process."""

import base64
import csv
import json

import pytest
import torch
from train_helpers import EVERY_EPOCH, REPO, check_ok, probe_here, read_numbers, run_probe, train_here

from attnconv_pl.analyses.robustness import DEFAULT_NOISE_LEVELS
from attnconv_pl.analyses.training_records import RECORD_METRICS, read_metrics, training_records

pytestmark = pytest.mark.slow

TRAIN_ARGS = ("--trainer.max_epochs", "2", "--dynamics.probe_size", "100", "--trainer.logger", "false",
              *EVERY_EPOCH)
ROBUSTNESS = ("--analyses", "dynamics", "training_records", "robustness")


def assert_same_numbers(probed, logged):
    """Every number equal to float round-off (NaN where NaN), the cost columns (``*_seconds``,
    which differ and which the training callback has more of) and the training records (which
    probe.py reads from metrics.csv, the callback does not) excepted."""
    probed = {key: value for key, value in probed.items()
              if not key[2].endswith("_seconds") and key[2] not in RECORD_METRICS}
    logged = {key: value for key, value in logged.items() if not key[2].endswith("_seconds")}
    assert set(probed) == set(logged)
    for key, value in logged.items():
        assert probed[key] == pytest.approx(value, rel=1e-5, abs=1e-9, nan_ok=True), key


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def attention_run(runs_dir):
    return train_here(runs_dir, "attn", *TRAIN_ARGS)


@pytest.fixture(scope="module")
def conv_run(runs_dir):
    return train_here(runs_dir, "conv", "--model.init_args.arch", "conv_net", *TRAIN_ARGS)


@pytest.fixture(scope="module")
def two_run_report(attention_run, conv_run, tmp_path_factory):
    """``python probe.py ATTN CONV --out OUT --wandb``: (OUT, its output)."""
    out = tmp_path_factory.mktemp("two_runs")
    return out, check_ok(run_probe(attention_run, conv_run, "--out", out, "--wandb"))


def test_probing_a_run_reproduces_every_number_its_callback_logged(attention_run, two_run_report):
    tmp_path, _ = two_run_report
    logged = read_numbers(attention_run / "dynamics.csv")
    assert {epoch for epoch, _, _ in logged} == {0, 1, 2}
    metrics = {metric for _, _, metric in logged}
    assert {"drift_prev_w2", "drift_init_displacement", "drift_prev_h1_bottleneck", "stability_h1_w1",
            "next_h0_w2", "lipschitz_p99", "id_twonn", "h1_total_persistence"} <= metrics
    assert_same_numbers(read_numbers(tmp_path / "dynamics.csv", run="default/attn"), logged)


def test_one_checkpoint_alone_gives_the_callbacks_numbers_of_its_epoch_drift_included(attention_run, tmp_path):
    check_ok(probe_here(attention_run / "checkpoints" / "epoch=002.ckpt", "--out", tmp_path))
    logged = {key: value for key, value in read_numbers(attention_run / "dynamics.csv").items() if key[0] == 2}
    assert_same_numbers(read_numbers(tmp_path / "dynamics.csv", run="default/attn"), logged)


def test_options_override_the_runs_settings(attention_run, tmp_path):
    check_ok(probe_here(attention_run / "checkpoints" / "epoch=001.ckpt", "--out", tmp_path, "--data", "digits:test",
                       "--dynamics.layers", "[mixer, head]", "--dynamics.topology", "false", "--dynamics.id_methods",
                       "[mle]", "--probing.probe_size", "50"))
    numbers = read_numbers(tmp_path / "dynamics.csv", run="default/attn")
    assert {layer for _, layer, _ in numbers} == {"mixer", "head", ""}
    metrics = {metric for _, _, metric in numbers}
    assert "id_mle" in metrics and "id_twonn" not in metrics and not any(m.startswith("h0_") for m in metrics)
    (run,) = json.loads((tmp_path / "summary.json").read_text())["runs"]
    assert run["dataset"] == {"name": "digits", "split": "test", "probe_inputs": 50,
                              "trained_on": "attnconv_pl.data.DigitsDataModule"}
    assert run["layers"] == ["mixer", "head"] and run["settings"]["topology"] is False


def test_two_runs_are_compared_in_one_report_with_every_figure(two_run_report):
    tmp_path, output = two_run_report
    numbers = {run: read_numbers(tmp_path / "dynamics.csv", run=run) for run in ("default/attn", "default/conv")}
    metrics = {metric for run in numbers.values() for _, layer, metric in run if layer}
    figures = {path.name for path in (tmp_path / "figures").glob("*.png")}
    depth = {f"depth_{family}_{group}.png" for family in ("compactness", "stability", "next", "drift", "topology")
             for group in ("attention_net", "conv_net")}
    assert figures == {"training_curves.png", "comparison.png", "persistence_default_attn.png",
                       "persistence_default_conv.png", *depth, *(f"epochs_{metric}.png" for metric in metrics)}
    page = (tmp_path / "report.html").read_text()
    positions = {name: page.find(base64.b64encode((tmp_path / "figures" / name).read_bytes()).decode())
                 for name in figures}
    assert min(positions.values()) >= 0, "a figure is missing from report.html"
    assert min(positions, key=positions.get) == "training_curves.png"
    assert "attention_net" in page and "conv_net" in page
    markdown = (tmp_path / "report.md").read_text()
    assert all(f"figures/{name}" in markdown for name in figures)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [(r["label"], r["group"], r["model"]["arch"]) for r in summary["runs"]] == [
        ("default/attn", "attention_net", "attention_net"), ("default/conv", "conv_net", "conv_net")]
    for run in summary["runs"]:
        assert 0.0 <= run["final_accuracy"] <= 1.0 and run["dataset"]["name"] == "digits"
        assert run["last_epoch"] == 2 and set(run["last_epoch_metrics"]) == {"stem", "mixer", "norm", "head"}
        assert run["last_epoch_metrics"]["mixer"]["variance"] == numbers[run["label"]][(2, "mixer", "variance")]
    assert list((tmp_path / "wandb").glob("offline-run-*")) and "wandb sync" in output


def test_training_records_and_robustness_of_each_run(attention_run, conv_run, tmp_path):
    check_ok(probe_here(attention_run, conv_run, "--out", tmp_path, "--dynamics.topology", "false",
                       "--probing.probe_size", "50", *ROBUSTNESS, "--robustness.noise_levels", "[2, 0, 0.5]",
                       "--robustness.size", "100", "--training_records.target_loss", "2.2"))
    summary = {run["label"]: run for run in json.loads((tmp_path / "summary.json").read_text())["runs"]}
    for run_dir in (attention_run, conv_run):
        run = summary[f"default/{run_dir.name}"]
        rows = read_metrics(run_dir / "metrics.csv")
        assert [row["epoch"] for row in rows] == [1, 2]
        assert run["training"] == {**training_records(rows, 2.2).as_dict(), "loss_floor": 0.0,
                                   "metrics_csv": str(run_dir / "metrics.csv")}
        numbers = read_numbers(tmp_path / "dynamics.csv", run=run["label"])
        for epoch in (1, 2):  # the records up to each checkpoint's epoch are rows of dynamics.csv
            assert numbers[(epoch, "", "best_val_acc")] == training_records(rows[:epoch], 2.2).best_val_acc
        robustness = run["robustness"]
        assert {key: robustness[key] for key in ("noise_levels", "dataset", "split", "inputs", "seed")} == {
            "noise_levels": [0.0, 0.5, 2.0], "dataset": "digits", "split": "val", "inputs": 100, "seed": 0}
        assert set(robustness["accuracy"]) == {"0", "1", "2"}
        assert robustness["final_accuracy"] == robustness["accuracy"]["2"]
        assert robustness["final_accuracy"][0] == pytest.approx(clean_accuracy(run_dir, 2, 100), abs=1e-9)
        assert [numbers[(2, "", f"noise_accuracy_{level}")] for level in ("0", "0.5", "2")] == pytest.approx(
            robustness["final_accuracy"], abs=1e-12)
    assert (tmp_path / "figures" / "robustness.png").is_file()
    page = (tmp_path / "report.html").read_text()
    assert "Training records and robustness" in page and "epochs to train loss ≤ 2.2" in page


def clean_accuracy(run_dir, epoch, size):
    """Top-1 accuracy of a run's checkpoint on ``size`` inputs of its val split drawn by seed 0,
    computed here with a plain forward pass."""
    from attnconv_pl.capture.probe_set import load_probe_images, select_probe_indices
    from attnconv_pl.data import DigitsDataModule
    from attnconv_pl.offline.checkpoints import build_module, read_checkpoint

    path = run_dir / "checkpoints" / f"epoch={epoch:03d}.ckpt"
    module = build_module(read_checkpoint(path), path).eval()
    split = DigitsDataModule().eval_dataset("val")
    images, labels = load_probe_images(split, select_probe_indices(len(split), size, seed=0))
    with torch.no_grad():
        return (module(images).argmax(dim=1) == labels).double().mean().item()


@pytest.fixture(scope="module")
def bad_inputs(attention_run, tmp_path_factory):
    """``{case: (probe.py arguments, text the message must contain)}`` for each bad input."""
    folder = tmp_path_factory.mktemp("bad")
    checkpoint = attention_run / "checkpoints" / "epoch=001.ckpt"
    content = torch.load(checkpoint, map_location="cpu", weights_only=True)
    (folder / "notes.ckpt").write_text("these are notes, not a checkpoint")
    (folder / "truncated.ckpt").write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    torch.save({**content, "hyper_parameters": {**content["hyper_parameters"], "arch": "transformer_9000"}},
               folder / "future_model.ckpt")
    torch.save({**content, "datamodule_hyper_parameters": {
        "_class_path": "attnconv_pl.data.CIFAR10DataModule", "data_dir": str(folder / "no_data")}},
        folder / "cifar_run.ckpt")
    (folder / "empty_run").mkdir()
    return {
        "missing path": ([folder / "nope"], str(folder / "nope")),
        "not a checkpoint": ([folder / "notes.ckpt"], "is not a PyTorch checkpoint"),
        "truncated checkpoint": ([folder / "truncated.ckpt"], "truncated or corrupted"),
        "model this version cannot build": ([folder / "future_model.ckpt"], "transformer_9000"),
        "run directory without checkpoints": ([folder / "empty_run"], "holds no checkpoints"),
        "layer pattern matching nothing": ([attention_run, "--dynamics.layers", "['blocks.9*']"],
                                           "no layer matches 'blocks.9*'"),
        "dataset not available offline": ([folder / "cifar_run.ckpt"], str(folder / "no_data")),
        "unknown dataset": ([attention_run, "--data", "imagenet"], "unknown dataset 'imagenet'"),
        "dataset of another image shape": ([attention_run, "--data", "cifar10"], "the model takes 1x16x16"),
        "negative noise level": ([attention_run, *ROBUSTNESS, "--robustness.noise_levels", "[0.1, -0.5]"],
                                 "finite and >= 0, got -0.5"),
        "robustness on another dataset": ([attention_run, *ROBUSTNESS, "--data", "digits:test"],
                                          "needs the run's own dataset"),
        "robustness on one input": ([attention_run, *ROBUSTNESS, "--robustness.size", "1"], "give at least 2"),
        "settings of an analysis not run": ([attention_run, "--robustness.size", "50"],
                                            "add it to the analyses: --analyses training_records dynamics robustness"),
        "target loss not positive": ([attention_run, "--training_records.target_loss", "0"], "a finite number > 0"),
    }


@pytest.mark.parametrize("case", [
    "missing path", "not a checkpoint", "truncated checkpoint", "model this version cannot build",
    "run directory without checkpoints", "layer pattern matching nothing", "dataset not available offline",
    "unknown dataset", "dataset of another image shape", "negative noise level", "robustness on another dataset",
    "robustness on one input", "settings of an analysis not run", "target loss not positive"])
def test_bad_input_gives_one_clear_message(bad_inputs, case, tmp_path):
    args, expected = bad_inputs[case]
    result = probe_here(*args, "--out", tmp_path / "report")
    errors = [line for line in result.stderr.splitlines() if line.startswith("probe.py: error: ")]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(errors) == 1 and expected in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "report").exists()


def test_a_failing_run_keeps_the_runs_before_it(attention_run, bad_inputs, tmp_path):
    truncated = bad_inputs["truncated checkpoint"][0][0]
    result = probe_here(attention_run, truncated, "--out", tmp_path)
    assert result.returncode == 2 and "truncated or corrupted" in result.stderr
    assert "completed before: default/attn" in result.stderr
    numbers = read_numbers(tmp_path / "dynamics.csv", run="default/attn")
    assert {epoch for epoch, _, _ in numbers} == {0, 1, 2}
    with open(tmp_path / "dynamics.csv", newline="") as handle:
        assert {row["run"] for row in csv.DictReader(handle)} == {"default/attn"}
    assert [run["label"] for run in json.loads((tmp_path / "summary.json").read_text())["runs"]] == ["default/attn"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["dynamics.csv", "summary.json"]


@pytest.mark.parametrize("out, expected", [
    ("notes.txt", "notes.txt is a file, not a folder"),
    ("notes.txt/report", "notes.txt/report cannot be created: {folder}/notes.txt is a file"),
])
def test_an_out_that_cannot_be_a_folder_is_refused_before_probing(attention_run, tmp_path, out, expected):
    (tmp_path / "notes.txt").write_text("notes")
    result = probe_here(attention_run, tmp_path / "notes.txt", "--out", tmp_path / out)  # not a checkpoint: read later
    errors = [line for line in result.stderr.splitlines() if line.startswith("probe.py: error: ")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-2000:]
    assert f"--out {tmp_path}/{expected.format(folder=tmp_path)}; --out names the folder of the report" in errors[0]
    assert "Traceback" not in result.stderr
    assert (tmp_path / "notes.txt").read_text() == "notes" and sorted(tmp_path.iterdir()) == [tmp_path / "notes.txt"]


def test_an_out_in_a_folder_that_cannot_be_written_is_refused(tmp_path, monkeypatch, capsys):
    import probe
    from attnconv_pl import errors

    writable = {tmp_path / "other"}
    monkeypatch.setattr(errors.os, "access", lambda path, mode: path in writable)
    assert probe.main([str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "report" / "R")]) == 2
    assert capsys.readouterr().err == (
        f"probe.py: error: --out {tmp_path}/report/R cannot be written: {tmp_path} is not writable; --out names the "
        "folder of the report (created when missing): give a path in a folder you can write to\n")


def test_analyses_choose_what_is_computed(attention_run, tmp_path):
    """--analyses training_records robustness: no dynamics (only the records, the accuracies under
    noise and the cost rows, no comparison figure); --analyses dynamics: no records."""
    check_ok(probe_here(attention_run, "--out", tmp_path / "records", "--analyses", "training_records", "robustness",
                       "--robustness.size", "50", "--probing.seed", "7"))
    with open(tmp_path / "records" / "dynamics.csv", newline="") as handle:
        metrics = {row["metric"] for row in csv.DictReader(handle)}
    noise = {f"noise_accuracy_{level:g}" for level in DEFAULT_NOISE_LEVELS}
    assert {"overhead_seconds", "best_val_acc", *noise} <= metrics <= {"overhead_seconds", *RECORD_METRICS, *noise}
    (run,) = json.loads((tmp_path / "records" / "summary.json").read_text())["runs"]
    assert run["training"]["best_val_acc"] is not None and len(run["robustness"]["final_accuracy"]) == 5
    assert run["analyses"] == ["training_records", "robustness"] and "probe_inputs" not in run["dataset"]
    assert run["robustness"]["seed"] == 7  # the probe options reach every analysis, dynamics run or not
    figures = sorted(p.name for p in (tmp_path / "records" / "figures").iterdir())
    assert figures == ["robustness.png", "training_curves.png"]  # the records draw the curves

    check_ok(probe_here(attention_run, "--out", tmp_path / "dynamics", "--analyses", "dynamics"))
    (run,) = json.loads((tmp_path / "dynamics" / "summary.json").read_text())["runs"]
    assert run["training"] is None and run.get("robustness") is None and run["last_epoch_metrics"]


def test_single_node_on_another_dataset_is_refused_before_loading(attention_run, tmp_path):
    result = probe_here(attention_run, "--out", tmp_path, "--analyses", "single_node", "--data", "digits")
    assert result.returncode == 2 and "--analyses single_node reads the run's own labels" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_analysis_is_refused(attention_run, tmp_path):
    result = probe_here(attention_run, "--out", tmp_path, "--analyses", "stiffnes")
    assert result.returncode == 2 and "invalid choice: 'stiffnes'" in result.stderr


# Your own models: timm models and import paths, trained and probed; bare weights files.

EXTERNAL_NETS = REPO / "tests" / "models"
"""Folder of ``external_nets.py``, the networks built by import path (put on PYTHONPATH)."""
TINY_VIT = ("--model.init_args.arch", "timm:vit_tiny_patch16_224",
            "--model.init_args.arch_kwargs", "{patch_size: 4, embed_dim: 32, depth: 2, num_heads: 2}")
ONE_EPOCH = ("--trainer.max_epochs", "1", "--dynamics.probe_size", "100", "--trainer.logger", "false", *EVERY_EPOCH)


def test_a_timm_model_trains_and_probe_py_reproduces_its_numbers(runs_dir, tmp_path):
    run = train_here(runs_dir, "timm_vit", *TINY_VIT, *ONE_EPOCH)
    logged = read_numbers(run / "dynamics.csv")
    assert {layer for _, layer, _ in logged} == {"", "blocks.0", "blocks.1", "head"}  # timm's feature info
    check_ok(probe_here(run, "--out", tmp_path))
    assert_same_numbers(read_numbers(tmp_path / "dynamics.csv", run="default/timm_vit"), logged)


def test_an_import_path_model_trains_and_is_probed_only_when_the_user_names_it(runs_dir, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXTERNAL_NETS))
    arch = "external_nets:TinyConvNet"
    run = train_here(runs_dir, "imported", "--model.init_args.arch", arch,
                     "--model.init_args.arch_kwargs", "{width: 6}", *ONE_EPOCH)
    logged = read_numbers(run / "dynamics.csv")
    assert {layer for _, layer, _ in logged} == {"", "conv1", "conv2", "head"}  # the class's probe_layers

    refused = probe_here(run, "--out", tmp_path / "refused")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"never imports code named inside a file. If you trust that code, name it yourself: " \
           f"probe.py ... --arch {arch}" in refused.stderr
    check_ok(probe_here(run, "--out", tmp_path / "probed", "--arch", arch))
    assert_same_numbers(read_numbers(tmp_path / "probed" / "dynamics.csv", run="default/imported"), logged)


@pytest.fixture(scope="module")
def weights_files(attention_run, tmp_path_factory):
    """The network weights of the attention run's epoch-2 checkpoint, saved bare in both formats."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("weights")
    checkpoint = torch.load(attention_run / "checkpoints" / "epoch=002.ckpt", map_location="cpu", weights_only=True)
    weights = {key.removeprefix("model."): value for key, value in checkpoint["state_dict"].items()}
    torch.save(weights, folder / "attention.pth")
    save_file(weights, folder / "attention.safetensors")
    return folder


@pytest.mark.parametrize("name", ["attention.pth", "attention.safetensors"])
def test_a_bare_weights_file_gives_the_numbers_of_its_checkpoint(attention_run, weights_files, name, tmp_path):
    """The same network and probe set as the run's epoch 2: every number but drift (a file alone has
    no earlier epoch) equals the logged one; the file is probed as epoch 0, on digits as its own data."""
    check_ok(probe_here(weights_files / name, "--out", tmp_path, "--arch", "attention_net", "--arch_kwargs",
                       "{dim: 64}", "--data", "digits", "--probing.probe_size", "100"))
    probed = {(layer, metric): value for (epoch, layer, metric), value
              in read_numbers(tmp_path / "dynamics.csv", run=name.split(".")[0]).items()}
    logged = {(epoch, layer, metric): value for (epoch, layer, metric), value
              in read_numbers(attention_run / "dynamics.csv").items() if epoch == 2 and not metric.startswith("drift_")}
    assert_same_numbers({(0, *key): value for key, value in probed.items()},
                        {(0, layer, metric): value for (_, layer, metric), value in logged.items()})
    (run,) = json.loads((tmp_path / "summary.json").read_text())["runs"]
    assert run["last_epoch_metrics"]  # probed on its own data: the probe-set accuracy is known


def test_bad_weights_files_give_one_clear_message(weights_files, tmp_path):
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes((weights_files / "attention.safetensors").read_bytes()[:200])
    cases = {
        "corrupt file": ([truncated, "--arch", "attention_net", "--data", "digits"],
                         "is not a readable .safetensors file"),
        "weights of another network": ([weights_files / "attention.pth", "--arch", "conv_net", "--data", "digits"],
                                       "do not fit --arch conv_net with --arch_kwargs {} for 10 classes of 1x16x16 "
                                       "images (--data digits): missing mixer."),
        "another width": ([weights_files / "attention.pth", "--arch", "attention_net", "--data", "digits"],
                          "mixer.norm.bias has shape (64,), the model (128,)"),
        "no dataset": ([weights_files / "attention.pth", "--arch", "attention_net"], "name the dataset with --data"),
        "unknown arch": ([weights_files / "attention.pth", "--arch", "timm:no_such_net", "--data", "digits"],
                         "timm has no model 'no_such_net'"),
        "options without --arch": ([weights_files / "attention.pth", "--arch_kwargs", "{dim: 64}"],
                                   "give --arch NAME too"),
    }
    for case, (arguments, expected) in cases.items():
        result = probe_here(*arguments, "--out", tmp_path / "out")
        assert result.returncode == 2, case
        assert expected in result.stderr and "Traceback" not in result.stderr, (case, result.stderr)


def test_weights_stored_as_integers_are_refused_not_cast(tmp_path, capsys):
    """A .safetensors whose float weights are stored as int32 would be cast silently by
    load_state_dict: probe.py refuses it with one line naming a tensor and both dtypes."""
    from safetensors.torch import save_file

    import probe
    from attnconv_pl.module import ClassifierModule
    from attnconv_pl.offline.weights import dtype_differences

    floats = ClassifierModule(arch="attention_net", arch_kwargs={"dim": 64}, num_classes=10, in_chans=1,
                              image_size=16).model.state_dict()
    integers = {name: tensor.to(torch.int32) if tensor.is_floating_point() else tensor
                for name, tensor in floats.items()}
    save_file(integers, tmp_path / "ints.safetensors")
    out = tmp_path / "report"
    assert probe.main([str(tmp_path / "ints.safetensors"), "--arch", "attention_net", "--arch_kwargs", "{dim: 64}",
                       "--data", "digits", "--out", str(out)]) == 2
    errors = capsys.readouterr().err.splitlines()
    first = next(name for name, tensor in floats.items() if tensor.is_floating_point())
    assert len(errors) == 1 and errors[0].startswith("probe.py: error: the weights in ")
    assert f"{first} is stored as torch.int32, the model has torch.float32" in errors[0]
    assert not out.exists()
    # other float dtypes are only a precision choice, loaded as before
    assert dtype_differences(floats, {name: tensor.double() if tensor.is_floating_point() else tensor
                                      for name, tensor in floats.items()}) == ""
