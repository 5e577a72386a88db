"""Representation similarity of the probed layers: minibatch linear CKA (Nguyen et al. 2021), a
*similarity* (1 = the same representation up to orthogonal transform and isotropic scale, near 0 =
unrelated; see :mod:`attnconv_pl.probes.similarity`).

Per probed epoch, on the probe set (each layer's output flattened to one vector per input, exact:
no random projection), split into batches of ``cka_batch_size`` inputs or a few more (the same
batches at every epoch):

- ``cka_with:<layer>``: CKA of the row layer (the ``layer`` column of ``dynamics.csv``) with the
  named layer of the same model, the layer x layer matrix without its diagonal (1);
- ``cka_prev``: CKA of the layer with itself at the previous probed epoch (during training the
  previous scheduled epoch; offline the run's preceding numbered checkpoint);
- ``cka_first``: CKA of the layer with itself at the first probed epoch (epoch 0 when probed):
  when ``cka_prev`` stays near 1 the layer has settled.

The analysis keeps the per-batch U-centred Gram matrices of the previous and the first epoch
(float64 on CPU: per layer and reference about 8 n b bytes, 2.7 MB at 1000 inputs and b = 256),
never the features. A constant layer is 1 against a constant layer and 0 against any other, with
one warning per epoch naming it. Each probed epoch's artifacts also carry its Gram matrices in
float32 (half that size), from which ``probe.py``'s report computes CKA between runs and against
the last probed epoch (:mod:`attnconv_pl.reports.similarity`).
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from typing import Literal, Optional

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
from attnconv_pl.capture import Projector, capture_probe_images, resolve_layers
from attnconv_pl.errors import ConfigError
from attnconv_pl.probes.similarity import MIN_BATCH, MinibatchCKA, SimilarityMatrix, u_centred_gram

WITH = "cka_with:"
"""Prefix of the matrix's metrics: ``cka_with:<column layer>``."""

EXACT = Projector(project_dim=sys.maxsize)
"""No layer is this wide, so none is projected: CKA sees the exact features."""

Grams = list[dict[str, torch.Tensor]]
"""Per batch of the probe set, ``{layer: (b, b) U-centred Gram matrix}`` float64."""


@dataclass(frozen=True)
class SimilaritySettings:
    """What the similarity analysis measures (see the module docstring).

    Args:
        layers: names or glob patterns over ``model.named_modules()``; default (None): the
            model's ``probe_layers``.
        cka_batch_size: inputs per batch of the minibatch CKA estimator (at least 4; the probe set
            is cut into max(1, n // cka_batch_size) batches of equal size, within one input).
            Memory grows as its square, the estimator's variance shrinks with it.
        seed: draws the probe set; default (None): the probing session's.
        batch_size: inputs per forward pass; default (None): the probing session's.
        probe_split: split the probe set is drawn from; default (None): the probing session's.
        probe_size: inputs of the probe set (all of the split when smaller); default (None): the
            probing session's.
        every_n_epochs: during training, run every this many epochs (plus epoch 0 and the last).
    """

    layers: Optional[list[str]] = None
    cka_batch_size: int = 256
    seed: Optional[int] = None
    batch_size: Optional[int] = None
    probe_split: Optional[Literal["train", "val", "test"]] = None
    probe_size: Optional[int] = None
    every_n_epochs: int = 1

    def __post_init__(self) -> None:
        check_field_types(self)
        check_shared_fields(self)
        if self.layers is not None and (isinstance(self.layers, str)
                                        or not all(isinstance(name, str) for name in self.layers)):
            raise ValueError(f"layers must be a list of layer names or glob patterns, got {self.layers!r}")
        if self.cka_batch_size < MIN_BATCH:
            raise ValueError(f"cka_batch_size must be >= {MIN_BATCH} (the unbiased HSIC estimator needs 4 inputs per "
                             f"batch), got {self.cka_batch_size}")
        if self.every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {self.every_n_epochs}")

    def is_scheduled(self, epoch: int, max_epochs: Optional[int]) -> bool:
        return is_scheduled_epoch(epoch, self.every_n_epochs, max_epochs)


@dataclass(frozen=True)
class Reference:
    """An epoch the next ones are compared with: its probe-set ``indices`` and per-batch ``grams``."""

    epoch: int
    indices: torch.Tensor
    grams: Grams


