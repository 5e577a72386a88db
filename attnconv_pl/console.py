"""Known noise on train.py's console, silenced one message at a time.

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
import warnings

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
