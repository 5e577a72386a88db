"""The console: Progress as plain lines off a terminal and a bar on one, and the checkpoint line of a
training run on a line of its own, read as a terminal shows it."""

import io
import logging
import re

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from attnconv_pl.io.console import LIGHTNING_LOGGER, Progress
from callbacks.epoch_checkpoint import EpochCheckpoint

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def screen_lines(text: str) -> list[str]:
    """The lines a terminal shows after printing ``text``: a carriage return moves back to the
    start of the line, whose characters the following ones overwrite; colour codes are dropped."""
    lines = []
    for raw in ANSI.sub("", text).split("\n"):
        line: list[str] = []
        column = 0
        for char in raw:
            if char == "\r":
                column = 0
                continue
            line[column:column + 1] = [char]
            column += 1
        lines.append("".join(line).rstrip())
    return lines


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_off_a_terminal_writes_a_line_per_step_with_the_count():
    log = io.StringIO()
    with Progress("probing", total=3, unit="checkpoint", stream=log) as progress:
        for name in ("epoch=000.ckpt", "epoch=001.ckpt", "epoch=002.ckpt"):
            progress.step(f"run a: {name}")
            progress.update()
        progress.write("probe.py: warning: something")
    lines = log.getvalue().splitlines()
    assert [re.sub(r"\(\d+:\d\d\)", "(T)", line) for line in lines] == [
        "probing 1/3 (T): run a: epoch=000.ckpt", "probing 2/3 (T): run a: epoch=001.ckpt",
        "probing 3/3 (T): run a: epoch=002.ckpt", "probe.py: warning: something"]


def test_progress_without_a_total_counts_and_disabled_progress_writes_nothing():
    log = io.StringIO()
    progress = Progress("figures", stream=log)
    progress.update(4)
    progress.step("drift")
    assert re.fullmatch(r"figures 5 \(\d+:\d\d\): drift\n", log.getvalue())
    quiet = io.StringIO()
    silent = Progress("figures", stream=quiet, enabled=False)
    silent.step("drift")
    silent.write("message")
    assert quiet.getvalue() == ""


def test_progress_on_a_terminal_draws_a_bar_and_writes_messages_above_it():
    screen = Terminal()
    with Progress("probing", total=2, unit="checkpoint", stream=screen) as progress:
        progress.step("run a: epoch=000.ckpt")
        progress.update()
        progress.write("a message")
    lines = [line for line in screen_lines(screen.getvalue()) if line]
    assert "a message" in lines
    assert re.match(r"probing: +50%.*1/2 .*checkpoint.*run a: epoch=000.ckpt", lines[-1])
    assert "probing 1/2" not in screen.getvalue()  # no log lines on a terminal


def test_the_checkpoint_line_has_a_line_of_its_own_below_the_training_bar(tmp_path, capsys):
    """Lightning's bar and its log messages meet on one terminal: both are sent to the captured
    stdout here, and the terminal's lines are read back."""
    handler = logging.StreamHandler(__import__("sys").stdout)
    logger = logging.getLogger(LIGHTNING_LOGGER)
    logger.addHandler(handler)
    data = TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,)))

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(4, 2)

        def training_step(self, batch, batch_idx):
            return nn.functional.cross_entropy(self.layer(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    try:
        trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_model_summary=False,
                             callbacks=[EpochCheckpoint(dirpath=str(tmp_path))], default_root_dir=tmp_path,
                             accelerator="cpu")
        trainer.fit(Tiny(), DataLoader(data, batch_size=4))
    finally:
        logger.removeHandler(handler)
    lines = screen_lines(capsys.readouterr().out)
    for epoch in (1, 2):
        assert f"checkpoint: {tmp_path / f'epoch={epoch:03d}.ckpt'}" in lines
