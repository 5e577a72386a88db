"""Single-node performance (SNP) of a sub-block's nodes, after arXiv 2501.12900.

Setting: a sub-block (a multi-head attention or a feed-forward sub-layer) with D output nodes and
a task with L labels. ``features`` z (n, D) are the sub-block's outputs for n inputs, averaged
over tokens (the caller averages); ``labels`` (n,) are the true labels in [0, L). A multinomial
logistic readout, weight W (L, D) and bias c (L,), reads the labels from z:
logits(x) = W z(x) + c.

- Field of node k: h_k(x) = W[:, k] z_k(x), a vector over the L labels; by construction
  sum_k h_k(x) + c = logits(x) (:func:`single_node_fields`).
- Node-label matrix M_k (L, L): M_k[i, j] = mean of h_k(x)_j over the inputs x of true label i
  (:func:`node_label_matrices`).
- On entries: M_k / max |M_k| >= threshold (default 0.3); the cluster C_k of node k is the set
  of labels i with M_k[i, i] on (:func:`label_clusters`). Signal = |C_k|, noise = the number of
  off-diagonal on entries of M_k (:func:`cluster_statistics`).
- ANDC (applying nodal diagonal connectivity): keep W[j, k] only when j is in C_k
  (:func:`andc_mask`), refit the kept weights, compare with random masks of the same sparsity
  (:func:`andc_statistics`).
- Heads (attention only; head h of H owns the contiguous nodes [h D/H, (h+1) D/H)): the head's
  field is the sum of its nodes' fields; its label set is the on diagonal of its matrix, built
  as M_k (:func:`head_label_sets`, :func:`head_statistics`).

The readout's solver (Newton's method to a stated tolerance, and the standardisation shared by
a sub-block's readout and refits) is :mod:`attnconv_pl.probes._readout`; its public names are
re-exported here.

All functions are pure: tensors in, tensors or floats out, on the input's device. Randomness
comes only from an explicit ``seed`` (a CPU ``torch.Generator``, so results do not depend on
the device).

Longer than 400 lines: the node fields, their matrices, ANDC and the head measures share the
readout and its notation; split apart, each piece would restate it.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch

from ._checks import as_points, require_same, warn_degenerate
from ._readout import MAX_ITER, TOL, Readout, ReadoutProblem, as_labels, readout_problem, solve_readout

__all__ = [
    "THRESHOLD", "LabelClusters", "Readout", "ReadoutProblem", "andc_mask", "andc_pruned_fraction",
    "andc_statistics", "cluster_statistics", "fit_readout", "head_label_sets", "head_statistics", "label_clusters",
    "label_set_jaccard", "node_label_matrices", "random_masks", "readout_accuracy", "readout_problem",
    "single_node_fields", "solve_readout",
]

THRESHOLD = 0.3
"""Default fraction of max |M_k| at which an entry of a node-label matrix is on."""


def _as_fields(fields: torch.Tensor) -> torch.Tensor:
    """Check that ``fields`` is a finite floating (n, D, L) tensor; return it."""
    if not isinstance(fields, torch.Tensor) or fields.ndim != 3 or not fields.is_floating_point():
        shape = tuple(fields.shape) if isinstance(fields, torch.Tensor) else type(fields).__name__
        raise ValueError(f"fields: got {shape}, expected a floating tensor (n inputs, D nodes, L labels)")
    if not torch.isfinite(fields).all():
        raise ValueError("fields: hold NaN or inf, expected finite fields W[:, k] z_k(x)")
    return fields


def fit_readout(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    l2: float = 1e-3,
    tol: float = TOL,
    max_iter: int = MAX_ITER,
    mask: torch.Tensor | None = None,
) -> Readout:
    """Fit a multinomial logistic readout of ``labels`` from ``features``, to a stated tolerance.

    Minimises mean cross-entropy + (l2 / 2) ||W_s||^2 over standardised features
    z_s = (z - mean) / std (per node, over these inputs; a constant node keeps std 1) by Newton's
    method (conjugate gradients on exact Hessian products, float64, from W_s = 0, c_s = 0; see
    :mod:`attnconv_pl.probes._readout`) until the gradient norm is at most ``tol`` times its
    value at zero. The bias is not penalised (and sums to 0 over the present labels in the
    standardised frame). The standardisation is folded back, W = W_s / std and
    c = c_s - W mean, so the returned readout applies to raw features:
    logits = features @ W.T + c. This is scikit-learn's ``LogisticRegression(C=1 / (n l2))`` on
    standardised features. The objective is strictly convex and the start fixed, so there is no
    seed. To fit several readouts of the same features (a mask each), build the problem once
    (:func:`readout_problem`) and call :func:`solve_readout`.

    Labels absent from ``labels`` get W[j] = 0 and c[j] = -inf: the readout never predicts
    them (the softmax is over the present labels only).

    Args:
        features: (n, D) raw features z, n >= 1.
        labels: (n,) integer labels in [0, num_classes).
        num_classes: L.
        l2: penalty on the standardised weights, > 0 (1e-3: enough to keep the weights finite
            on separable features, small against the cross-entropy).
        tol: stop when ||grad|| <= tol ||grad at zero|| (1e-10).
        max_iter: Newton iterations at most (100; about 10 are needed); when they run out first
            the result says so (``converged`` False).
        mask: optional (L, D) bool; weights where it is False are held at 0 (the others are
            fitted), as for ANDC.

    Returns:
        :class:`~attnconv_pl.probes._readout.Readout`: ``weight`` (L, D) and ``bias`` (L,) in the
        dtype and on the device of ``features``, and how the fit stopped (``converged``,
        ``gradient_norm``, ``iterations``).
    """
    problem = readout_problem(features, labels, num_classes)
    return solve_readout(problem, l2=l2, tol=tol, max_iter=max_iter, mask=mask)


def readout_accuracy(
    features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> float:
    """Fraction of inputs whose label is argmax_j (W z + c)_j.

    Args:
        features: (n, D), n >= 1; labels: (n,); weight: (L, D); bias: (L,).

    Returns:
        The accuracy, a float in [0, 1].
    """
    features = as_points(features, "features")
    labels = as_labels(labels, features.shape[0], weight.shape[0])
    logits = features @ weight.to(features.dtype).T + bias.to(features.dtype)
    return float((logits.argmax(1) == labels).double().mean())


def single_node_fields(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Fields h_k(x) = W[:, k] z_k(x) of every node k on every input x.

    Args:
        features: (n, D) features z.
        weight: (L, D) readout weight W.

    Returns:
        (n, D, L) fields; fields.sum(1) + c equals the logits features @ W.T + c.
    """
    features = as_points(features, "features")
    require_same(features, weight, ("features", "weight"), axis=1)
    return features[:, :, None] * weight.to(features.dtype).T[None]


