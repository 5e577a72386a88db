"""What probe.py shows while it probes, when its output goes to a log (a line per run and step,
never minutes of silence), and the persistence diagrams it hands to the report: every probed
topology epoch. Probed in-process, without training, on a run directory of three checkpoints and
a bare weights file; the report itself is not drawn (tests/reports/test_report.py shows the lines
of its figures)."""

import re

import pytest
import torch

import probe
from attnconv_pl.data import DigitsDataModule
from attnconv_pl.module import ClassifierModule
from attnconv_pl.offline.data_choice import DataChoice
from attnconv_pl.offline.weights import WeightsModel, weights_checkpoint

pytestmark = pytest.mark.slow

STEP = re.compile(r"^(probing|figures) (\d+)(?:/(\d+))? \((\d+:\d\d)\): (.*)$")
ARCH = ("--arch", "attention_net", "--arch_kwargs", "{dim: 16}")


def weights(seed):
    torch.manual_seed(seed)
    data = DigitsDataModule()
    return ClassifierModule(arch="attention_net", arch_kwargs={"dim": 16}, num_classes=data.num_classes,
                            in_chans=data.in_chans, image_size=data.image_size).model.state_dict()


def test_probing_shows_a_line_per_run_and_step_in_a_log_and_keeps_every_epochs_diagrams(tmp_path, capsys,
                                                                                         monkeypatch):
    reported = []
    monkeypatch.setattr("attnconv_pl.reports.report.write_report",
                        lambda out, runs, context, progress: reported.extend(runs) or [])
    model = WeightsModel("attention_net", DataChoice.parse("digits"), {"dim": 16})
    (tmp_path / "trio" / "checkpoints").mkdir(parents=True)
    for epoch in range(3):
        checkpoint = weights_checkpoint(tmp_path / "w.pth", model, weights(epoch))
        torch.save(checkpoint, tmp_path / "trio" / "checkpoints" / f"epoch={epoch:03d}.ckpt")
    torch.save(weights(3), tmp_path / "b.pth")
    assert probe.main([str(tmp_path / "trio"), str(tmp_path / "b.pth"), "--out", str(tmp_path / "report"), *ARCH,
                       "--data", "digits", "--probing.probe_size", "40", "--dynamics.max_points", "40",
                       "--dynamics.id_methods", "[twonn]", "--device", "cpu", "--dynamics.num_workers", "0",
                       "--analyses", "dynamics", "--run_name", "trio", "b"]) == 0
    lines = capsys.readouterr().err.splitlines()
    steps = [STEP.match(line).groups() for line in lines if STEP.match(line)]
    probing = [(count, total, text) for kind, count, total, _, text in steps if kind == "probing"]
    assert probing == [("1", "4", "trio: loading data and model"),
                       *((str(epoch + 1), "4", f"trio: epoch={epoch:03d}.ckpt (4 layers), dynamics")
                         for epoch in range(3)),
                       ("4", "4", "b: loading data and model"), ("4", "4", "b: b.ckpt (4 layers), dynamics")]
    (trio,) = [run.diagrams for run in reported if run.label == "trio"]
    assert sorted(trio) == [0, 1, 2]  # every probed epoch, not the first and last
