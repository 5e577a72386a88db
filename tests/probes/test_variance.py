import numpy as np
import pytest
import torch

from attnconv_pl.probes import participation_ratio, total_variance


def covariance_spectrum(x: torch.Tensor) -> np.ndarray:
    return np.linalg.eigvalsh(np.cov(x.double().numpy(), rowvar=False, bias=True))


@pytest.mark.parametrize("shape", [(300, 12), (20, 50)], ids=["n>d", "n<d"])
def test_total_variance_is_the_trace_of_the_population_covariance(shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.1, 3, shape[1])
    assert total_variance(x) == pytest.approx(covariance_spectrum(x).sum(), rel=1e-5)


@pytest.mark.parametrize("shape", [(300, 12), (20, 50)], ids=["covariance", "gram"])
def test_participation_ratio_matches_the_eigenvalues(shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1)) * torch.linspace(0.1, 3, shape[1])
    spectrum = covariance_spectrum(x)
    assert participation_ratio(x) == pytest.approx(spectrum.sum() ** 2 / (spectrum**2).sum(), rel=1e-5)


def test_participation_ratio_of_a_line_is_one_and_of_an_isotropic_cloud_near_d():
    t = torch.randn(500, 1, generator=torch.Generator().manual_seed(2))
    assert participation_ratio(t * torch.randn(1, 30)) == pytest.approx(1.0, rel=1e-5)
    wide = torch.randn(20000, 8, generator=torch.Generator().manual_seed(3))
    assert participation_ratio(wide) == pytest.approx(8, rel=0.02)


def test_identical_points_give_zero_variance_and_zero_participation_ratio():
    x = torch.full((7, 5), 0.1)
    assert total_variance(x) == 0.0
    assert participation_ratio(x) == 0.0
    assert participation_ratio(torch.zeros(10, 3)) == 0.0


def test_variance_scales_quadratically_and_ignores_translation():
    x = torch.randn(100, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    assert total_variance(3 * x + 50) == pytest.approx(9 * total_variance(x), rel=1e-10)
    assert participation_ratio(3 * x + 50) == pytest.approx(participation_ratio(x), rel=1e-10)


def test_float32_float64_and_float16_agree():
    x = torch.randn(400, 16, generator=torch.Generator().manual_seed(5), dtype=torch.float64) + 10
    for probe in (total_variance, participation_ratio):
        assert probe(x.float()) == pytest.approx(probe(x), rel=1e-5)
        assert probe(x.half()) == pytest.approx(probe(x), rel=1e-2)
