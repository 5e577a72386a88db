"""The callback tests run on one CPU thread."""

import pytest
import torch
from threadpoolctl import threadpool_limits


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One CPU thread per test module (its module-scoped fixtures included), in torch and in the
    BLAS and OpenMP pools of numpy, scipy and scikit-learn: the tests run many small operations,
    which thread contention on a shared machine (or beside another test process) slows down many
    times over."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)
