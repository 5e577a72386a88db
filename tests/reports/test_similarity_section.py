"""The similarity section: the heatmap's matrix read back from a run's rows, and which figures the
section draws."""

import numpy as np

from attnconv_pl.reports.records import ProbedRun
from attnconv_pl.reports.sections import similarity

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