def node_label_matrices(fields: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Node-label matrices M_k[i, j] = mean of h_k(x)_j over the inputs x of true label i.

    Args:
        fields: (n, D, L) fields h_k(x) (:func:`single_node_fields`), L = ``num_classes``.
        labels: (n,) true labels in [0, L).
        num_classes: L.

    Returns:
        (D, L, L), in the units of the logits; row i is all zeros for a label i with no input.
    """
    fields = _as_fields(fields)
    labels = as_labels(labels, fields.shape[0], num_classes)
    if fields.shape[2] != num_classes:
        raise ValueError(f"fields: got {fields.shape[2]} labels on the last axis, expected num_classes={num_classes}")
    sums = fields.new_zeros(num_classes, *fields.shape[1:]).index_add_(0, labels, fields)
    counts = torch.bincount(labels, minlength=num_classes).clamp_min(1).to(fields.dtype)
    return (sums / counts[:, None, None]).permute(1, 0, 2)


@dataclass(frozen=True)
class LabelClusters:
    """Thresholded node-label matrices.

    Attributes:
        on: (D, L, L) bool, M_k[i, j] / max |M_k| >= threshold.
        clusters: (D, L) bool, C_k: the labels i with M_k[i, i] on (the diagonal of ``on``).
    """

    on: torch.Tensor
    clusters: torch.Tensor


def label_clusters(matrices: torch.Tensor, threshold: float = THRESHOLD) -> LabelClusters:
    """On entries and label clusters of node-label matrices.

    Each M_k is divided by its largest absolute entry, so the threshold is relative to the node's
    strongest response; an entry is on when the result is >= ``threshold`` (strong negative
    entries are off). A node whose matrix is all zero has every entry off.

    Args:
        matrices: (G, L, L) matrices M_k (nodes, or heads), finite.
        threshold: in (0, 1].

    Returns:
        :class:`LabelClusters` with ``on`` (G, L, L) and ``clusters`` (G, L).
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1] (a fraction of max |M_k|), got {threshold}")
    if matrices.ndim != 3 or matrices.shape[1] != matrices.shape[2]:
        raise ValueError(f"matrices: got shape {tuple(matrices.shape)}, expected (nodes, L, L)")
    scale = matrices.abs().amax(dim=(1, 2), keepdim=True)
    on = matrices / torch.where(scale > 0, scale, torch.ones_like(scale)) >= threshold
    return LabelClusters(on=on, clusters=on.diagonal(dim1=1, dim2=2).clone())


