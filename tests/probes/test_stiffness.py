"""Stiffness probes against closed forms, exact Jacobians (svdvals) and scipy's Spearman rho."""

import copy
import math

import pytest
import scipy.stats
import torch
from torch import nn

from attnconv_pl.models import create_model
from attnconv_pl.probes import DegenerateInputWarning
from attnconv_pl.probes._lanczos import CHECK_EVERY
from attnconv_pl.probes.stiffness import (
    channel_rates,
    feature_stiffness,
    feature_stiffness_quantile,
    gate_rate_correlation,
    jacobian_singular_extremes,
    jacobian_stiffness,
    mean_singular_ratio,
    rate_mean,
)

RTOL = 1e-3
"""Relative agreement asked of the matrix-free singular values against svdvals of the exact Jacobian."""


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def scaled_channels(scales: list[float], shape=(6, 5, 4, 4), seed=0) -> tuple[torch.Tensor, torch.Tensor]:
    """States x (n, C, ...) and updates f(x) = x * scale_c per channel."""
    x = torch.randn(shape, generator=generator(seed), dtype=torch.float64)
    scale = torch.tensor(scales, dtype=torch.float64).view(1, -1, *[1] * (len(shape) - 2))
    return x, x * scale


@pytest.mark.parametrize("shape", [(6, 5, 4, 4), (40, 5)])
def test_a_diagonal_branch_has_its_scales_as_rates(shape):
    scales = [0.5, -1.0, 2.0, 4.0, 8.0]
    x, fx = scaled_channels(scales, shape)
    rates = channel_rates(x, fx)
    assert rates.dtype == torch.float64
    torch.testing.assert_close(rates, torch.tensor(scales, dtype=torch.float64).abs(), rtol=1e-12, atol=0)
    assert feature_stiffness(x, fx) == pytest.approx(16.0, rel=1e-12)
    assert rate_mean(x, fx) == pytest.approx(15.5 / 5, rel=1e-12)
    magnitudes = torch.tensor(scales, dtype=torch.float64).abs()
    expected = magnitudes.quantile(0.95) / magnitudes.quantile(0.05)
    assert feature_stiffness_quantile(x, fx) == pytest.approx(float(expected), rel=1e-12)
    assert feature_stiffness_quantile(x, fx, low=0.0, high=1.0) == feature_stiffness(x, fx)


def test_dead_channels_have_nan_rates_and_are_left_out():
    x, fx = scaled_channels([1.0, 3.0, 100.0, 2.0, 6.0])
    x[:, 2] = 0.0
    rates = channel_rates(x, fx)
    assert math.isnan(rates[2]) and not rates[[0, 1, 3, 4]].isnan().any()
    assert feature_stiffness(x, fx) == pytest.approx(6.0, rel=1e-12)
    assert rate_mean(x, fx) == pytest.approx(3.0, rel=1e-12)


def test_a_still_channel_makes_the_index_infinite():
    x, fx = scaled_channels([0.0, 1.0, 2.0, 3.0, 4.0])
    assert feature_stiffness(x, fx) == math.inf
    assert math.isfinite(feature_stiffness_quantile(x, fx, low=0.5))


@pytest.mark.parametrize(
    ("dead_state", "message"), [(True, "every channel is dead"), (False, "every live channel has rate 0")]
)
def test_no_dynamics_gives_nan_with_a_warning(dead_state, message):
    x, fx = scaled_channels([0.0] * 5)
    if dead_state:
        x = torch.zeros_like(x)
    with pytest.warns(DegenerateInputWarning, match=message):
        assert math.isnan(feature_stiffness(x, fx))


def test_malformed_inputs_are_named():
    x, fx = scaled_channels([1.0] * 5)
    with pytest.raises(ValueError, match=r"x has shape \(6, 5, 4, 4\) and fx has shape \(6, 5, 4\)"):
        channel_rates(x, fx[..., 0])
    with pytest.raises(ValueError, match="expected 0 <= low < high <= 1"):
        feature_stiffness_quantile(x, fx, low=0.9, high=0.1)


def orthonormal(rows: int, cols: int, seed: int) -> torch.Tensor:
    return torch.linalg.qr(torch.randn(rows, rows, generator=generator(seed), dtype=torch.float64))[0][:, :cols]


def linear_map(d_out: int, d_in: int, singular_values: list[float]) -> torch.Tensor:
    """U diag(s) V^T, (d_out, d_in), with the given nonzero singular values."""
    k = len(singular_values)
    s = torch.tensor(singular_values, dtype=torch.float64)
    return orthonormal(d_out, k, seed=1) @ torch.diag(s) @ orthonormal(d_in, k, seed=2).T


