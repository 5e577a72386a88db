import math

import pytest
import skdim
import torch

from attnconv_pl.probes import DegenerateInputWarning, intrinsic_dimension, intrinsic_dimensions


def sphere(n: int, dim: int, ambient: int, seed: int) -> torch.Tensor:
    """n points uniform on the unit dim-sphere, rotated into R^ambient."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, dim + 1, generator=g, dtype=torch.float64)
    z = torch.cat([z / z.norm(dim=1, keepdim=True), torch.zeros(n, ambient - dim - 1, dtype=torch.float64)], 1)
    return z @ torch.linalg.qr(torch.randn(ambient, ambient, generator=g, dtype=torch.float64))[0]


def noisy_subspace(n: int, dim: int, ambient: int, noise: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(ambient, dim, generator=g, dtype=torch.float64))[0]
    points = torch.randn(n, dim, generator=g, dtype=torch.float64) @ basis.T
    return points + noise * torch.randn(n, ambient, generator=g, dtype=torch.float64)


DATASETS = {
    "gaussian_R6": lambda: torch.randn(800, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64),
    "sphere5_R20": lambda: sphere(800, 5, 20, seed=1),
    "subspace8_R40": lambda: noisy_subspace(800, 8, 40, 0.01, seed=2),
}


@pytest.mark.parametrize("dataset", DATASETS)
def test_twonn_and_mle_match_scikit_dimension_within_one_percent(dataset):
    x = DATASETS[dataset]()
    ours = intrinsic_dimensions(x)
    assert ours["twonn"] == pytest.approx(skdim.id.TwoNN().fit(x.numpy()).dimension_, rel=0.01)
    assert ours["mle"] == pytest.approx(skdim.id.MLE().fit(x.numpy()).dimension_, rel=0.01)


@pytest.mark.parametrize("method", ["twonn", "mle"])
@pytest.mark.parametrize(
    ("make", "dimension"),
    [(lambda: sphere(2000, 5, 20, seed=3), 5), (lambda: noisy_subspace(3000, 10, 100, 0.01, seed=4), 10)],
    ids=["5-sphere_in_R20", "10-subspace_in_R100"],
)
def test_known_manifolds_recover_their_dimension_within_ten_percent(make, dimension, method):
    assert intrinsic_dimension(make(), method) == pytest.approx(dimension, rel=0.1)


def test_one_neighbour_pass_equals_separate_calls_and_block_size_does_not_matter():
    x = DATASETS["sphere5_R20"]()
    both = intrinsic_dimensions(x, k=10)
    assert both["twonn"] == intrinsic_dimension(x, "twonn")
    assert both["mle"] == intrinsic_dimension(x, "mle", k=10)
    assert intrinsic_dimensions(x, k=10, block_size=7) == pytest.approx(both, rel=1e-12)


def test_float32_and_float64_agree():
    x = DATASETS["subspace8_R40"]() + 5
    assert intrinsic_dimensions(x.float()) == pytest.approx(intrinsic_dimensions(x), rel=1e-3)


def test_duplicates_are_merged_with_a_warning_and_give_the_estimate_of_the_distinct_points():
    x = DATASETS["sphere5_R20"]()
    doubled = torch.cat([x, x[:300], x[:50].half().double()])
    with pytest.warns(DegenerateInputWarning, match="duplicate"):
        estimates = intrinsic_dimensions(doubled)
    assert estimates == pytest.approx(intrinsic_dimensions(torch.cat([x, x[:50].half().double()]).unique(dim=0)))
    assert all(math.isfinite(value) for value in estimates.values())


@pytest.mark.parametrize(("distinct", "expected_nan"), [(1, {"twonn", "mle"}), (10, {"mle"})])
def test_too_few_distinct_points_give_nan_with_a_warning(distinct, expected_nan):
    x = torch.randn(distinct, 4, generator=torch.Generator().manual_seed(5)).repeat(30, 1)
    for method in ("twonn", "mle"):
        with pytest.warns(DegenerateInputWarning):
            value = intrinsic_dimension(x, method)
        assert math.isnan(value) == (method in expected_nan)


def test_equidistant_neighbours_give_nan_not_inf():
    corners = torch.eye(6)
    with pytest.warns(DegenerateInputWarning):
        estimates = intrinsic_dimensions(corners, k=4)
    assert all(math.isnan(value) for value in estimates.values())


def test_other_names_run_the_scikit_dimension_estimator():
    x = DATASETS["subspace8_R40"]()
    assert intrinsic_dimension(x, "lpca") == skdim.id.lPCA().fit(x.numpy()).dimension_
    assert intrinsic_dimension(x, "CorrInt", k1=5, k2=15) == skdim.id.CorrInt(k1=5, k2=15).fit(x.numpy()).dimension_


def test_unknown_method_and_too_few_points_are_rejected_with_the_reason():
    x = DATASETS["gaussian_R6"]()
    with pytest.raises(ValueError, match="unknown estimator 'nope'.*lpca"):
        intrinsic_dimension(x, "nope")
    with pytest.raises(ValueError, match=r"x: got shape \(15, 6\).*n >= 21"):
        intrinsic_dimension(x[:15], "mle")
    assert math.isfinite(intrinsic_dimension(x[:15], "twonn"))
