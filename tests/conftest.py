"""Test-suite wide settings: W&B offline and quiet, no network, few threads.

One thread per test process (``OMP_NUM_THREADS``, read when torch is first imported, after this
file): the suite runs one process per core (pytest-xdist), and torch's default of one thread per
core in each of them would put several busy threads on every core. Child processes inherit it.
"""

import os

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One CPU thread per test module (its module-scoped fixtures included), in torch and in the
    BLAS and OpenMP pools of numpy, scipy and scikit-learn, whatever ran before in this process:
    the tests run many small operations, which thread contention on a shared machine (or beside
    another test process) slows down many times over. Session-scoped fixtures start before it and
    take :func:`attnconv_pl.analyses.probe_pool.one_thread` themselves."""
    from attnconv_pl.analyses.probe_pool import one_thread as on_one_thread

    with on_one_thread():
        yield