def cluster_statistics(clusters: LabelClusters) -> dict[str, float]:
    """Signal and noise of the nodes' label clusters, averaged over the D nodes.

    Returns:
        ``snp_cluster_size``: mean |C_k| (the signal, labels);
        ``snp_noise``: mean number of off-diagonal on entries per node;
        ``snp_snr``: mean signal / mean noise, inf when the mean noise is 0 and the mean signal
        is not, NaN (with a DegenerateInputWarning) when both are 0;
        ``snp_silent_fraction``: fraction of nodes with an empty cluster.
    """
    signal = clusters.clusters.sum(1).double()
    noise = clusters.on.sum((1, 2)).double() - signal
    mean_signal, mean_noise = float(signal.mean()), float(noise.mean())
    if mean_noise > 0:
        snr = mean_signal / mean_noise
    elif mean_signal > 0:
        snr = float("inf")
    else:
        warn_degenerate("no node has an on entry (every node-label matrix is zero or below the threshold); SNR is NaN")
        snr = float("nan")
    return {
        "snp_cluster_size": mean_signal,
        "snp_noise": mean_noise,
        "snp_snr": snr,
        "snp_silent_fraction": float((signal == 0).double().mean()),
    }


def andc_mask(clusters: torch.Tensor) -> torch.Tensor:
    """ANDC mask (L, D): True at [j, k] when label j is in the cluster C_k of node k.

    Args:
        clusters: (D, L) bool, :attr:`LabelClusters.clusters`.
    """
    return clusters.T.clone()


def andc_pruned_fraction(mask: torch.Tensor) -> float:
    """Fraction of the readout weights that a (L, D) bool mask removes (False entries)."""
    return float((~mask).double().mean())


