"""CKA against float64 references written here from the definitions (HSIC_0 = tr(KHLH) / (n-1)^2,
Song et al.'s unbiased HSIC_1 formula), its exact invariances, the minibatch estimator against
the full one, and the constant-layer convention."""

import pytest
import torch

from attnconv_pl.probes import DegenerateInputWarning
from attnconv_pl.probes.similarity import MinibatchCKA, linear_cka, u_centred_gram, unbiased_hsic


def hsic0(k, l_):
    """tr(K H L H) / (n - 1)^2, H = I - 11^T / n."""
    n = len(k)
    h = torch.eye(n, dtype=torch.float64) - torch.full((n, n), 1 / n, dtype=torch.float64)
    return torch.trace(k @ h @ l_ @ h) / (n - 1) ** 2


def hsic1(k, l_):
    """Song et al. (2012), eq. (5): [tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3))."""
    n = len(k)
    k, l_ = k - torch.diag(torch.diag(k)), l_ - torch.diag(torch.diag(l_))
    one = torch.ones(n, dtype=torch.float64)
    return (torch.trace(k @ l_) + (one @ k @ one) * (one @ l_ @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (one @ k @ l_ @ one)) / (n * (n - 3))


def cka(x, y, hsic):
    k, l_ = x.double() @ x.double().T, y.double() @ y.double().T
    return float(hsic(k, l_) / torch.sqrt(hsic(k, k) * hsic(l_, l_)))


def related(n, d1=6, d2=5, noise=0.5, seed=0):
    """Two representations of n inputs: y a noisy linear map of x."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d1, generator=generator, dtype=torch.float64)
    y = x @ torch.randn(d1, d2, generator=generator, dtype=torch.float64)
    return x, y + noise * torch.randn(n, d2, generator=generator, dtype=torch.float64)


def orthogonal(d, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))[0]


@pytest.mark.parametrize("widths", [(6, 5), (40, 30)], ids=["feature-form", "gram-form"])
def test_linear_cka_is_the_ratio_of_biased_hsics(widths):
    x, y = related(30, *widths)
    assert 0 < linear_cka(x, y) < 1
    assert linear_cka(x, y) == pytest.approx(cka(x, y, hsic0), rel=1e-12)
    assert linear_cka(x.float(), y.float()) == pytest.approx(cka(x, y, hsic0), rel=1e-5)


def test_unbiased_hsic_is_songs_estimator():
    x, y = related(20)
    k, l_ = x @ x.T, y @ y.T
    assert unbiased_hsic(k, l_) == pytest.approx(float(hsic1(k, l_)), rel=1e-12)
    assert unbiased_hsic(k, k) == pytest.approx(float(hsic1(k, k)), rel=1e-12)
    assert float((u_centred_gram(x) * u_centred_gram(y)).sum()) / (20 * 17) == pytest.approx(float(hsic1(k, l_)),
                                                                                             rel=1e-10)


def test_cka_is_invariant_to_orthogonal_transforms_isotropic_scaling_and_translation():
    x, y = related(40)
    moved = 3.7 * x @ orthogonal(6, 1) + 5.0
    assert linear_cka(moved, y) == pytest.approx(linear_cka(x, y), rel=1e-12)
    assert linear_cka(x, moved) == pytest.approx(1.0, rel=1e-12)
    plain, transformed = MinibatchCKA(["x", "y"]), MinibatchCKA(["x", "y"])
    for batch in torch.arange(40).split(10):
        plain.update({"x": x[batch], "y": y[batch]})
        transformed.update({"x": moved[batch], "y": 0.2 * y[batch] @ orthogonal(5, 2) - 1e4})
    torch.testing.assert_close(transformed.compute().values, plain.compute().values, rtol=1e-10, atol=0)
    assert plain.compute().values[0, 1] < 0.99


def test_minibatch_cka_of_one_batch_is_the_full_unbiased_cka():
    x, y = related(60)
    estimator = MinibatchCKA(["x", "y"])
    estimator.update({"x": x, "y": y})
    result = estimator.compute()
    assert result["x", "y"] == result["y", "x"] == pytest.approx(cka(x, y, hsic1), rel=1e-12)
    assert result["x", "x"] == pytest.approx(1.0, rel=1e-12)


def test_minibatch_cka_is_the_ratio_of_mean_batch_hsics_and_near_the_full_estimate():
    x, y = related(300, noise=1.0)
    batches = torch.arange(300).split(50)
    estimator = MinibatchCKA(["x", "y"])
    for batch in batches:
        estimator.update({"x": x[batch], "y": y[batch]})
    means = [torch.stack([hsic1(a[b] @ a[b].T, c[b] @ c[b].T) for b in batches]).mean()
             for a, c in ((x, y), (x, x), (y, y))]
    assert estimator.compute()["x", "y"] == pytest.approx(float(means[0] / torch.sqrt(means[1] * means[2])), rel=1e-10)
    assert estimator.compute()["x", "y"] == pytest.approx(cka(x, y, hsic1), abs=0.03)


def test_cross_matrices_and_stored_grams_give_the_same_numbers_as_one_matrix():
    x, y = related(48)
    z = torch.randn(48, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    together, cross, stored = MinibatchCKA(["x", "y", "z"]), MinibatchCKA(["x", "y"], ["z", "x"]), MinibatchCKA(
        ["x", "y"], ["z", "x"])
    for batch in torch.arange(48).split(12):
        features = {"x": x[batch], "y": y[batch], "z": z[batch]}
        together.update(features)
        cross.update(features, features)
        grams = {name: u_centred_gram(value) for name, value in features.items()}
        stored.update_grams(grams, grams)
    full = together.compute()
    for result in (cross.compute(), stored.compute()):
        assert result.values.shape == (2, 2)
        for row in ("x", "y"):
            for column in ("z", "x"):
                assert result[row, column] == pytest.approx(full[row, column], rel=1e-12)


@pytest.mark.parametrize("constant", [torch.zeros(32, 4), torch.full((32, 4), 0.1),
                                      torch.full((32, 4), 1e3 + 1e-9, dtype=torch.float64)],
                         ids=["zeros", "a-tenth-float32", "large-float64"])
def test_a_constant_layer_is_similar_only_to_a_constant_layer(constant):
    x, _ = related(32)
    with pytest.warns(DegenerateInputWarning, match="constant layer"):
        assert linear_cka(constant, x) == 0.0
    with pytest.warns(DegenerateInputWarning):
        assert linear_cka(constant, 2 * constant) == 1.0
    estimator = MinibatchCKA(["c", "x", "d"])
    for batch in torch.arange(32).split(8):
        estimator.update({"c": constant[batch], "x": x[batch], "d": torch.ones(len(batch), 2)})
    with pytest.warns(DegenerateInputWarning, match="c, d"):
        result = estimator.compute()
    assert result.constant == ("c", "d")
    assert result.values.tolist() == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]


def test_a_barely_varying_float32_layer_is_not_constant():
    x, _ = related(32)
    varying = (torch.full((32, 4), 1.0) + 1e-6 * x[:, :4]).float()
    assert len(set(varying[:, 0].tolist())) > 1
    assert linear_cka(varying, x[:, :4]) > 0.99


def test_the_unbiased_estimator_refuses_batches_of_fewer_than_four_inputs():
    x, _ = related(3)
    with pytest.raises(ValueError, match="needs at least 4 per batch"):
        MinibatchCKA(["x"]).update({"x": x})
    with pytest.raises(ValueError, match="needs at least 4 per batch"):
        unbiased_hsic(x @ x.T, x @ x.T)


def test_a_batch_must_hold_every_name_and_compute_needs_a_batch():
    x, y = related(8)
    estimator = MinibatchCKA(["x", "y"])
    with pytest.raises(ValueError, match="no batch was added"):
        estimator.compute()
    with pytest.raises(ValueError, match="the batch has no y"):
        estimator.update({"x": x})
    with pytest.raises(ValueError, match="same inputs"):
        estimator.update({"x": x, "y": y[:6]})
