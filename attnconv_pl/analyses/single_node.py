"""Single-node performance (SNP) of the attention and feed-forward sub-blocks (arXiv 2501.12900).

For a checkpoint and each probed sub-block b (the model's ``mha_nodes`` and ``ff_nodes`` probe
points) with D nodes and L labels (every step a documented setting, fixed before any result):

1. Readout: features z_b(x) = the sub-block's output averaged over tokens; a multinomial
   logistic readout (W_b, c_b) fitted on ``train_size`` inputs of ``train_split``
   (deterministic Newton's method to the relative gradient norm ``tol``, at most ``max_iter``
   iterations, :func:`~attnconv_pl.probes.single_node.fit_readout`); ``snp_readout_acc`` is its
   accuracy on ``eval_size`` inputs of ``eval_split``, and ``snp_readout_converged`` is 1 when
   the fit reached ``tol``, 0 when the budget ran out first.
2. Fields h_k(x) = W_b[:, k] z_{b,k}(x); sum_k h_k + c_b = logits.
3. Node matrices M_k[i, j] = mean of h_k(x)_j over evaluation inputs of label i; an entry is on
   when M_k / max |M_k| >= ``threshold``.
4. Cluster C_k = the labels i with M_k[i, i] on: ``snp_cluster_size`` (mean |C_k|), ``snp_noise``
   (mean number of off-diagonal on entries), ``snp_snr`` (mean signal / mean noise; inf when no
   entry is noise, NaN when none is either), ``snp_silent_fraction`` (nodes with no label).
5. ANDC: keep W_b[j, k] only when j is in C_k: ``andc_pruned_fraction``, ``andc_acc`` (no
   refit), ``andc_acc_refit`` (kept weights refitted on the train inputs), and the control
   ``andc_random_acc``: the median over ``random_count`` random masks of the same per-node
   sparsity, refitted the same way; ``andc_refit_converged`` is the fraction of these refits
   that reached ``tol`` (on the standardisation computed once per sub-block).
6. Heads (attention only, head h owning a contiguous slice of the nodes): ``head_labels``,
   ``heads_per_label``, ``head_jaccard`` and the control ``head_jaccard_random`` (median over
   ``random_count`` random partitions of the nodes into groups of the heads' size).

The maths is :mod:`attnconv_pl.probes.single_node`; this module captures the features, runs
it per sub-block and keeps what the report draws (cluster sizes, head label sets, a few node
matrices). When any fit of an epoch stops on its budget, one warning names the setting to raise
(``--single_node.max_iter``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
import torch
from torch import nn

from attnconv_pl.analyses.base import (
    Analysis,
    AnalysisResult,
    CheckpointInputs,
    MetricFamily,
    check_field_types,
    is_scheduled_epoch,
)
from attnconv_pl.analyses.session import check_shared_fields
from attnconv_pl.capture import Projector
from attnconv_pl.capture.probe_set import capture_probe_images
from attnconv_pl.models import ProbePoint, points_of_kind
from attnconv_pl.probes import single_node as snp

SUB_BLOCK_KINDS = ("mha_nodes", "ff_nodes")
CONVERGED_METRICS = ("snp_readout_converged", "andc_refit_converged")
"""The markers of the iterative fits: 1 when every fit reached ``tol``."""


@dataclass(frozen=True)
class SingleNodeSettings:
    """What the single-node analysis measures (see the module docstring for each step).

    Args:
        threshold: an entry of a node's label matrix is on when it is at least this fraction of
            the matrix's largest absolute entry.
        train_split: split the readouts are fitted on (and ANDC refitted on).
        train_size: inputs of ``train_split`` (all of it when smaller), drawn by ``seed``.
        eval_split: split of the node matrices and every accuracy.
        eval_size: inputs of ``eval_split`` (all of it when smaller), drawn by ``seed``.
        l2: L2 penalty of the readouts on standardised features (scikit-learn's C = 1 / (n l2)).
        tol: each readout fit (and refit) stops when its gradient norm is at most this fraction
            of the gradient norm at zero weights (1e-10: the weights then equal scikit-learn's
            optimum to about 1e-9, relative, on trained features).
        max_iter: budget of Newton iterations of each fit (about 10 are needed); a fit that
            runs out is marked (``snp_readout_converged``, ``andc_refit_converged``) and warned
            about. (Runs made before this version used it for L-BFGS iterations; their 100 is
            a generous Newton budget.)
        random_count: random masks (ANDC control) and random node partitions (heads control).
        matrices_per_block: node matrices kept per sub-block for the report's heatmaps (the
            nodes with the largest clusters).
        seed: draws the inputs and the random controls (None, the default: the probing session's
            ``probing.seed``).
        batch_size: inputs per forward pass (None, the default: ``probing.batch_size``).
        every_n_epochs: during training (``--single_node.enabled true``), run every this many
            epochs (plus epoch 0 and the last).
    """

    threshold: float = snp.THRESHOLD
    train_split: Literal["train", "val", "test"] = "train"
    train_size: int = 2000
    eval_split: Literal["train", "val", "test"] = "val"
    eval_size: int = 1000
    l2: float = 1e-3
    tol: float = snp.TOL
    max_iter: int = snp.MAX_ITER
    random_count: int = 5
    matrices_per_block: int = 4
    seed: Optional[int] = None
    batch_size: Optional[int] = None
    every_n_epochs: int = 10

    def __post_init__(self) -> None:
        check_field_types(self)
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        for name in ("train_size", "eval_size"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be >= 2, got {getattr(self, name)}")
        check_shared_fields(self)
        for name in ("max_iter", "random_count", "every_n_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.tol < 1:
            raise ValueError(f"tol must be in (0, 1) (a fraction of the gradient norm at zero weights), got {self.tol}")
        if self.l2 <= 0 or self.matrices_per_block < 0:
            raise ValueError(f"l2 must be > 0 and matrices_per_block >= 0, got {self.l2}, {self.matrices_per_block}")

    def is_scheduled(self, epoch: int, max_epochs: Optional[int]) -> bool:
        return is_scheduled_epoch(epoch, self.every_n_epochs, max_epochs)


def sub_block_numbers(train: tuple[torch.Tensor, torch.Tensor], evaluation: tuple[torch.Tensor, torch.Tensor],
                      num_classes: int, num_heads: Optional[int], settings: SingleNodeSettings
                      ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Every number of one sub-block and what the report draws of it.

    Args:
        train: (features (n, D), labels (n,)) the readout is fitted on.
        evaluation: (features (m, D), labels (m,)) of the matrices and accuracies.
        num_classes: L.
        num_heads: the attention's heads (None for a feed-forward sub-block: no head numbers).
        settings: thresholds, fits and controls.

    Returns:
        ``({metric: value}, {"cluster_sizes": (D,), "nodes": (k,) the indices of the k nodes
        with the largest clusters, "matrices": (k, L, L) their normalised node matrices,
        "head_sets": (H, L) bool})``.
    """
    problem = snp.readout_problem(train[0].double(), train[1], num_classes)
    fit = {"l2": settings.l2, "tol": settings.tol, "max_iter": settings.max_iter}
    readout = snp.solve_readout(problem, **fit)
    features, labels = evaluation
    fields = snp.single_node_fields(features.double(), readout.weight)
    matrices = snp.node_label_matrices(fields, labels, num_classes)
    clusters = snp.label_clusters(matrices, settings.threshold)
    values = {"snp_readout_acc": snp.readout_accuracy(features.double(), labels, readout.weight, readout.bias),
              "snp_readout_converged": float(readout.converged), **snp.cluster_statistics(clusters)}
    values |= snp.andc_statistics(problem, (features.double(), labels), clusters.clusters, readout,
                                  count=settings.random_count, seed=settings.seed, **fit)
    sizes = clusters.clusters.sum(dim=1)
    shown = torch.argsort(sizes, descending=True, stable=True)[:settings.matrices_per_block]
    scale = matrices.flatten(1).abs().amax(dim=1).clamp_min(torch.finfo(matrices.dtype).tiny)
    drawn = {"cluster_sizes": sizes.cpu().numpy(), "nodes": shown.cpu().numpy(),
             "matrices": (matrices[shown] / scale[shown, None, None]).float().cpu().numpy()}
    if num_heads is not None:
        values |= snp.head_statistics(fields, labels, num_classes, num_heads, threshold=settings.threshold,
                                      count=settings.random_count, seed=settings.seed)
        drawn["head_sets"] = snp.head_label_sets(fields, labels, num_classes, num_heads,
                                                 settings.threshold).cpu().numpy()
    return values, drawn


