"""CKA across runs and against the last epoch from stored Gram matrices: against the unbiased HSIC
written here from its definition on features, what is refused, and what is kept."""

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from attnconv_pl.analyses.base import AnalysisResult
from attnconv_pl.analyses.dynamics import DynamicsSettings
from attnconv_pl.analyses.similarity import SimilaritySettings
from attnconv_pl.offline.assemble import probed_run
from attnconv_pl.offline.prober import CheckpointOutcome
from attnconv_pl.probes.similarity import u_centred_gram
from attnconv_pl.reports.similarity import (
    LAST,
    cka_last_rows,
    cross_cka,
    keep_last_grams,
    probe_set_difference,
)

BATCHES = [range(0, 9), range(9, 17), range(17, 25)]


def features(seed, n=25, widths=(5, 7, 3)):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(n, width, generator=generator, dtype=torch.float64) for width in widths]


def artifacts(layers, values, indices=None, dataset="digits", batches=BATCHES):
    """What the similarity analysis keeps of one epoch: float32 U-centred Grams per batch."""
    return {"layers": layers, "dataset": dataset, "split": "val",
            "indices": torch.arange(25) if indices is None else indices,
            "grams": [{layer: u_centred_gram(value[list(batch)]).float() for layer, value in zip(layers, values)}
                      for batch in batches]}


def hsic1(x, y):
    """Song et al.'s unbiased HSIC of linear kernels, from its formula (zeroed diagonals)."""
    n = len(x)
    k, l_ = x @ x.T, y @ y.T
    k.fill_diagonal_(0)
    l_.fill_diagonal_(0)
    ones = torch.ones(n, dtype=torch.float64)
    return float((torch.trace(k @ l_) + (ones @ k @ ones) * (ones @ l_ @ ones) / ((n - 1) * (n - 2))
                  - 2 / (n - 2) * ones @ k @ l_ @ ones) / (n * (n - 3)))


def reference_cka(x, y):
    """Minibatch CKA (Nguyen et al. 2021) over BATCHES, float64, from the definition."""
    def mean(a, b):
        return sum(hsic1(a[list(batch)], b[list(batch)]) for batch in BATCHES) / len(BATCHES)

    return mean(x, y) / math.sqrt(mean(x, x) * mean(y, y))


def test_two_models_layers_against_each_other_match_the_estimator_written_from_its_definition():
    a, b = features(0), features(1, widths=(4, 6))
    b[1] = torch.cat([a[0] @ torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64))[0] * 3.0 + 1.0, b[1]], dim=1)
    matrix = cross_cka(artifacts(["a0", "a1", "a2"], a), artifacts(["b0", "b1"], b))
    assert matrix.rows == ("a0", "a1", "a2") and matrix.columns == ("b0", "b1")
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            assert matrix.values[i, j].item() == pytest.approx(reference_cka(x, y), abs=1e-6)
    b[0] = a[0] @ torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64))[0] * 3.0 + 1.0  # rotated, scaled, moved
    assert cross_cka(artifacts(["a0", "a1", "a2"], a), artifacts(["b0", "b1"], b))["a0", "b0"] == pytest.approx(1.0)


def test_a_model_against_itself_is_its_layer_matrix_with_a_unit_diagonal():
    a = features(2)
    matrix = cross_cka(artifacts(["x", "y", "z"], a), artifacts(["x", "y", "z"], a)).values
    expected = torch.tensor([[reference_cka(x, y) for y in a] for x in a], dtype=torch.float64)
    assert (matrix - expected).abs().max() < 1e-6
    assert matrix.diagonal().tolist() == pytest.approx([1.0] * 3)


@pytest.mark.parametrize("other, words", [
    (dict(dataset="cifar10"), "different data (digits val vs cifar10 val)"),
    (dict(indices=torch.arange(25).flip(0)), "different inputs of digits val (25 vs 25"),
    (dict(batches=[range(0, 12), range(12, 25)]), "CKA batches differ (3 vs 2 batches"),
])
def test_runs_probed_on_different_probe_sets_are_refused(other, words):
    a = features(3)
    ours, theirs = artifacts(["x", "y", "z"], a), artifacts(["x", "y", "z"], a, **other)
    assert words in probe_set_difference(ours, theirs)
    with pytest.raises(ValueError, match="CKA compares representations of the same inputs"):
        cross_cka(ours, theirs)
    assert probe_set_difference(ours, artifacts(["p", "q"], features(4, widths=(2, 2)))) is None


def test_each_layer_against_itself_at_the_last_epoch_and_only_the_last_grams_are_kept():
    epochs = {0: features(5), 3: features(6), 7: features(7)}
    by_epoch = {epoch: artifacts(["x", "y", "z"], value) for epoch, value in epochs.items()}
    by_epoch[1] = {"layers": ["x", "y", "z"]}  # an epoch the analysis kept no Gram matrices of
    rows = cka_last_rows(by_epoch)
    assert [(epoch, layer, metric) for epoch, layer, metric, _ in rows] == [
        (epoch, layer, LAST) for epoch in (0, 3, 7) for layer in ("x", "y", "z")]
    for epoch, layer, _, value in rows:
        index = "xyz".index(layer)
        assert value == pytest.approx(reference_cka(epochs[epoch][index], epochs[7][index]), abs=1e-6)
    assert [value for epoch, _, _, value in rows if epoch == 7] == pytest.approx([1.0] * 3)
    kept = keep_last_grams(by_epoch)
    assert sorted(kept) == [0, 1, 3, 7] and [epoch for epoch, found in kept.items() if "grams" in found] == [7]
    assert kept[0]["layers"] == ["x", "y", "z"] and torch.equal(kept[3]["indices"], torch.arange(25))
    assert cka_last_rows({}) == [] and keep_last_grams({}) == {}


def test_a_probed_runs_record_has_cka_last_rows_and_only_its_last_grams():
    prober = SimpleNamespace(analyses={"similarity": SimpleNamespace(settings=SimilaritySettings())}, layers=[],
                             probe_set=None, probe_settings=DynamicsSettings(), hparams={}, run_config={},
                             run=SimpleNamespace(run_dir=None), data_class_path="", data_seconds=0.0)
    outcomes = [CheckpointOutcome(Path(f"epoch={epoch}.ckpt"), epoch, {"similarity": AnalysisResult(
        epoch, {("x", "cka_with:y"): 0.5}, artifacts(["x", "y"], features(epoch, widths=(3, 4))))}) for epoch in (0, 2)]
    record = probed_run(prober, outcomes, "run")
    at_0, at_2 = features(0, widths=(3, 4))[0], features(2, widths=(3, 4))[0]
    assert record.series("x", "cka_last") == ([0, 2], [pytest.approx(reference_cka(at_0, at_2), abs=1e-6),
                                                       pytest.approx(1.0)])
    assert record.layers == ["x", "y"] and "grams" not in record.artifacts["similarity"][0]
    assert record.artifacts["similarity"][2]["grams"] is outcomes[1].results["similarity"].artifacts["grams"]
