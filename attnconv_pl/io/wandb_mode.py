"""W&B with no account: offline mode unless the user chose a mode or is logged in."""

from __future__ import annotations

import netrc
import os


def has_wandb_credentials() -> bool:
    """Whether W&B can log online: an API key in the environment or in ``~/.netrc``."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def configure_wandb_mode() -> str:
    """Use W&B offline unless the user chose a mode or is logged in; returns the mode."""
    if "WANDB_MODE" not in os.environ and not has_wandb_credentials():
        os.environ["WANDB_MODE"] = "offline"
    return os.environ.get("WANDB_MODE", "online")
