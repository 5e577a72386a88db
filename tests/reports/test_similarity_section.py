"""The similarity section: the heatmap's matrix read back from a run's rows, which figures the
section draws, which runs it compares and which it says it cannot."""

import numpy as np
import torch

from attnconv_pl.probes.similarity import u_centred_gram
from attnconv_pl.reports.figures import ReportFigure
from attnconv_pl.reports.records import ProbedRun
from attnconv_pl.reports.sections import similarity
from attnconv_pl.reports.similarity import cross_cka

LAYERS = ["stem", "mixer", "head"]
TRUE = np.array([[1.0, 0.8, 0.3], [0.8, 1.0, 0.5], [0.3, 0.5, 1.0]])


def cka_run(label="digits/a", epochs=(0, 1)):
    rows = []
    for epoch in epochs:
        for i, row in enumerate(LAYERS):
            rows += [(epoch, row, f"cka_with:{column}", TRUE[i, j] - 0.1 * (epochs[-1] - epoch))
                     for j, column in enumerate(LAYERS) if i != j]
            if epoch:
                rows += [(epoch, row, "cka_prev", 0.9), (epoch, row, "cka_first", 0.7)]
        rows.append((epoch, "mixer", "variance", 2.0))
    return ProbedRun(label=label, group="g", layers=["inputs_only", *LAYERS], rows=rows)


def test_the_matrix_is_the_last_epochs_rows_with_a_unit_diagonal():
    epoch, layers, matrix = similarity.layer_matrix(cka_run())
    assert epoch == 1 and layers == LAYERS
    np.testing.assert_allclose(matrix, TRUE)
    assert similarity.layer_matrix(ProbedRun("x", "g", ["a"], [(0, "a", "variance", 1.0)])) is None


def test_the_section_draws_one_heatmap_per_run_and_the_across_epoch_metrics_only():
    runs = [cka_run("digits/a"), cka_run("digits/b")]
    drawn = list(similarity.figures(runs))
    names = [figure.name for figure, _ in drawn]
    assert names[:2] == ["similarity_matrix_digits_a", "similarity_matrix_digits_b"]
    assert {figure.metric for figure, _ in drawn[2:]} == {"", "cka_prev", "cka_first"}
    assert all(figure.section == "similarity" for figure, _ in drawn)
    for _, figure in drawn:
        figure.clear()
    (section,) = similarity.sections(runs, [figure for figure, _ in drawn])
    assert section.key == "similarity" and "CKA" in section.title


def gram_run(label, group, seed, dataset="digits", layers=("stem", "head")):
    """A run whose last epoch (2) kept the similarity analysis's Gram matrices (2 batches of 6
    inputs) and whose epochs 0 and 2 have cka_last rows."""
    generator = torch.Generator().manual_seed(seed)
    values = {layer: torch.randn(12, 4, generator=generator, dtype=torch.float64) for layer in layers}
    found = {"layers": list(layers), "dataset": dataset, "split": "val", "indices": torch.arange(12),
             "grams": [{layer: u_centred_gram(value[batch]) for layer, value in values.items()}
                       for batch in (slice(0, 6), slice(6, 12))]}
    rows = [(epoch, layer, "cka_last", 1.0 - 0.1 * (2 - epoch) * depth) for epoch in (0, 2)
            for depth, layer in enumerate(layers)]
    return ProbedRun(label, group, list(layers), rows, artifacts={"similarity": {2: found}})


def test_runs_on_the_same_probe_set_are_compared_by_group_and_the_others_are_named():
    vit, vit_2, resnet = gram_run("vit/1", "vit", 0), gram_run("vit/2", "vit", 1), gram_run("resnet/1", "resnet", 2)
    resnet_2 = gram_run("resnet/2", "resnet", 3, layers=("conv", "layer1", "fc"))
    other = gram_run("cifar/1", "cifar", 4, dataset="cifar10")
    runs = [vit, vit_2, resnet, resnet_2, other]
    chosen, refused = similarity.comparisons(runs)
    assert [[(a.label, b.label) for a, b in comparison.pairs] for comparison in chosen] == [
        [("vit/1", "vit/2")], [("vit/1", "resnet/1"), ("vit/2", "resnet/1")],  # not resnet/2: other layers
        [("resnet/1", "resnet/2")]]
    assert refused == [f"runs of {group} and cifar are not compared (2 pairs, e.g. {group}/1 and cifar/1): their probe "
                       "sets come from different data (digits val vs cifar10 val)." for group in ("vit", "resnet")]
    drawn = dict((entry.name, figure) for entry, figure in similarity.figures(runs))
    across = drawn["similarity_across_vit_1_vs_resnet_1"]
    first, mean = across.axes
    assert first.get_title() == "vit/1 vs resnet/1, epoch 2" and "mean over 2 pairs of seeds" in mean.get_title()
    expected = (cross_cka(vit.artifacts["similarity"][2], resnet.artifacts["similarity"][2]).values
                + cross_cka(vit_2.artifacts["similarity"][2], resnet.artifacts["similarity"][2]).values) / 2
    np.testing.assert_allclose(mean.images[0].get_array(), expected.numpy(), atol=1e-12)
    assert len(drawn["similarity_across_vit_1_vs_vit_2"].axes) == 1  # one pair of seeds: no mean
    settling = drawn["similarity_settling"]
    lines = settling.axes[0].lines
    assert [line.get_ydata().tolist() for line in lines] == [[1.0, 1.0], [0.8, 1.0]]
    for figure in drawn.values():
        figure.clear()
    (section,) = similarity.sections(runs, [ReportFigure(name, "similarity", "") for name in drawn])
    assert "needs the same probe set" in section.blocks[-1].runs[0] and refused[-1] in section.blocks[-1].runs[0]
