"""The network the capture tests run through, and one CPU thread per test module."""

import pytest
import torch
from capture_nets import SmallNet
from threadpoolctl import threadpool_limits


@pytest.fixture
def net() -> SmallNet:
    torch.manual_seed(0)
    return SmallNet()


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
