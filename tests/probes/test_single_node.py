"""Single-node performance: readout, fields, node-label matrices, clusters, ANDC, heads."""

import math

import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from attnconv_pl.probes._checks import DegenerateInputWarning
from attnconv_pl.probes.single_node import (
    LabelClusters,
    andc_mask,
    andc_pruned_fraction,
    andc_statistics,
    cluster_statistics,
    fit_readout,
    head_label_sets,
    head_statistics,
    label_clusters,
    label_set_jaccard,
    node_label_matrices,
    random_masks,
    readout_accuracy,
    readout_problem,
    single_node_fields,
)


def blobs(n_per_class, centres, spread, seed=0):
    """Gaussian blobs around the rows of ``centres`` (L, D): features (n, D) float64, labels (n,)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(len(centres)).repeat_interleave(n_per_class)
    noise = torch.randn(len(labels), centres.shape[1], generator=generator, dtype=torch.float64)
    return centres[labels] + spread * noise, labels


def test_fields_sum_to_the_logits_on_random_tensors():
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(7, 5, generator=generator, dtype=torch.float64)
    weight = torch.randn(3, 5, generator=generator, dtype=torch.float64)
    bias = torch.randn(3, generator=generator, dtype=torch.float64)
    fields = single_node_fields(features, weight)
    assert fields.shape == (7, 5, 3)
    torch.testing.assert_close(fields[2, 4], weight[:, 4] * features[2, 4])
    torch.testing.assert_close(fields.sum(1) + bias, features @ weight.T + bias)


def test_fit_readout_is_scikit_learns_logistic_regression_on_raw_features():
    centres = torch.tensor([[0.0, 0, 0, 0], [1, 0, 1, 0], [0, 1, 1, 1]], dtype=torch.float64)
    features, labels = blobs(40, centres, spread=0.8)
    features = features * torch.tensor([1.0, 100.0, 0.01, 3.0], dtype=torch.float64) + 50.0
    l2 = 1e-2
    fitted = fit_readout(features, labels, 3, l2=l2)
    weight, bias = fitted.weight, fitted.bias
    assert fitted.converged and fitted.gradient_norm <= 1e-10
    scaler = StandardScaler().fit(features.numpy())
    reference = LogisticRegression(C=1 / (len(labels) * l2), tol=1e-12, max_iter=10_000)
    reference.fit(scaler.transform(features.numpy()), labels.numpy())
    expected = torch.from_numpy(reference.predict_proba(scaler.transform(features.numpy())))
    logits = single_node_fields(features, weight).sum(1) + bias
    torch.testing.assert_close(logits, features @ weight.T + bias)
    torch.testing.assert_close(logits.softmax(1), expected, atol=1e-6, rtol=0)


def test_fit_readout_is_deterministic_and_separates_separable_data():
    centres = 4 * torch.eye(5, dtype=torch.float64)[:4]
    features, labels = blobs(25, centres, spread=0.5, seed=3)
    features = features.float()
    first = fit_readout(features, labels, 4)
    second = fit_readout(features, labels, 4)
    assert torch.equal(first.weight, second.weight) and torch.equal(first.bias, second.bias)
    assert first.weight.dtype == torch.float32 and first.weight.shape == (4, 5) and first.bias.shape == (4,)
    assert readout_accuracy(features, labels, first.weight, first.bias) == 1.0


def test_labels_absent_from_the_fit_are_never_predicted():
    centres = torch.tensor([[0.0, 0], [3, 0], [0, 3]], dtype=torch.float64)
    features, labels = blobs(10, centres, spread=0.3)
    labels = torch.tensor([0, 2, 4]).repeat_interleave(10)
    fitted = fit_readout(features, labels, 5)
    weight, bias = fitted.weight, fitted.bias
    assert torch.equal(weight[[1, 3]], torch.zeros(2, 2, dtype=torch.float64))
    assert bias[1] == bias[3] == -math.inf and torch.isfinite(bias[[0, 2, 4]]).all()
    assert readout_accuracy(features, labels, weight, bias) == 1.0
    torch.testing.assert_close(single_node_fields(features, weight).sum(1) + bias, features @ weight.T + bias)


def test_a_mask_holds_weights_at_zero():
    features, labels = blobs(20, torch.eye(3, dtype=torch.float64), spread=0.5)
    mask = torch.eye(3, dtype=torch.bool)
    weight = fit_readout(features, labels, 3, mask=mask).weight
    assert torch.equal(weight[~mask], torch.zeros(6, dtype=torch.float64))
    assert (weight[mask] != 0).all()


def test_inputs_are_checked():
    features = torch.zeros(4, 2)
    with pytest.raises(ValueError, match=r"labels: values span \[0, 3\], expected \[0, 3\)"):
        fit_readout(features, torch.tensor([0, 1, 2, 3]), 3)
    with pytest.raises(ValueError, match=r"labels: got \(3,\), expected an integer tensor of shape \(4,\)"):
        fit_readout(features, torch.tensor([0, 1, 2]), 3)
    with pytest.raises(ValueError, match="num_heads=3 does not divide the 4 nodes"):
        head_label_sets(torch.zeros(2, 4, 3), torch.tensor([0, 1]), 3, num_heads=3)
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\]"):
        label_clusters(torch.zeros(2, 3, 3), threshold=0.0)


# Hand-built fields: 4 labels, 2 inputs for each of labels 0, 1, 2 and none for label 3.
LABELS = torch.tensor([0, 0, 1, 1, 2, 2])


def hand_built_fields() -> tuple[torch.Tensor, torch.Tensor]:
    """Fields (6 inputs, 3 nodes, 4 labels) and the node-label matrices they must give (3, 4, 4).

    Node 0 responds only to label 2 (M_0[2, 2] = 2); node 1 to labels 0 and 1 on the diagonal
    (1.0, 0.5), with an on off-diagonal entry M_1[0, 1] = 0.4 (the mean of 0.3 and 0.5), an off
    one M_1[1, 0] = 0.2 and a strong negative M_1[2, 2] = -1; node 2 is silent.
    """
    fields = torch.zeros(6, 3, 4, dtype=torch.float64)
    fields[4:, 0, 2] = 2.0
    fields[:2, 1, 0] = 1.0
    fields[:2, 1, 1] = torch.tensor([0.3, 0.5], dtype=torch.float64)
    fields[2:4, 1, 1] = 0.5
    fields[2:4, 1, 0] = 0.2
    fields[4:, 1, 2] = -1.0
    expected = torch.zeros(3, 4, 4, dtype=torch.float64)
    expected[0, 2, 2] = 2.0
    expected[1, 0, 0], expected[1, 0, 1], expected[1, 1, 1], expected[1, 1, 0] = 1.0, 0.4, 0.5, 0.2
    expected[1, 2, 2] = -1.0
    return fields, expected


def test_node_label_matrices_and_clusters_of_hand_built_fields():
    fields, expected = hand_built_fields()
    matrices = node_label_matrices(fields, LABELS, 4)
    torch.testing.assert_close(matrices, expected)
    result = label_clusters(matrices)
    assert result.clusters.tolist() == [
        [False, False, True, False],
        [True, True, False, False],
        [False, False, False, False],
    ]
    assert result.on.nonzero().tolist() == [[0, 2, 2], [1, 0, 0], [1, 0, 1], [1, 1, 1]]
    stats = cluster_statistics(result)
    assert stats["snp_cluster_size"] == 1.0
    assert stats["snp_noise"] == pytest.approx(1 / 3)
    assert stats["snp_snr"] == pytest.approx(3.0)
    assert stats["snp_silent_fraction"] == pytest.approx(1 / 3)


def test_an_entry_at_the_threshold_is_on_and_snr_without_noise():
    matrices = torch.tensor([[[10.0, 0.0], [0.0, 3.0]]])
    result = label_clusters(matrices, threshold=0.3)
    assert result.clusters.tolist() == [[True, True]]
    assert label_clusters(matrices, threshold=0.31).clusters.tolist() == [[True, False]]
    assert cluster_statistics(result)["snp_snr"] == math.inf


def test_snr_of_silent_nodes_is_nan_with_a_warning():
    result = label_clusters(torch.zeros(2, 3, 3))
    assert not result.on.any()
    with pytest.warns(DegenerateInputWarning, match="no node has an on entry"):
        stats = cluster_statistics(result)
    assert math.isnan(stats["snp_snr"]) and stats["snp_silent_fraction"] == 1.0


def test_andc_mask_keeps_exactly_the_cluster_weights():
    clusters = torch.tensor([[False, False, True, False], [True, True, False, False], [False] * 4])
    mask = andc_mask(clusters)
    assert mask.shape == (4, 3)
    kept = (torch.ones(4, 3) * mask).nonzero().tolist()
    assert kept == [[0, 1], [1, 1], [2, 0]]  # (label j, node k) with j in C_k
    assert andc_pruned_fraction(mask) == pytest.approx(9 / 12)


def test_random_masks_keep_the_sparsity_of_each_node_and_follow_the_seed():
    generator = torch.Generator().manual_seed(0)
    mask = torch.rand(10, 8, generator=generator) < 0.3
    masks = random_masks(mask, 5, seed=7)
    assert masks.shape == (5, 10, 8) and masks.dtype == torch.bool
    assert torch.equal(masks.sum(1), mask.sum(0).expand(5, 8))
    assert torch.equal(masks, random_masks(mask, 5, seed=7))
    assert not torch.equal(masks, random_masks(mask, 5, seed=8))
    assert not all(torch.equal(random, mask) for random in masks)


def test_andc_on_nodes_that_each_encode_one_label():
    centres = 2 * torch.eye(4, dtype=torch.float64)
    train_features, train_labels = blobs(30, centres, spread=0.4, seed=0)
    test_features, test_labels = blobs(30, centres, spread=0.4, seed=1)
    readout = fit_readout(train_features, train_labels, 4)
    fields = single_node_fields(train_features, readout.weight)
    clusters = label_clusters(node_label_matrices(fields, train_labels, 4)).clusters
    assert torch.equal(clusters, torch.eye(4, dtype=torch.bool))
    problem = readout_problem(train_features, train_labels, 4)
    stats = andc_statistics(problem, (test_features, test_labels), clusters, readout)
    assert stats["andc_refit_converged"] == 1.0
    assert stats["andc_pruned_fraction"] == pytest.approx(12 / 16)
    assert stats["andc_acc_refit"] >= 0.95 and stats["andc_acc"] >= 0.9
    assert stats["andc_random_acc"] < stats["andc_acc_refit"] - 0.2


def hand_built_head_fields() -> torch.Tensor:
    """Fields (3 inputs, one per label; 4 nodes; 3 labels): nodes 0, 1 (head 0) answer labels 0 and
    1, nodes 2, 3 (head 1) labels 1 and 2, each on the diagonal with value 1."""
    fields = torch.zeros(3, 4, 3, dtype=torch.float64)
    for node, label in enumerate([0, 1, 1, 2]):
        fields[label, node, label] = 1.0
    return fields


def test_head_label_sets_and_statistics_of_hand_built_heads():
    fields, labels = hand_built_head_fields(), torch.arange(3)
    sets = head_label_sets(fields, labels, 3, num_heads=2)
    assert sets.tolist() == [[True, True, False], [False, True, True]]
    stats = head_statistics(fields, labels, 3, 2, count=5, seed=0)
    assert stats["head_labels"] == 2.0
    assert stats["heads_per_label"] == pytest.approx(4 / 3)
    assert stats["head_jaccard"] == pytest.approx(1 / 3)
    assert 0.0 <= stats["head_jaccard_random"] <= 1.0
    assert stats == head_statistics(fields, labels, 3, 2, count=5, seed=0)
    one_head = head_statistics(fields, labels, 3, 1)
    assert one_head["head_labels"] == 3.0 and math.isnan(one_head["head_jaccard"])


def test_random_partitions_of_one_label_per_node_share_labels_as_often_as_chance_says():
    # Node k answers label k alone; any partition into 2 groups of 2 gives disjoint sets.
    fields = torch.zeros(4, 4, 4, dtype=torch.float64)
    fields[range(4), range(4), range(4)] = 1.0
    stats = head_statistics(fields, torch.arange(4), 4, 2, count=3, seed=5)
    assert stats["head_jaccard"] == stats["head_jaccard_random"] == 0.0


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        ([[1, 1, 0], [0, 1, 1], [0, 0, 0]], 1 / 9),
        ([[1, 0], [1, 0]], 1.0),
        ([[0, 0], [0, 0]], 0.0),
        ([[1, 0], [0, 1]], 0.0),
    ],
)
def test_label_set_jaccard_known_values(sets, expected):
    assert label_set_jaccard(torch.tensor(sets, dtype=torch.bool)) == pytest.approx(expected)
    assert math.isnan(label_set_jaccard(torch.ones(1, 3, dtype=torch.bool)))


def test_label_clusters_is_a_frozen_pair():
    result = label_clusters(torch.eye(2)[None])
    assert isinstance(result, LabelClusters)
    with pytest.raises(AttributeError):
        result.on = None
