"""The single-node readout fitted to its tolerance: scikit-learn's optimum on the features of a
trained network, masked refits, and a budget that runs out (marked and warned about once)."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from attnconv_pl.analyses.single_node import SingleNode, SingleNodeSettings
from attnconv_pl.models import ProbePoint
from attnconv_pl.probes.single_node import (
    andc_mask,
    andc_statistics,
    fit_readout,
    label_clusters,
    node_label_matrices,
    readout_accuracy,
    readout_problem,
    single_node_fields,
    solve_readout,
)

L2 = 1e-3


@pytest.fixture(scope="module")
def trained_features() -> tuple[torch.Tensor, torch.Tensor]:
    """Token-averaged features (n=1797, D=32) of a small network trained on scikit-learn's digits:
    each image's 8 rows are 8 tokens (8 pixels and the row's one-hot position), a token-wise
    layer, the mean over tokens and a linear layer of 32 nodes (the sub-block the readout reads),
    then a linear classifier. Trained to about 96% accuracy, so the features separate the labels
    and the readout's probabilities saturate (the hard case for a solver)."""
    digits = load_digits()
    rows = torch.tensor(digits.images / 16, dtype=torch.float32)
    tokens = torch.cat([rows, torch.eye(8).expand(len(rows), 8, 8)], 2)
    labels = torch.tensor(digits.target)
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU())
    nodes, classifier = torch.nn.Linear(32, 32), torch.nn.Linear(32, 10)
    optimizer = torch.optim.Adam([*encoder.parameters(), *nodes.parameters(), *classifier.parameters()], lr=2e-2)
    for _ in range(100):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(classifier(nodes(encoder(tokens).mean(1))), labels).backward()
        optimizer.step()
    with torch.no_grad():
        features = nodes(encoder(tokens).mean(1))
        assert (classifier(features).argmax(1) == labels).double().mean() > 0.9
    return features.double(), labels


def scikit_learn_readout(features: torch.Tensor, labels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's ``LogisticRegression(C=1 / (n l2))`` on standardised features, solved to
    machine precision: its (L, D) weights and its (L,) intercepts less their mean."""
    standard = StandardScaler().fit_transform(features.numpy())
    reference = LogisticRegression(C=1 / (len(labels) * L2), solver="newton-cholesky", tol=1e-13, max_iter=1000)
    reference.fit(standard, labels.numpy())
    return reference.coef_, reference.intercept_ - reference.intercept_.mean()


def standardised(readout, features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The readout's weights and biases on standardised features (biases less their mean)."""
    std = features.std(0, correction=0)
    weight = readout.weight * std
    bias = readout.bias + readout.weight @ features.mean(0)
    return weight.numpy(), (bias - bias.mean()).numpy()


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_the_readout_of_trained_features_is_scikit_learns_optimum(trained_features):
    features, labels = trained_features
    readout = fit_readout(features, labels, 10, l2=L2)
    assert readout.converged and readout.gradient_norm <= 1e-10 and readout.iterations <= 30
    weight, bias = standardised(readout, features)
    expected_weight, expected_bias = scikit_learn_readout(features, labels)
    assert relative(weight, expected_weight) < 1e-5
    assert relative(bias, expected_bias) < 1e-5
    assert np.abs(weight).max() > 1  # trained, separating features: not the near-zero weights of noise


def test_a_mask_that_drops_whole_nodes_is_a_fit_on_the_other_nodes(trained_features):
    features, labels = trained_features
    kept = torch.arange(features.shape[1]) % 3 != 0
    masked = solve_readout(readout_problem(features, labels, 10), l2=L2, mask=kept.expand(10, -1).clone())
    assert masked.converged
    assert torch.equal(masked.weight[:, ~kept], torch.zeros(10, int((~kept).sum()), dtype=torch.float64))
    weight, bias = standardised(masked, features)
    expected_weight, expected_bias = scikit_learn_readout(features[:, kept], labels)
    assert relative(weight[:, kept.numpy()], expected_weight) < 1e-5
    assert relative(bias, expected_bias) < 1e-5


def test_an_andc_refit_equals_a_masked_fit_of_its_own_and_keeps_the_masked_weights_at_zero(trained_features):
    features, labels = trained_features
    problem = readout_problem(features, labels, 10)
    readout = solve_readout(problem, l2=L2)
    clusters = label_clusters(node_label_matrices(single_node_fields(features, readout.weight), labels, 10)).clusters
    mask = andc_mask(clusters)
    stats = andc_statistics(problem, (features, labels), clusters, readout, count=2, l2=L2)
    refit = fit_readout(features, labels, 10, l2=L2, mask=mask)
    assert refit.converged and stats["andc_refit_converged"] == 1.0
    assert torch.equal(refit.weight[~mask], torch.zeros(int((~mask).sum()), dtype=torch.float64))
    assert stats["andc_acc_refit"] == readout_accuracy(features, labels, refit.weight, refit.bias)
    # the refit is the optimum of its own problem: the mask's free weights have zero gradient
    weight = refit.weight.clone().requires_grad_(True)
    bias = refit.bias.clone().requires_grad_(True)
    standard_weight = weight * features.std(0, correction=0)
    penalty = L2 / 2 * standard_weight.square().sum()
    (torch.nn.functional.cross_entropy(features @ weight.T + bias, labels) + penalty).backward()
    assert float((weight.grad * features.std(0, correction=0).reciprocal() * mask).norm()) < 1e-8


def test_a_budget_that_runs_out_is_marked_and_warned_about_once_naming_the_setting(trained_features):
    features, labels = trained_features
    stopped = fit_readout(features, labels, 10, l2=L2, max_iter=2)
    assert not stopped.converged and stopped.iterations == 2 and stopped.gradient_norm > 1e-10

    points = [ProbePoint(name, "ff_nodes", features.shape[1]) for name in ("a", "b")]
    data = {name: (features[:600], labels[:600]) for name in ("a", "b")}
    held_out = {name: (features[600:900], labels[600:900]) for name in ("a", "b")}
    settings = SingleNodeSettings(max_iter=2, random_count=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = SingleNode(settings, points, {}, 10).run(3, data, held_out, 10)
    messages = [str(warning.message) for warning in caught if issubclass(warning.category, RuntimeWarning)]
    assert len(messages) == 1
    assert "a, b" in messages[0] and "max_iter=2" in messages[0] and "raise --single_node.max_iter" in messages[0]
    assert result.values[("a", "snp_readout_converged")] == 0.0
    assert 0.0 <= result.values[("a", "andc_refit_converged")] < 1.0

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = SingleNode(SingleNodeSettings(random_count=2), points, {}, 10).run(3, data, held_out, 10)
    assert not [warning for warning in caught if "max_iter" in str(warning.message)]
    assert result.values[("b", "snp_readout_converged")] == result.values[("b", "andc_refit_converged")] == 1.0


def test_settings_of_runs_made_before_the_tolerance_still_load():
    assert SingleNodeSettings(max_iter=100).max_iter == 100  # an old run's config.yaml: L-BFGS's 100
    with pytest.raises(ValueError, match=r"tol must be in \(0, 1\)"):
        SingleNodeSettings(tol=0.0)
