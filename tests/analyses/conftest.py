"""The analysis tests run on one CPU thread."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """One CPU thread per test: the probes run thousands of small operations, which thread
    contention on a shared machine (or beside another test process) slows down many times over."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