class SingleNode(Analysis):
    """Single-node performance of every ``mha_nodes`` / ``ff_nodes`` probe point of a model.

    Args:
        settings: what to measure.
        points: the sub-blocks, in depth order.
        num_heads: heads of each ``mha_nodes`` point, by module name.
        num_classes: L, the labels the model classifies.
    """

    name = "single_node"
    settings_type = SingleNodeSettings
    families = (
        MetricFamily("single_node", "Single-node performance: label clusters of each node, by sub-block",
                     r"snp_.+"),
        MetricFamily("andc", "ANDC: each node's readout pruned to its own labels, against random pruning",
                     r"andc_.+"),
        MetricFamily("heads", "Head specialisation: the labels of each attention head", r"heads?_.+"),
    )

    def __init__(self, settings: SingleNodeSettings, points: list[ProbePoint], num_heads: dict[str, int],
                 num_classes: int) -> None:
        super().__init__(settings)
        self.points = list(points)
        self.num_heads = dict(num_heads)
        self.num_classes = num_classes

    @classmethod
    def for_model(cls, settings: SingleNodeSettings, model: nn.Module) -> SingleNode:
        """The sub-blocks of ``model``'s description.

        Raises:
            ValueError: the model describes no ``mha_nodes`` or ``ff_nodes`` point.
        """
        points = points_of_kind(getattr(model, "feature_info", []), *SUB_BLOCK_KINDS)
        if not points:
            raise ValueError(f"{type(model).__name__} describes no attention or feed-forward nodes (probe points of "
                             f"kind {' or '.join(SUB_BLOCK_KINDS)}); the single_node analysis needs a transformer "
                             "such as cct_2_3x1_16")
        heads = {point.module: int(model.get_submodule(point.module).num_heads)
                 for point in points if point.kind == "mha_nodes"}
        classifiers = points_of_kind(model.feature_info, "head")
        if len(classifiers) != 1:
            raise ValueError(f"{type(model).__name__} describes {len(classifiers)} head points; the single_node "
                             "analysis reads the number of labels from its one classifier (a 'head' probe point)")
        return cls(settings, points, heads, classifiers[0].num_chs)

    def run(self, epoch: int, train: dict[str, tuple[torch.Tensor, torch.Tensor]],
            evaluation: dict[str, tuple[torch.Tensor, torch.Tensor]], num_classes: int) -> AnalysisResult:
        """Every number of ``epoch`` from the sub-blocks' token-averaged features.

        Args:
            train, evaluation: ``{sub-block: (features (n, D), labels (n,))}``.
            num_classes: L.
        """
        result = AnalysisResult(epoch)
        drawn = {}
        for point in self.points:
            values, drawn[point.module] = sub_block_numbers(train[point.module], evaluation[point.module],
                                                            num_classes, self.num_heads.get(point.module),
                                                            self.settings)
            result.values.update({(point.module, metric): value for metric, value in values.items()})
        result.artifacts["sub_blocks"] = drawn
        result.artifacts["kinds"] = {point.module: point.kind for point in self.points}
        unconverged = [layer for (layer, metric), value in result.values.items()
                       if metric in CONVERGED_METRICS and value < 1]
        if unconverged:
            warnings.warn(f"single_node, epoch {epoch}: readout fits of {', '.join(dict.fromkeys(unconverged))} "
                          f"stopped after max_iter={self.settings.max_iter} Newton iterations before the gradient "
                          f"tolerance tol={self.settings.tol} (marked below 1 in {' and '.join(CONVERGED_METRICS)}); "
                          "raise --single_node.max_iter (probe.py: --single_node.max_iter N)", RuntimeWarning,
                          stacklevel=2)
        return result

    def probe_checkpoint(self, checkpoint: CheckpointInputs) -> AnalysisResult:
        """Capture the sub-blocks' token-averaged outputs on the train and evaluation inputs and
        :meth:`run`.

        Raises:
            ValueError: the evaluation inputs are not the run's own data (labels must be its classes).
        """
        settings = self.settings
        sets = {"train": checkpoint.inputs(settings.train_split, settings.train_size),
                "evaluation": checkpoint.inputs(settings.eval_split, settings.eval_size)}
        if not all(inputs.own_data for inputs in sets.values()):
            raise ValueError("single_node reads the run's labels: probe it on the run's own data (no --data NAME)")
        width = max(point.num_chs for point in self.points)
        projector = Projector(project_dim=max(width, 1), seed=settings.seed)  # never projects
        features = {}
        for role, inputs in sets.items():
            points = capture_probe_images(checkpoint.model, inputs.images, [p.module for p in self.points],
                                          representation="pool", projector=projector,
                                          batch_size=checkpoint.batch_size, device=checkpoint.device,
                                          autocast=checkpoint.autocast, capture_inputs=False)
            features[role] = {layer: (sides["output"].double().cpu(), inputs.labels) for layer, sides in points.items()}
        return self.run(checkpoint.epoch, features["train"], features["evaluation"], self.num_classes)