def random_masks(mask: torch.Tensor, count: int = 5, *, seed: int = 0) -> torch.Tensor:
    """Random masks with the sparsity of ``mask`` node by node: the control for ANDC.

    Each random mask keeps, for every node k (column), as many labels as ``mask`` keeps there,
    drawn uniformly without replacement; so it removes the same number of weights per node, and
    in total.

    Args:
        mask: (L, D) bool.
        count: number of masks, >= 1.
        seed: seed of the CPU generator; equal seeds give equal masks.

    Returns:
        (count, L, D) bool, on the device of ``mask``.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    generator = torch.Generator().manual_seed(seed)
    scores = torch.rand(count, *mask.shape, generator=generator)
    ranks = scores.argsort(dim=1).argsort(dim=1)
    kept = mask.sum(0).cpu()
    return (ranks < kept).to(mask.device)


def andc_statistics(
    train: ReadoutProblem,
    test: tuple[torch.Tensor, torch.Tensor],
    clusters: torch.Tensor,
    readout: Readout,
    *,
    count: int = 5,
    seed: int = 0,
    l2: float = 1e-3,
    tol: float = TOL,
    max_iter: int = MAX_ITER,
) -> dict[str, float]:
    """Test accuracy of the readout after ANDC, and of the same pruning at random.

    Every refit solves ``train`` again with a mask (:func:`solve_readout`), on the
    standardisation computed once for the full readout.

    Args:
        train: the standardised train features and labels (:func:`readout_problem`) the readout
            was fitted on, to refit the kept weights on.
        test: (features (m, D), labels (m,)) to measure accuracy on.
        clusters: (D, L) bool label clusters C_k.
        readout: the full readout (:func:`solve_readout` of ``train``), pruned for ``andc_acc``.
        count, seed: the random masks (:func:`random_masks`).
        l2, tol, max_iter: as in :func:`fit_readout`, for every refit.

    Returns:
        ``andc_pruned_fraction``: fraction of weights ANDC removes;
        ``andc_acc``: accuracy of the full readout with the removed weights zeroed (no refit);
        ``andc_acc_refit``: accuracy after refitting the kept weights (and the bias);
        ``andc_random_acc``: median accuracy over ``count`` random masks of the same per-node
        sparsity, each refitted the same way;
        ``andc_refit_converged``: fraction of the 1 + ``count`` refits that reached ``tol``
        within ``max_iter`` (1.0 when all did).
    """
    mask = andc_mask(clusters)
    refits = [solve_readout(train, l2=l2, tol=tol, max_iter=max_iter, mask=kept)
              for kept in (mask, *random_masks(mask, count, seed=seed))]
    accuracies = [readout_accuracy(*test, refit.weight, refit.bias) for refit in refits]
    return {
        "andc_pruned_fraction": andc_pruned_fraction(mask),
        "andc_acc": readout_accuracy(*test, readout.weight * mask.to(readout.weight.dtype), readout.bias),
        "andc_acc_refit": accuracies[0],
        "andc_random_acc": statistics.median(accuracies[1:]),
        "andc_refit_converged": sum(refit.converged for refit in refits) / len(refits),
    }


def _group_label_sets(
    fields: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor, num_groups: int, threshold: float
) -> torch.Tensor:
    """Label sets (G, L) of groups of nodes: node k belongs to group ``groups[k]`` (D,)."""
    grouped = fields.new_zeros(fields.shape[0], num_groups, fields.shape[2]).index_add_(1, groups, fields)
    return label_clusters(node_label_matrices(grouped, labels, fields.shape[2]), threshold).clusters


def _head_of_node(width: int, num_heads: int) -> torch.Tensor:
    """(D,) head index of every node: head h owns the contiguous nodes [h D/H, (h+1) D/H)."""
    if num_heads < 1 or width % num_heads:
        raise ValueError(f"num_heads={num_heads} does not divide the {width} nodes into equal heads")
    return torch.arange(width) // (width // num_heads)


def head_label_sets(
    fields: torch.Tensor, labels: torch.Tensor, num_classes: int, num_heads: int, threshold: float = THRESHOLD
) -> torch.Tensor:
    """Label set of every attention head: the on diagonal of its head-label matrix.

    Head h's field is the sum of the fields of its nodes [h D/H, (h+1) D/H); its matrix is
    built, normalised and thresholded as a node's (:func:`node_label_matrices`,
    :func:`label_clusters`).

    Args:
        fields: (n, D, L) fields of the attention's nodes; labels: (n,); num_classes: L.
        num_heads: H, dividing D.
        threshold: in (0, 1].

    Returns:
        (H, L) bool, True when label i is in head h's set.
    """
    fields = _as_fields(fields)
    labels = as_labels(labels, fields.shape[0], num_classes)
    heads = _head_of_node(fields.shape[1], num_heads).to(fields.device)
    return _group_label_sets(fields, labels, heads, num_heads, threshold)


def label_set_jaccard(sets: torch.Tensor) -> float:
    """Mean Jaccard index |S_g & S_h| / |S_g | S_h| over the pairs g < h of label sets.

    Two empty sets count 0 (they share no label). Fewer than two sets: NaN (no pair).

    Args:
        sets: (G, L) bool.
    """
    if sets.shape[0] < 2:
        return float("nan")
    member = sets.double()
    common = member @ member.T
    size = member.sum(1)
    union = size[:, None] + size[None, :] - common
    pairs = torch.triu_indices(len(sets), len(sets), offset=1)
    ratio = common / torch.where(union > 0, union, torch.ones_like(union))
    return float(ratio[pairs[0], pairs[1]].mean())


def head_statistics(
    fields: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    num_heads: int,
    *,
    threshold: float = THRESHOLD,
    count: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """How the labels are shared among the heads of an attention, with a random-partition control.

    Args:
        fields, labels, num_classes, num_heads, threshold: as in :func:`head_label_sets`.
        count: number of random partitions for the control, >= 1.
        seed: seed of the CPU generator drawing them.

    Returns:
        ``head_labels``: mean number of labels per head;
        ``heads_per_label``: mean over the L labels of the number of heads whose set has it;
        ``head_jaccard``: :func:`label_set_jaccard` of the heads' sets (NaN for one head);
        ``head_jaccard_random``: the median of the same over ``count`` random partitions of the
        D nodes into H groups of D/H nodes (each a uniform random permutation of the heads'
        node assignment).
    """
    fields = _as_fields(fields)
    labels = as_labels(labels, fields.shape[0], num_classes)
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    heads = _head_of_node(fields.shape[1], num_heads)
    generator = torch.Generator().manual_seed(seed)
    partitions = [heads[torch.randperm(len(heads), generator=generator)] for _ in range(count)]
    sets, *random_sets = (
        _group_label_sets(fields, labels, groups.to(fields.device), num_heads, threshold)
        for groups in (heads, *partitions)
    )
    return {
        "head_labels": float(sets.sum(1).double().mean()),
        "heads_per_label": float(sets.sum(0).double().mean()),
        "head_jaccard": label_set_jaccard(sets),
        "head_jaccard_random": statistics.median(map(label_set_jaccard, random_sets)),
    }
