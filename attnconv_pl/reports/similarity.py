"""CKA across runs and against a run's last probed epoch, from the per-batch U-centred Gram
matrices the similarity analysis keeps in its artifacts
(:meth:`~attnconv_pl.analyses.similarity.Similarity.probe_checkpoint`): no model or feature is
needed once a checkpoint is probed.

One epoch's similarity artifacts (a mapping) hold ``layers`` (names in depth order), ``grams``
(per CKA batch ``{layer: (b, b)}`` U-centred Gram matrix, float32 or float64 on CPU), ``indices``
(N,) of the probe set in ``split`` of ``dataset``. Two such epochs, of one run or of two, can be
compared when they saw the same inputs in the same CKA batches; then the minibatch CKA estimator
(:class:`~attnconv_pl.probes.similarity.MinibatchCKA`) on their Gram matrices gives the CKA of
every layer of the one with every layer of the other, exactly what it gives on their features.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Optional

import torch

from attnconv_pl.probes import DegenerateInputWarning
from attnconv_pl.probes.similarity import MinibatchCKA, SimilarityMatrix
from attnconv_pl.reports.records import ProbedRun, Row

ANALYSIS = "similarity"
LAST = "cka_last"
"""CKA of a layer with itself at the run's last probed epoch (1 at that epoch)."""

Artifacts = Mapping[str, Any]
"""One epoch's similarity artifacts (see the module docstring)."""


def probe_set_difference(rows: Artifacts, columns: Artifacts) -> Optional[str]:
    """Why two epochs' similarity artifacts cannot be compared, in a few words; None when they can
    (the same dataset and split, the same input indices in the same order, the same CKA batches)."""
    seen = [f"{found['dataset']} {found['split']}" for found in (rows, columns)]
    if seen[0] != seen[1]:
        return f"their probe sets come from different data ({seen[0]} vs {seen[1]})"
    if not torch.equal(rows["indices"], columns["indices"]):
        return (f"their probe sets hold different inputs of {seen[0]} ({len(rows['indices'])} vs "
                f"{len(columns['indices'])}; keep the probing seed and probe size of the runs)")
    batches = [[len(next(iter(batch.values()))) for batch in found["grams"]] for found in (rows, columns)]
    if batches[0] != batches[1]:
        return (f"their CKA batches differ ({len(batches[0])} vs {len(batches[1])} batches; give the runs the same "
                "similarity.cka_batch_size)")
    return None


def cross_cka(rows: Artifacts, columns: Artifacts) -> SimilarityMatrix:
    """Minibatch linear CKA of every layer of ``rows`` (rows) with every layer of ``columns``
    (columns): two runs, or two epochs of one run, probed on the same probe set.

    Args:
        rows, columns: one epoch's similarity artifacts each (see the module docstring).

    Returns:
        The (L_rows, L_columns) CKA matrix, float64; row and column names are the layers (the same
        names may appear on both sides). Constant layers were named when they were probed, so no
        warning is repeated here.

    Raises:
        ValueError: the two were probed on different probe sets (the message says how).
    """
    difference = probe_set_difference(rows, columns)
    if difference is not None:
        raise ValueError(f"CKA compares representations of the same inputs, but {difference}")
    estimator = MinibatchCKA(rows["layers"], columns["layers"])
    for row_grams, column_grams in zip(rows["grams"], columns["grams"]):
        estimator.update_grams(row_grams, column_grams)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateInputWarning)
        return estimator.compute()


def probed_grams(by_epoch: Mapping[int, Artifacts]) -> dict[int, Artifacts]:
    """The epochs of ``by_epoch`` (one run's similarity artifacts by epoch) that hold Gram matrices."""
    return {epoch: found for epoch, found in sorted(by_epoch.items()) if found.get("grams")}


def last_grams(run: ProbedRun) -> Optional[tuple[int, Artifacts]]:
    """``(epoch, artifacts)`` of the run's last epoch with Gram matrices; None when it has none."""
    probed = probed_grams(run.artifacts.get(ANALYSIS, {}))
    return (max(probed), probed[max(probed)]) if probed else None


def cka_last_rows(by_epoch: Mapping[int, Artifacts]) -> list[Row]:
    """``(epoch, layer, "cka_last", CKA)`` of every layer at every epoch with Gram matrices, with
    itself at the last such epoch (one run's similarity artifacts by epoch): when does a layer settle?"""
    probed = probed_grams(by_epoch)
    if not probed:
        return []
    last = probed[max(probed)]
    rows = []
    for epoch, found in probed.items():
        matrix = cross_cka(found, last)
        rows += [(epoch, layer, LAST, float(matrix.values[index, index])) for index, layer in enumerate(matrix.rows)]
    return rows


def keep_last_grams(by_epoch: Mapping[int, Artifacts]) -> dict[int, dict[str, Any]]:
    """``by_epoch`` without the Gram matrices of all but the last epoch that has them: what the
    report still needs once :func:`cka_last_rows` is computed (CKA across runs is drawn at the
    last epoch), so a report of many runs keeps one epoch's Gram matrices per run."""
    probed = probed_grams(by_epoch)
    last = max(probed, default=None)
    return {epoch: dict(found) if epoch == last else {key: value for key, value in found.items() if key != "grams"}
            for epoch, found in by_epoch.items()}
