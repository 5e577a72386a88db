"""What probe.py shows while it works, when its output goes to a log: a line per run and step of the
probing, then a line per section of figures, never minutes of silence. Probed in-process on two
bare weights files (no training)."""

import re

import pytest
import torch

import probe
from attnconv_pl.data import DigitsDataModule
from attnconv_pl.module import ClassifierModule

pytestmark = pytest.mark.slow

STEP = re.compile(r"^(probing|figures) (\d+)(?:/(\d+))? \((\d+:\d\d)\): (.*)$")


def test_probing_and_figures_show_a_line_per_step_in_a_log(tmp_path, capsys):
    data = DigitsDataModule()
    for seed, name in ((0, "a.pth"), (1, "b.pth")):
        torch.manual_seed(seed)
        module = ClassifierModule(arch="attention_net", arch_kwargs={"dim": 16}, num_classes=data.num_classes,
                                  in_chans=data.in_chans, image_size=data.image_size)
        torch.save(module.model.state_dict(), tmp_path / name)
    assert probe.main([str(tmp_path / "a.pth"), str(tmp_path / "b.pth"), "--out", str(tmp_path / "report"),
                       "--arch", "attention_net", "--arch-kwargs", "{dim: 16}", "--data", "digits",
                       "--probe-size", "40", "--device", "cpu", "--no-topology", "--id-methods", "twonn",
                       "--set", "dynamics.num_workers=0"]) == 0
    lines = capsys.readouterr().err.splitlines()
    steps = [STEP.match(line).groups() for line in lines if STEP.match(line)]
    probing = [(count, total, text) for kind, count, total, _, text in steps if kind == "probing"]
    assert probing == [("1", "2", "a: loading data and model"), ("1", "2", "a: a.ckpt (4 layers), dynamics"),
                       ("2", "2", "b: loading data and model"), ("2", "2", "b: b.ckpt (4 layers), dynamics")]
    figures = [(int(count), text) for kind, count, _, _, text in steps if kind == "figures"]
    drawn = sorted(path.name for path in (tmp_path / "report" / "figures").glob("*.png"))
    sections = [text.split(": ")[0] for _, text in figures]
    assert len(sections) == len(set(sections)) >= 3  # one line as each section's figures begin
    assert [count for count, _ in figures] == sorted(count for count, _ in figures)
    assert all(text.split(": ")[1] in drawn for _, text in figures)
    assert f"figures: {len(drawn)} drawn in" in lines[-1]
