"""FeatureDynamics: files after short runs, DDP parity, memory bound, degenerate layers."""

import csv
import math
import threading
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ProgressBar
from torch import nn
from torch.nn import functional
from train_helpers import EVERY_EPOCH, check_ok, launch_train, refused, run_train

from attnconv_pl.analyses.base import settings_from
from attnconv_pl.analyses.dynamics import Dynamics, DynamicsSettings
from attnconv_pl.analyses.probe_pool import ProbePool
from attnconv_pl.analyses.training_records import read_metrics
from attnconv_pl.capture.probe_set import load_probe_images
from attnconv_pl.capture.snapshots import load_snapshot
from attnconv_pl.data import DigitsDataModule
from attnconv_pl.module import ClassifierModule
from attnconv_pl.offline.checkpoints import build_module, data_config, read_checkpoint
from attnconv_pl.probes import paired_displacement
from callbacks import EpochCheckpoint, FeatureDynamics

TOPOLOGY_METRICS = {f"{kind}_h{d}_{dist}" for kind in ("stability", "drift_prev") for d in (0, 1)
                    for dist in ("w1", "w2", "bottleneck")} | {"h0_bars", "h1_bars"}


def dynamics_rows(run_dir):
    with open(run_dir / "dynamics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


DDP_PROBES = ("--trainer.max_epochs", "1", "--trainer.limit_train_batches", "4", "--trainer.accelerator", "cpu",
              "--dynamics.probe_size", "120", "--dynamics.max_points", "60", "--dynamics.num_workers", "2",
              *EVERY_EPOCH)
"""One short epoch on the CPU, probed with topology at epochs 0 and 1 by two worker processes."""
DDP_EPOCHS = 2
"""The DDP run trains two such epochs (its metrics.csv rows are checked in ``test_epoch_metrics``'s style)."""


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """(run directory, output) of :data:`DDP_PROBES` on two DDP processes, trained once per module."""
    runs_dir = tmp_path_factory.mktemp("ddp")
    output = check_ok(run_train("--run_id", "ddp", *DDP_PROBES, "--trainer.max_epochs", str(DDP_EPOCHS),
                                "--trainer.devices", "2", "--trainer.strategy", "ddp", runs_dir=runs_dir))
    return runs_dir / "default" / "ddp", output


@pytest.mark.slow
def test_ddp_epoch0_numbers_equal_single_process(ddp_run, monkeypatch, tmp_path):
    ddp, _ = ddp_run
    single = tmp_path / "default" / "single"
    launch_train(monkeypatch, tmp_path, "--run_id", "single", *DDP_PROBES, run_id="single")
    assert (ddp / "checkpoints" / "epoch=001.ckpt").is_file()
    single_rows = {(r["layer"], r["metric"]): float(r["value"]) for r in dynamics_rows(single) if r["epoch"] == "0"}
    ddp_rows = {(r["layer"], r["metric"]): float(r["value"]) for r in dynamics_rows(ddp) if r["epoch"] == "0"}
    assert set(single_rows) == set(ddp_rows)
    for key, value in single_rows.items():
        if key[1] not in ("overhead_seconds", "probe_seconds"):  # seconds differ
            assert ddp_rows[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    single_snapshot, single_indices, single_labels, _ = load_snapshot(single / "snapshots" / "epoch=000.safetensors")
    ddp_snapshot, ddp_indices, ddp_labels, _ = load_snapshot(ddp / "snapshots" / "epoch=000.safetensors")
    assert torch.equal(single_indices, ddp_indices) and torch.equal(single_labels, ddp_labels)
    for layer, sides in single_snapshot.items():
        for side, points in sides.items():
            torch.testing.assert_close(ddp_snapshot[layer][side], points, rtol=1e-3, atol=1e-3)


@pytest.mark.slow
def test_every_layer_every_epoch_has_every_metric(monkeypatch, tmp_path):
    launch_train(monkeypatch, tmp_path, "--run_id", "r", "--trainer.max_epochs", "2", "--dynamics.probe_size", "120",
                 *EVERY_EPOCH, "--model.init_args.arch", "conv_net", run_id="r")
    run_dir = tmp_path / "default" / "r"
    rows = dynamics_rows(run_dir)
    layers = ["stem", "mixer", "norm", "head"]
    for epoch in ("0", "1", "2"):
        for layer in layers:
            metrics = {r["metric"] for r in rows if r["epoch"] == epoch and r["layer"] == layer}
            assert {"variance", "participation_ratio", "id_twonn", "id_mle", "lipschitz_p50",
                    "h1_total_persistence"} <= metrics, (epoch, layer)
            if epoch != "0":
                assert {"drift_prev_displacement", "drift_prev_w2", "drift_init_w2"} <= metrics
                assert TOPOLOGY_METRICS <= metrics, TOPOLOGY_METRICS - metrics
        overhead = [r for r in rows if r["epoch"] == epoch and r["metric"] == "overhead_seconds"]
        assert len(overhead) == 1 and overhead[0]["layer"] == ""
    next_metrics = {r["metric"] for r in rows if r["layer"] == "stem" and r["metric"].startswith("next_")}
    assert next_metrics == {f"next_h{d}_{dist}" for d in (0, 1) for dist in ("w1", "w2", "bottleneck")}
    snapshot, indices, labels, _ = load_snapshot(run_dir / "snapshots" / "epoch=001.safetensors")
    assert list(snapshot) == layers and len(indices) == 120 and len(labels) == 120
    assert snapshot["head"]["output"].shape == (120, 10)
    first_epoch_variance = float(next(r["value"] for r in rows
                                      if (r["epoch"], r["layer"], r["metric"]) == ("1", "head", "variance")))
    assert first_epoch_variance == pytest.approx(
        ((snapshot["head"]["output"] - snapshot["head"]["output"].mean(0)) ** 2).sum(1).mean().item(), rel=1e-5)


def test_memory_bound_refuses_before_training(monkeypatch, capsys, tmp_path):
    line = refused(monkeypatch, capsys, tmp_path, "--run_id", "big", "--dynamics.max_snapshot_bytes", "1000000")
    assert "max_snapshot_bytes" in line and "--dynamics.probe_size" in line
    assert not list(tmp_path.rglob("*.ckpt"))


def test_unknown_layer_pattern_stops_at_start_with_the_names(tmp_path):
    module = ClassifierModule(arch="conv_net", num_classes=10, in_chans=1, image_size=16)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         default_root_dir=tmp_path, callbacks=[FeatureDynamics(layers=["blocks.9*"])])
    with pytest.raises(ValueError, match=r"no layer matches 'blocks.9\*'.*mixer"):
        trainer.fit(module, datamodule=DigitsDataModule(data_dir=str(tmp_path)))
    assert trainer.global_step == 0


class DeadReluNet(nn.Module):
    """A net whose ``dead`` ReLU outputs exactly zero for every input."""

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.hidden = nn.Linear(256, 32)
        self.dead = nn.ReLU()
        self.head = nn.Linear(32, 10)
        self.probe_layers = ["hidden", "dead", "head"]
        with torch.no_grad():
            self.hidden.weight.zero_()
            self.hidden.bias.fill_(-1.0)

    def forward(self, x):
        return self.head(self.dead(self.hidden(self.flatten(x))))


def test_degenerate_layer_gives_documented_values_and_training_continues(tmp_path):
    module = ClassifierModule(arch="conv_net", num_classes=10, in_chans=1, image_size=16, lr=1e-9)
    module.model = DeadReluNet()
    callback = FeatureDynamics(probe_size=100, max_points=50)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         default_root_dir=tmp_path, callbacks=[callback])
    with pytest.warns(Warning):
        trainer.fit(module, datamodule=DigitsDataModule(data_dir=str(tmp_path)))
    assert trainer.current_epoch == 1 and callback.probed_epochs == [0, 1]
    values = {(r["epoch"], r["layer"], r["metric"]): float(r["value"]) for r in dynamics_rows(tmp_path)}
    assert values[("1", "dead", "variance")] == 0.0
    assert not any(math.isinf(v) for v in values.values())
    assert math.isnan(values[("1", "dead", "id_twonn")])
    assert values[("1", "dead", "drift_prev_displacement")] == 0.0
    assert values[("1", "hidden", "variance")] == pytest.approx(0.0, abs=1e-12)


