"""Test-suite wide settings: W&B offline and quiet, no network, few threads.

One thread per test process (``OMP_NUM_THREADS``, read when torch is first imported, after this
file): the suite runs one process per core (pytest-xdist), and torch's default of one thread per
core in each of them would put several busy threads on every core. Child processes inherit it.
"""

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
os.environ.setdefault("OMP_NUM_THREADS", "1")
