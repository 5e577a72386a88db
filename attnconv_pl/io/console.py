"""The console of train.py and probe.py: progress that reads on a terminal and in a log, messages on
lines of their own, and known noise silenced one message at a time.

:class:`Progress` draws a tqdm bar when its stream is a terminal and writes plain lines when it is
not (a log, a pipe), so a long step is never silent; :func:`say` puts a message on a line of its own
above Lightning's progress bar.

Each filter names one message that tells a user of this project nothing they can act on:

- Lightning's "💡 Tip" promotions (of ``litlogger`` and ``litmodels``), logged when a trainer is built;
- Lightning's advice to raise ``num_workers`` when the data module loads in the main process:
  ``num_workers: 0`` is this project's deliberate choice for in-memory data and for exact resume
  (the augmentation of worker processes is not restored from a checkpoint);
- torch's deprecation of ``LeafSpec``, which Lightning's own code triggers.

Every other warning and message is kept.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from typing import IO, Any, Optional

from tqdm import tqdm

LIGHTNING_LOGGER = "lightning.pytorch.utilities.rank_zero"
"""The logger of Lightning's ``rank_zero_info`` messages."""

TIP_PREFIX = "💡 Tip"


class DropLightningTips(logging.Filter):
    """Drop log records that are Lightning's "💡 Tip" promotions."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(TIP_PREFIX)


def silence_known_noise(num_workers: int) -> None:
    """Install the filters of this module's docstring; the ``num_workers`` advice only when the
    data module loads in the main process (``num_workers`` 0)."""
    logger = logging.getLogger(LIGHTNING_LOGGER)
    if not any(isinstance(f, DropLightningTips) for f in logger.filters):
        logger.addFilter(DropLightningTips())
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning)
    if num_workers == 0:
        warnings.filterwarnings("ignore", message=r"The '\w+' does not have many workers")


def is_terminal(stream: IO[str]) -> bool:
    """Whether ``stream`` is an interactive terminal (not a file, pipe or captured stream)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Progress:
    """Progress of a long step: a tqdm bar on a terminal, plain lines elsewhere.

    On a terminal, :meth:`step` shows its text beside the bar; in a log, it writes a line
    ``<description> 3/12 (00:41): <text>`` (without ``/total`` when the total is unknown, elapsed
    time in brackets). :meth:`write` prints a message on a line of its own, above the bar.
    Used as a context manager, it closes the bar at the end of the block.

    Args:
        description: what is in progress (``probing``, ``figures``).
        total: the number of units (None when unknown).
        unit: the name of one unit, for the bar (``checkpoint``, ``figure``).
        stream: where to write (default ``sys.stderr``, looked up when built).
        enabled: False writes nothing at all (a library call that was not asked to show progress).
    """

    def __init__(self, description: str, total: Optional[int] = None, unit: str = "it",
                 stream: Optional[IO[str]] = None, enabled: bool = True) -> None:
        self.description = description
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.done = 0
        self.started = time.monotonic()
        self.bar = (tqdm(total=total, desc=description, unit=f" {unit}", file=self.stream, dynamic_ncols=True)
                    if enabled and is_terminal(self.stream) else None)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def elapsed(self) -> str:
        """Time since the start, as ``00:41`` or ``1:02:03``."""
        return tqdm.format_interval(time.monotonic() - self.started)

    def step(self, text: str, log: bool = True) -> None:
        """A step of the current unit begins: ``text`` says which (run, checkpoint, analysis);
        ``log=False`` shows it beside the bar only, without a line in a log (a detail that would
        flood it)."""
        if self.bar is not None:
            self.bar.set_postfix_str(text)
        elif self.enabled and log:
            count = f"{self.done + 1}/{self.total}" if self.total is not None else f"{self.done + 1}"
            self._line(f"{self.description} {count} ({self.elapsed()}): {text}")

    def update(self, count: int = 1) -> None:
        """``count`` more units are done."""
        self.done += count
        if self.bar is not None:
            self.bar.update(count)

    def write(self, message: str) -> None:
        """``message`` on a line of its own (above the bar on a terminal)."""
        if self.bar is not None:
            self.bar.write(message, file=self.stream)
        elif self.enabled:
            self._line(message)

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def say(trainer: Any, message: str) -> None:
    """Print ``message`` on global rank zero on a line of its own above Lightning's progress bar
    (which redraws below it), or log it (``rank_zero_info``) when the trainer shows no bar."""
    from lightning.pytorch.callbacks import TQDMProgressBar
    from lightning.pytorch.utilities import rank_zero_info

    if not trainer.is_global_zero:
        return
    bar = trainer.progress_bar_callback
    if bar is None or not getattr(bar, "is_enabled", True):
        rank_zero_info(message)
    elif isinstance(bar, TQDMProgressBar):
        tqdm.write(message, file=sys.stdout)  # Lightning's bar is on stdout; also when none is drawn yet
    else:
        bar.print(message)
