"""Test-suite wide settings: W&B offline and quiet, no network, few threads."""

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
