import math

import pytest
import torch

from attnconv_pl.probes import DegenerateInputWarning, lipschitz_ratios


def cloud(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_a_scaled_rotation_has_every_ratio_equal_to_its_scale():
    x = cloud(100, 6, seed=0)
    rotation = torch.linalg.qr(cloud(6, 6, seed=1))[0]
    ratios = lipschitz_ratios(x, 2.5 * x @ rotation.T + 7)
    assert ratios == pytest.approx({"max": 2.5, "p50": 2.5, "p90": 2.5, "p99": 2.5}, rel=1e-12)


def test_a_linear_map_has_ratios_between_its_singular_values_and_the_right_quantiles():
    x = cloud(300, 2, seed=2)
    out = x * torch.tensor([1.0, 3.0], dtype=torch.float64)
    ratios = lipschitz_ratios(x, out, pairs=4000, seed=5)
    assert 1.0 <= ratios["p50"] <= ratios["p90"] <= ratios["p99"] <= ratios["max"] <= 3.0
    assert ratios["max"] > 2.9
    g = torch.Generator().manual_seed(5)
    first, second = torch.randint(300, (4000,), generator=g), torch.randint(299, (4000,), generator=g)
    second = second + (second >= first).long()
    reference = (out[first] - out[second]).norm(dim=1) / (x[first] - x[second]).norm(dim=1)
    assert ratios["p90"] == pytest.approx(float(reference.quantile(0.9)), rel=1e-12)


def test_pairs_are_seeded_and_widths_may_differ():
    x, out = cloud(80, 5, seed=3), cloud(80, 9, seed=4)
    assert lipschitz_ratios(x, out, seed=1) == lipschitz_ratios(x, out, seed=1)
    assert lipschitz_ratios(x, out, seed=1) != lipschitz_ratios(x, out, seed=2)


def test_float32_and_float64_agree():
    x, out = cloud(80, 5, seed=5), cloud(80, 7, seed=6)
    assert lipschitz_ratios(x.float(), out.float()) == pytest.approx(lipschitz_ratios(x, out), rel=1e-5)


def test_pairs_of_identical_inputs_are_skipped_and_all_identical_gives_nan():
    x = cloud(5, 3, seed=7).repeat(20, 1)
    ratios = lipschitz_ratios(x, cloud(100, 3, seed=8))
    assert all(math.isfinite(value) for value in ratios.values())
    with pytest.warns(DegenerateInputWarning):
        ratios = lipschitz_ratios(torch.ones(10, 3), cloud(10, 3, seed=9))
    assert all(math.isnan(value) for value in ratios.values())


def test_rows_must_correspond():
    with pytest.raises(ValueError,
                       match=r"x_in has shape \(10, 3\) and x_out has shape \(9, 3\).*same number of points"):
        lipschitz_ratios(cloud(10, 3, seed=0), cloud(9, 3, seed=0))
