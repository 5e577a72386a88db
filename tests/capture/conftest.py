"""The network the capture tests run through."""

import pytest
import torch
from capture_nets import SmallNet


@pytest.fixture
def net() -> SmallNet:
    torch.manual_seed(0)
    return SmallNet()