def fit_digits(run_dir, max_epochs, ckpt_path=None, **options):
    torch.manual_seed(0)
    module = ClassifierModule(arch="conv_net", num_classes=10, in_chans=1, image_size=16)
    callback = FeatureDynamics(probe_size=100, max_points=60, **options)
    trainer = pl.Trainer(max_epochs=max_epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         default_root_dir=run_dir, callbacks=[callback, EpochCheckpoint()])
    trainer.fit(module, datamodule=DigitsDataModule(data_dir=str(run_dir)), ckpt_path=ckpt_path)
    return callback


def numbers(run_dir):
    return {(r["epoch"], r["layer"], r["metric"]): float(r["value"]) for r in dynamics_rows(run_dir)
            if not r["metric"].endswith("_seconds")}


def test_background_and_inline_probes_write_the_same_numbers(tmp_path):
    fit_digits(tmp_path / "background", 1, background=True)
    fit_digits(tmp_path / "inline", 1, background=False)
    assert numbers(tmp_path / "background") == pytest.approx(numbers(tmp_path / "inline"), nan_ok=True)


def test_resume_reprobes_an_epoch_whose_rows_were_lost_and_drift_continues(tmp_path):
    fit_digits(tmp_path, 2)
    before = numbers(tmp_path)
    # the run stopped while epoch 2 was being probed in the background: no rows reached the CSV
    rows = dynamics_rows(tmp_path)
    with open(tmp_path / "dynamics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if r["epoch"] != "2")
    with pytest.warns(UserWarning, match="epoch 2 has no rows"):
        callback = fit_digits(tmp_path, 3, ckpt_path=tmp_path / "checkpoints" / "last.ckpt")
    assert callback.probed_epochs == [0, 1, 2, 3]
    keys = [(r["epoch"], r["layer"], r["metric"]) for r in dynamics_rows(tmp_path)]
    assert len(keys) == len(set(keys))
    after = numbers(tmp_path)
    assert {key: value for key, value in after.items() if key[0] != "3"} == pytest.approx(before, nan_ok=True)
    snapshots = {e: load_snapshot(tmp_path / "snapshots" / f"epoch={e:03d}.safetensors")[0] for e in (2, 3)}
    assert after[("3", "head", "drift_prev_displacement")] == pytest.approx(
        paired_displacement(snapshots[3]["head"]["output"], snapshots[2]["head"]["output"]), rel=1e-6)


def replayed_in_one_process(run_dir, settings, epochs, max_epochs):
    """``{(epoch, layer, metric): value}`` computed again from the run's snapshots, one probe at
    a time in this process, in the order the callback wrote them."""
    dynamics = Dynamics(settings, list(load_snapshot(run_dir / "snapshots" / "epoch=000.safetensors")[0]),
                        pool=ProbePool(workers=1))
    values = {}
    for epoch in epochs:
        snapshot = load_snapshot(run_dir / "snapshots" / f"epoch={epoch:03d}.safetensors")[0]
        result = dynamics.run(epoch, snapshot, topology=settings.with_topology(epoch, max_epochs))
        values |= {(str(epoch), layer, metric): value for (layer, metric), value in result.values.items()}
    return values


def assert_same_numbers_in_same_order(written, replayed):
    assert list(written) == list(replayed)
    assert written == pytest.approx(replayed, rel=0, abs=0, nan_ok=True)  # exactly equal


def test_probes_spread_over_worker_processes_write_the_one_process_numbers(tmp_path):
    callback = fit_digits(tmp_path, 2, num_workers=2, topology_every_n_epochs=1)
    assert callback.pool.workers == 2
    settings = DynamicsSettings(probe_size=100, max_points=60, topology_every_n_epochs=1)
    assert_same_numbers_in_same_order(numbers(tmp_path), replayed_in_one_process(tmp_path, settings, [0, 1, 2], 2))
    assert TOPOLOGY_METRICS <= {metric for (epoch, _, metric) in numbers(tmp_path) if epoch == "2"}


@pytest.mark.slow
def test_ddp_rank_zero_spreads_the_probes_over_worker_processes_with_the_one_process_numbers(ddp_run):
    run_dir, output = ddp_run
    assert output.count("probed: training waited") == 1 + DDP_EPOCHS and "2 processes" in output  # rank zero's
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    settings = settings_from(DynamicsSettings, config["dynamics"])
    assert settings.num_workers == 2 and settings.topology
    assert_same_numbers_in_same_order(numbers(run_dir), replayed_in_one_process(run_dir, settings, [0, 1, 2], 2))


@pytest.mark.slow
def test_ddp_rows_hold_the_validation_numbers_of_the_whole_split(ddp_run):
    """metrics.csv of the DDP run: one row per epoch, and the last validation loss that of the
    whole split (both shards), as one process computes it from the checkpoint."""
    run_dir, _ = ddp_run
    rows = read_metrics(run_dir / "metrics.csv")
    assert [row["epoch"] for row in rows] == [1, 2]
    path = run_dir / "checkpoints" / "epoch=002.ckpt"
    checkpoint = read_checkpoint(path)
    _, init_args = data_config(checkpoint, {}, path)
    module = build_module(checkpoint, path).eval()
    split = DigitsDataModule(**init_args).eval_dataset("val")
    images, labels = load_probe_images(split, range(len(split)))
    with torch.no_grad():
        loss = functional.cross_entropy(module(images), labels).item()
    assert rows[-1]["val_loss"] == pytest.approx(loss, rel=1e-5)


class RecordingBar(ProgressBar):
    """A progress bar that records what callbacks print through it; the first message releases ``release``."""

    def __init__(self):
        super().__init__()
        self.printed, self.release = [], threading.Event()

    def print(self, *args, **kwargs):
        self.printed.append(" ".join(map(str, args)))
        self.release.set()


def test_the_wait_for_the_last_background_probes_is_said_once_through_the_progress_bar():
    callback, bar = FeatureDynamics(), RecordingBar()
    callback.jobs.submit(lambda: bar.release.wait(10) and [])  # a probe still running at the end of training
    trainer = SimpleNamespace(is_global_zero=True, progress_bar_callback=bar, loggers=[], global_step=0)
    callback.on_train_end(trainer, None)
    assert bar.printed == ["dynamics: waiting for 1 background probe..."] and callback.jobs.pending == 0
    callback.on_train_end(trainer, None)
    assert len(bar.printed) == 1