def assert_extremes_match(sigma_max, sigma_min, reference: torch.Tensor, dtype=torch.float64):
    """Both (n,) estimates equal the largest and the smallest nonzero value of ``reference``.

    Nonzero: above sqrt(eps) of the ``dtype`` computed in times the largest (the numerical rank).
    """
    nonzero = reference[reference > torch.finfo(dtype).eps ** 0.5 * reference.max()]
    torch.testing.assert_close(sigma_max, torch.full_like(sigma_max, float(nonzero.max())), rtol=RTOL, atol=0)
    torch.testing.assert_close(sigma_min, torch.full_like(sigma_min, float(nonzero.min())), rtol=RTOL, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("d_out", "d_in"), [(20, 20), (12, 20), (30, 20)])
def test_a_linear_map_gives_its_extreme_singular_values(d_out, d_in, dtype):
    singular_values = torch.logspace(2, -1, min(d_out, d_in)).tolist()
    matrix = linear_map(d_out, d_in, singular_values).to(dtype)
    x = torch.randn(3, d_in, generator=generator(3), dtype=dtype)
    sigma_max, sigma_min, converged = jacobian_singular_extremes(lambda z: z @ matrix.T, x)
    assert converged.tolist() == [True] * 3
    assert_extremes_match(sigma_max, sigma_min, torch.linalg.svdvals(matrix.double()), dtype)
    assert sigma_max[0] == pytest.approx(100.0, rel=RTOL) and sigma_min[0] == pytest.approx(0.1, rel=RTOL)
    expected = 1000.0
    assert jacobian_stiffness(lambda z: z @ matrix.T, x) == pytest.approx(expected, rel=2 * RTOL)


def test_a_rank_deficient_map_gives_its_smallest_nonzero_singular_value():
    matrix = linear_map(20, 20, [5.0, 3.0, 2.0, 1.0, 0.5])
    x = torch.randn(2, 20, generator=generator(4), dtype=torch.float64)
    sigma_max, sigma_min, converged = jacobian_singular_extremes(lambda z: z @ matrix.T, x)
    assert converged.all(), "the Krylov space is exhausted after 5 steps: exact"
    assert sigma_max.tolist() == pytest.approx([5.0, 5.0], rel=1e-9)
    assert sigma_min.tolist() == pytest.approx([0.5, 0.5], rel=1e-9)


def with_random_statistics(module: nn.Module, seed: int) -> nn.Module:
    """``module`` in eval mode with random BN statistics and affine parameters (BN is then not the identity)."""
    g = generator(seed)
    for bn in (m for m in module.modules() if isinstance(m, nn.BatchNorm2d)):
        shape = bn.running_mean.shape
        bn.running_mean.copy_(torch.randn(shape, generator=g))
        bn.running_var.copy_(torch.rand(shape, generator=g) + 0.5)
        bn.weight.data.copy_(torch.randn(shape, generator=g))
        bn.bias.data.copy_(torch.randn(shape, generator=g))
    return module.eval()


def exact_singular_values(f: nn.Module, point: torch.Tensor) -> torch.Tensor:
    """svdvals of the exact Jacobian of f at one input (no batch axis), in float64."""
    f = copy.deepcopy(f).double()
    jacobian = torch.autograd.functional.jacobian(lambda z: f(z.unsqueeze(0))[0], point.double())
    return torch.linalg.svdvals(jacobian.reshape(-1, point.numel()))


CONV_BRANCHES = {
    "conv-bn": lambda: nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3)),
    "conv-bn-relu-conv-bn": lambda: nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, bias=False),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Conv2d(3, 2, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(2),
    ),
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("branch", CONV_BRANCHES)
def test_a_conv_bn_branch_in_eval_mode_matches_its_exact_jacobian(branch, dtype):
    torch.manual_seed(0)
    f = with_random_statistics(CONV_BRANCHES[branch](), seed=5).to(dtype)
    x = torch.randn(1, 2, 6, 6, generator=generator(6), dtype=dtype)
    sigma_max, sigma_min, converged = jacobian_singular_extremes(f, x)
    assert converged.all()
    assert_extremes_match(sigma_max, sigma_min, exact_singular_values(f, x[0]), dtype)


