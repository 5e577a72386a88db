"""Every probe validates its point clouds the same way (attnconv_pl/probes/_checks.py)."""

import math

import numpy as np
import pytest
import torch

from attnconv_pl import probes

ONE_CLOUD = {
    "total_variance": probes.total_variance,
    "participation_ratio": probes.participation_ratio,
    "intrinsic_dimension": probes.intrinsic_dimension,
    "persistence_diagrams": probes.persistence_diagrams,
}
TWO_CLOUDS = {
    "wasserstein": probes.wasserstein,
    "paired_displacement": probes.paired_displacement,
    "lipschitz_ratios": probes.lipschitz_ratios,
}


def good(n: int = 30, d: int = 3) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(0))


def with_nan() -> torch.Tensor:
    x = good()
    x[4, 1] = math.nan
    return x


BAD = {
    "1-D": (lambda: torch.ones(30), r"got shape \(30,\), expected a 2-D"),
    "empty": (lambda: torch.ones(0, 3), r"got shape \(0, 3\)"),
    "non-finite": (with_nan, "1 of 30 rows hold NaN or inf"),
    "integer": (lambda: torch.ones(30, 3, dtype=torch.long), "dtype torch.int64"),
    "numpy": (lambda: good().numpy(), "expected a torch.Tensor"),
}


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("probe", ONE_CLOUD)
def test_one_cloud_probes_name_the_argument_and_the_problem(probe, bad):
    make, message = BAD[bad]
    with pytest.raises(ValueError, match=f"^x: .*{message}"):
        ONE_CLOUD[probe](make())


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("probe", TWO_CLOUDS)
def test_two_cloud_probes_name_the_argument_and_the_problem(probe, bad):
    make, message = BAD[bad]
    first, second = ("x_in", "x_out") if probe == "lipschitz_ratios" else ("x", "y")
    with pytest.raises(ValueError, match=f"^{second}: .*{message}"):
        TWO_CLOUDS[probe](good(), make())
    with pytest.raises(ValueError, match=f"^{first}: .*{message}"):
        TWO_CLOUDS[probe](make(), good())


@pytest.mark.parametrize("probe", {**ONE_CLOUD, **TWO_CLOUDS})
def test_half_precision_snapshots_are_computed_in_float32(probe):
    clouds = [good(40, 4).half()] if probe in ONE_CLOUD else [good(40, 4).half(), good(40, 4).half() * 2]
    on_half = {**ONE_CLOUD, **TWO_CLOUDS}[probe](*clouds)
    on_float = {**ONE_CLOUD, **TWO_CLOUDS}[probe](*(cloud.float() for cloud in clouds))
    if probe == "persistence_diagrams":
        assert all(np.array_equal(a, b) for a, b in zip(on_half, on_float, strict=True))
    else:
        assert on_half == on_float