class Similarity(Analysis):
    """CKA between the layers of one model, and of each layer with itself at earlier epochs.

    Args:
        settings: what to measure.
        layers: the probed layers, in depth order.
    """

    name = "similarity"
    settings_type = SimilaritySettings
    families = (MetricFamily("similarity", "Similarity: linear CKA between layers and across epochs (1 = same "
                             "representation up to rotation and scale)", r"cka_.+"),)

    def __init__(self, settings: SimilaritySettings, layers: list[str]) -> None:
        super().__init__(settings)
        self.layers = list(layers)
        self.previous: Optional[Reference] = None
        self.first: Optional[Reference] = None

    @classmethod
    def for_model(cls, settings: SimilaritySettings, model: nn.Module) -> Similarity:
        """The similarity of the layers ``settings.layers`` selects (default: ``model.probe_layers``).

        Raises:
            ConfigError: a pattern matches no layer (the message lists them), or the settings name
                none and the model declares no ``probe_layers``.
        """
        if not settings.layers and not getattr(model, "probe_layers", None):
            raise ConfigError(f"{type(model).__name__} declares no probe_layers; name the layers to compare "
                              "(probe.py and train.py: --similarity.layers '[NAME, ...]')")
        return cls(settings, resolve_layers(model, settings.layers or model.probe_layers))

    def run(self, epoch: int, grams: Grams, indices: torch.Tensor) -> AnalysisResult:
        """Every number of ``epoch`` from the probe set's per-batch Gram matrices; then they become
        the previous epoch's (and the first's, at the first call).

        Args:
            grams: per batch, ``{layer: (b, b)}`` U-centred Gram matrices of every layer.
            indices: (N,) the probe set's indices in its split, to check that every epoch sees the
                same inputs.

        Returns:
            The numbers and the artifacts ``layers``, ``matrix`` (L, L) (numpy float64),
            ``constant`` (the constant layers), ``previous_epoch`` and ``first_epoch`` (None when
            there was none), ``previous`` and ``first``: (L, L) CKA of the layers now (rows) with
            the layers then (columns).

        Raises:
            ValueError: the probe set differs from the one of the earlier epochs.
        """
        within = self._accumulate(grams)
        result = AnalysisResult(epoch, artifacts={"layers": self.layers, "matrix": within.values.numpy(),
                                                  "constant": list(within.constant)})
        across, computed = {}, {}
        for metric, name, reference in (("cka_prev", "previous", self.previous), ("cka_first", "first", self.first)):
            result.artifacts[f"{name}_epoch"] = None if reference is None else reference.epoch
            if reference is not None:
                self._check_same_inputs(reference, indices)
                if reference.epoch not in computed:  # the first epoch may be the previous one
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # the reference's constant layers were named at its epoch
                        computed[reference.epoch] = self._accumulate(grams, reference.grams)
                across[metric] = computed[reference.epoch]
                result.artifacts[name] = across[metric].values.numpy()
        for row, layer in enumerate(self.layers):
            result.values.update({(layer, metric): float(matrix.values[row, row]) for metric, matrix in across.items()})
            result.values.update({(layer, WITH + other): float(within.values[row, column])
                                  for column, other in enumerate(self.layers) if column != row})
        self.previous = Reference(epoch, indices, grams)
        if self.first is None:
            self.first = self.previous
        return result

    def _accumulate(self, grams: Grams, reference: Optional[Grams] = None) -> SimilarityMatrix:
        """The CKA matrix of the layers (against the same layers in ``reference``, when given)."""
        estimator = MinibatchCKA(self.layers, None if reference is None else self.layers)
        for now, then in zip(grams, reference or [None] * len(grams)):
            estimator.update_grams(now, then)
        return estimator.compute()

    @staticmethod
    def _check_same_inputs(reference: Reference, indices: torch.Tensor) -> None:
        if not torch.equal(reference.indices, indices):
            raise ValueError(f"the probe set differs from epoch {reference.epoch}'s ({len(indices)} inputs now, "
                             f"{len(reference.indices)} then, or other ones): CKA across epochs compares the same "
                             "inputs; keep the probing seed, split and size of the run")

    def probe_checkpoint(self, checkpoint: CheckpointInputs) -> AnalysisResult:
        """Capture the layers on the probe set batch by batch (forward passes of
        ``checkpoint.batch_size`` inputs, under the run's precision), keep each batch's Gram
        matrices, then :meth:`run`. Offline, when the run's preceding numbered checkpoint (and its
        first) were not probed just before, they are captured first.

        Returns:
            :meth:`run`'s result, its artifacts with what CKA against other runs and epochs needs
            (``reports.similarity``): ``grams`` (per batch ``{layer: (b, b)}`` U-centred Gram
            matrices, float32 on CPU: 4 n b bytes per layer, 1.3 MB at 1000 inputs and b = 333),
            the probe set's ``indices`` (N,) in ``split`` of ``dataset``.
        """
        probe_set = checkpoint.inputs(self.settings.probe_split, self.settings.probe_size)
        earlier = checkpoint.earlier_epochs
        if checkpoint.weights_of is not None and earlier and (self.previous is None
                                                              or self.previous.epoch != max(earlier)):
            self._restore_references(checkpoint, probe_set.images, probe_set.indices)
        grams = self.grams(checkpoint, probe_set.images)
        result = self.run(checkpoint.epoch, grams, probe_set.indices)
        result.artifacts.update(grams=[{layer: gram.float() for layer, gram in batch.items()} for batch in grams],
                                indices=probe_set.indices, dataset=probe_set.dataset, split=probe_set.split)
        return result

    def _restore_references(self, checkpoint: CheckpointInputs, images: torch.Tensor, indices: torch.Tensor) -> None:
        """The first and the preceding numbered checkpoints as references, as if they had been probed."""
        def reference(epoch: int) -> Reference:
            with checkpoint.weights_of(epoch):
                return Reference(epoch, indices, self.grams(checkpoint, images))

        first_epoch, previous_epoch = min(checkpoint.earlier_epochs), max(checkpoint.earlier_epochs)
        if self.first is None:
            self.first = reference(first_epoch)
        self.previous = self.first if previous_epoch == self.first.epoch else reference(previous_epoch)

    def grams(self, checkpoint: CheckpointInputs, images: torch.Tensor) -> Grams:
        """Per CKA batch of ``images`` (N, C, H, W), ``{layer: (b, b)}`` U-centred Gram matrices of
        the layers' flattened outputs, float64 on CPU (computed on ``checkpoint.device``)."""
        batches = torch.arange(len(images)).tensor_split(max(1, len(images) // self.settings.cka_batch_size))
        grams = []
        for batch in batches:
            captured = capture_probe_images(checkpoint.model, images[batch], self.layers, representation="flatten",
                                            projector=EXACT, batch_size=checkpoint.batch_size,
                                            device=checkpoint.device, autocast=checkpoint.autocast,
                                            capture_inputs=False)
            grams.append({layer: u_centred_gram(captured[layer]["output"], layer).cpu() for layer in self.layers})
        return grams