def test_a_cifar_resnet_branch_matches_its_exact_jacobian():
    torch.manual_seed(0)
    model = with_random_statistics(create_model("resnet20", img_size=4), seed=7).double()
    block = model.layer1[1]
    x = model.layer1[0](model.stem(torch.randn(1, 3, 4, 4, generator=generator(8), dtype=torch.float64)))
    sigma_max, sigma_min, converged = jacobian_singular_extremes(block.branch, x)
    assert converged.all()
    reference = exact_singular_values(block.branch, x[0])
    assert (reference > 1e-9 * reference.max()).sum() < x[0].numel(), "the ReLU makes J rank-deficient"
    assert_extremes_match(sigma_max, sigma_min, reference)


def serial_reference(f, x: torch.Tensor, max_iter: int, tol: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One input at a time (batches of one), for parity: J_i materialised by
    ``torch.autograd.functional.jacobian`` (an independent route to J, and far cheaper at these
    sizes than ``torch.func.jvp`` per step, whose BatchNorm runs as a Python decomposition).

    Returns (sigma_max, sigma_min), (n,) float64 each, with the same seeded start vectors.
    """
    generator = torch.Generator().manual_seed(seed)
    extremes = []
    for point in x.split(1):
        jacobian = torch.autograd.functional.jacobian(f, point, vectorize=True).reshape(-1, point.numel())
        with torch.no_grad():
            output = f(point)
            start = torch.randn(output.shape, generator=generator, dtype=torch.float64).to(output).flatten()
            extremes.append(
                serial_extremes(
                    push=lambda v, jacobian=jacobian: jacobian @ v,
                    pull=lambda u, jacobian=jacobian: jacobian.T @ u,
                    start=start,
                    input_size=point.numel(),
                    max_iter=max_iter,
                    tol=tol,
                )
            )
    return torch.tensor(extremes, dtype=torch.float64).unbind(1)


def serial_extremes(push, pull, start, input_size, max_iter, tol) -> tuple[float, float]:
    """Golub-Kahan-Lanczos on one input with full reorthogonalisation, as the library documents it."""
    output_size = start.numel()
    steps = min(max_iter, input_size, output_size)
    eps = torch.finfo(start.dtype).eps
    rounding = math.sqrt(max(input_size, output_size)) * eps
    us, vs = start.new_zeros(steps + 1, output_size), start.new_zeros(steps + 1, input_size)
    us[0] = start / torch.linalg.vector_norm(start)
    vs[0] = pull(us[0])
    alphas, betas = [float(torch.linalg.vector_norm(vs[0]))], []
    if alphas[0] == 0.0:
        return 0.0, math.nan
    vs[0] /= alphas[0]
    scale = alphas[0]
    for k in range(1, steps + 1):
        u = reorthogonalise(push(vs[k - 1]) - alphas[-1] * us[k - 1], us[:k])
        beta, alpha = float(torch.linalg.vector_norm(u)), 0.0
        if beta > rounding * scale:
            us[k] = u / beta
            v = reorthogonalise(pull(us[k]) - beta * vs[k - 1], vs[:k])
            alpha = float(torch.linalg.vector_norm(v))
            scale = max(scale, beta, alpha)
        exact = min(alpha, beta) <= rounding * scale
        betas.append(0.0 if beta <= rounding * scale else beta)
        if exact or k % CHECK_EVERY == 0 or k == steps:
            bidiagonal = torch.zeros(k + 1, k, dtype=torch.float64)
            bidiagonal[range(k), range(k)] = torch.tensor(alphas, dtype=torch.float64)
            bidiagonal[range(1, k + 1), range(k)] = torch.tensor(betas, dtype=torch.float64)
            _, values, right = torch.linalg.svd(bidiagonal, full_matrices=False)
            smallest = int((values > math.sqrt(eps) * values[0]).sum()) - 1
            bounds = alpha * betas[-1] * right[:, -1].abs() / (2 * values**2)
            if exact or (bounds[0] <= tol and bounds[smallest] <= tol):
                break
        alphas.append(alpha)
        vs[k] = v / alpha
    return float(values[0]), float(values[smallest])


def reorthogonalise(vector: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    for _ in range(2):
        vector = vector - basis.T @ (basis @ vector)
    return vector


def resnet_branch_and_inputs(count: int, dtype=torch.float64) -> tuple[nn.Module, torch.Tensor]:
    """A ResNet-20 branch at 4 px (256 dimensions) with random BN statistics, and ``count`` inputs of it."""
    torch.manual_seed(0)
    model = with_random_statistics(create_model("resnet20", img_size=4), seed=7).to(dtype)
    images = torch.randn(count, 3, 4, 4, generator=generator(8), dtype=dtype)
    return model.layer1[1].branch, model.layer1[0](model.stem(images)).detach()


@pytest.fixture(scope="module")
def resnet_reference() -> tuple[nn.Module, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """5 inputs whose serial runs stop after 110 or 120 steps, and their serial values."""
    branch, x = resnet_branch_and_inputs(5)
    return branch, x, serial_reference(branch, x, max_iter=500, tol=1e-4, seed=3)


@pytest.mark.parametrize("chunk", [1, 2, 8])
def test_inputs_in_lockstep_match_one_input_at_a_time(resnet_reference, chunk):
    """Each input keeps the values of its own stop, whichever inputs share its chunk."""
    branch, x, expected = resnet_reference
    sigma_max, sigma_min, converged = jacobian_singular_extremes(branch, x, seed=3, chunk=chunk)
    assert converged.all()
    for value, reference in zip((sigma_max, sigma_min), expected):
        torch.testing.assert_close(value, reference, rtol=1e-9, atol=0)


def test_float32_inputs_in_lockstep_match_one_input_at_a_time():
    """Serial runs stop after 120, 126 (an invariant subspace between two checks) and 120 steps."""
    branch, x = resnet_branch_and_inputs(3, torch.float32)
    expected = serial_reference(branch, x, max_iter=500, tol=1e-4, seed=3)
    for value, reference in zip(jacobian_singular_extremes(branch, x, seed=3)[:2], expected):
        torch.testing.assert_close(value, reference, rtol=1e-5, atol=0)


def test_inputs_stop_on_their_own_at_a_zero_jacobian_an_exhausted_space_or_max_iter():
    """f(z) = relu(z) M^T: J_i = M diag(z_i > 0), of rank the number of positive entries of z_i."""
    matrix = linear_map(300, 300, torch.linspace(1.0, 10.0, 300).tolist())
    x = -torch.ones(3, 300, dtype=torch.float64)
    x[1, :5] = 1.0
    x[2] = 1.0
    branch = lambda z: torch.relu(z) @ matrix.T  # noqa: E731
    with pytest.warns(RuntimeWarning, match="1 of 3 inputs did not reach tol=0.0001 in max_iter=15 steps"):
        sigma_max, sigma_min, converged = jacobian_singular_extremes(branch, x, max_iter=15, seed=5, chunk=3)
    assert converged.tolist() == [True, True, False], "J = 0 and an exhausted space are exact; input 2 is stopped"
    assert sigma_max[0] == 0.0 and math.isnan(sigma_min[0])
    exact = torch.linalg.svdvals(matrix[:, :5])
    assert sigma_max[1] == pytest.approx(float(exact.max()), rel=1e-9)
    assert sigma_min[1] == pytest.approx(float(exact.min()), rel=1e-9)
    assert 9.9 < sigma_max[2] <= 10.0 + 1e-9 and 1.01 < sigma_min[2]
    expected = serial_reference(branch, x, max_iter=15, tol=1e-4, seed=5)
    torch.testing.assert_close(sigma_max, expected[0], rtol=1e-9, atol=0, equal_nan=True)
    torch.testing.assert_close(sigma_min, expected[1], rtol=1e-9, atol=0, equal_nan=True)


def test_settings_out_of_range_are_named():
    x = torch.randn(2, 4, generator=generator(15))
    with pytest.raises(ValueError, match="max_iter=500, tol=0.0001, chunk=0: expected .* chunk >= 1"):
        jacobian_singular_extremes(lambda z: z, x, chunk=0)
    with pytest.raises(ValueError, match="max_iter=0, tol=0.0001, chunk=8: expected max_iter >= 1"):
        jacobian_singular_extremes(lambda z: z, x, max_iter=0)


def unconverged_case(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    matrix = linear_map(300, 300, torch.linspace(1.0, 10.0, 300).tolist())
    x = torch.zeros(2, 300, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="2 of 2 inputs did not reach tol=0.0001 in max_iter=15 steps") as caught:
        sigma_max, sigma_min, converged = jacobian_singular_extremes(lambda z: z @ matrix.T, x, max_iter=15, seed=seed)
    assert len(caught) == 1 and converged.tolist() == [False, False]
    return sigma_max, sigma_min


def test_start_vectors_are_seeded_and_unconverged_values_bound_the_truth_from_inside():
    first, again, other = unconverged_case(seed=1), unconverged_case(seed=1), unconverged_case(seed=2)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[1], other[1])
    sigma_max, sigma_min = first
    assert (sigma_max <= 10.0 + 1e-9).all() and (sigma_max > 9.9).all()
    assert (sigma_min >= 1.0 - 1e-9).all() and (sigma_min > 1.01).all()


def test_the_module_is_left_untouched_and_must_be_in_eval_mode():
    f = with_random_statistics(CONV_BRANCHES["conv-bn"](), seed=9)
    before = {name: tensor.clone() for name, tensor in f.state_dict().items()}
    x = torch.randn(2, 2, 4, 4, generator=generator(10))
    jacobian_singular_extremes(f, x)
    assert all(param.grad is None for param in f.parameters())
    assert all(torch.equal(before[name], tensor) for name, tensor in f.state_dict().items())
    with pytest.raises(ValueError, match=r"the branch is in training mode .*call \.eval\(\) first"):
        jacobian_singular_extremes(f.train(), x)


def test_a_zero_jacobian_has_no_smallest_singular_value():
    x = torch.randn(3, 4, generator=generator(11))
    sigma_max, sigma_min, converged = jacobian_singular_extremes(lambda z: 0 * z, x)
    assert sigma_max.tolist() == [0.0] * 3 and sigma_min.isnan().all() and converged.all()
    with pytest.warns(DegenerateInputWarning, match="the Jacobian is 0 at every input"):
        assert math.isnan(mean_singular_ratio(sigma_max, sigma_min))


@pytest.mark.parametrize("gate_shape", [(8, 12), (8, 12, 1, 1)])
def test_gate_rate_correlation_is_scipys_spearman_with_ties_and_nans_dropped(gate_shape):
    gate = torch.rand(gate_shape, generator=generator(12))
    rates = (torch.rand(12, generator=generator(13)) * 4).round().double()
    rates[[3, 7]] = math.nan
    mean_gate = gate.double().reshape(8, 12).mean(0).numpy()
    kept = ~rates.isnan().numpy()
    expected = scipy.stats.spearmanr(mean_gate[kept], rates.numpy()[kept]).statistic
    assert gate_rate_correlation(gate, rates) == pytest.approx(expected, rel=1e-12)
    gate_ties = gate.mean(0, keepdim=True).round(decimals=1)
    expected_ties = scipy.stats.spearmanr(gate_ties.reshape(12).numpy()[kept], rates.numpy()[kept]).statistic
    assert gate_rate_correlation(gate_ties, rates) == pytest.approx(expected_ties, rel=1e-12)


def test_gate_rate_correlation_of_a_constant_gate_is_nan():
    with pytest.warns(DegenerateInputWarning, match="constant across channels"):
        assert math.isnan(gate_rate_correlation(torch.ones(4, 6), torch.arange(6.0)))
    with pytest.raises(ValueError, match=r"gate has shape \(4, 6\) and rates \(5,\)"):
        gate_rate_correlation(torch.ones(4, 6), torch.arange(5.0))


def train_euler_gate(eigenvalues: torch.Tensor, step: float, iterations: int = 400) -> torch.Tensor:
    """Gates a_c = sigmoid(theta_c) of x + a * step * (A x), A = diag(eigenvalues), fitted to exp(A step) x.

    A dynamical toy independent of the paper: gradient descent on the one-step error of forward
    Euler against the exact solution, averaged over random states.
    """
    states = torch.randn(256, len(eigenvalues), generator=generator(14), dtype=torch.float64)
    exact = states @ torch.linalg.matrix_exp(torch.diag(eigenvalues) * step).T
    theta = torch.zeros(len(eigenvalues), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([theta], lr=0.1)
    for _ in range(iterations):
        optimizer.zero_grad()
        euler = states + torch.sigmoid(theta) * step * states * eigenvalues
        loss = (euler - exact).pow(2).sum(1).mean()
        loss.backward()
        optimizer.step()
    return torch.sigmoid(theta).detach()


def test_a_learnt_step_gate_shrinks_the_step_of_the_stiff_component():
    eigenvalues, step = torch.tensor([-1.0, -100.0], dtype=torch.float64), 0.05
    gate = train_euler_gate(eigenvalues, step)
    best = (torch.exp(eigenvalues * step) - 1) / (eigenvalues * step)
    torch.testing.assert_close(gate, best, rtol=1e-2, atol=0)
    assert gate[1] < 0.25 < 0.95 < gate[0]
    assert abs(1 + step * eigenvalues[1]) > 1 > abs(1 + gate[1] * step * eigenvalues[1]), "the gate makes it stable"
