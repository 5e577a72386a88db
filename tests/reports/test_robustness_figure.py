"""Adversarial accuracy in the report: curves per attack beside the noise curve, and summary.json."""

import dataclasses

import numpy as np
import pytest

from attnconv_pl.analyses.robustness import attack_metric, noise_metric
from attnconv_pl.reports.robustness import attack_curves, robustness_figure
from attnconv_pl.reports.sections import robustness as section

LEVELS = (0.0, 1.0)
GRID = (0.0, 0.05, 0.1)
ATTACKS = {"methods": ["fgsm", "pgd"], "norm": "linf", "eps_grid": list(GRID), "pgd_steps": 10,
           "pgd_step_factor": 2.5, "random_start": True}


def with_robustness(run, fgsm=None, pgd=None, noise=(0.9, 0.4)):
    """``run`` with robustness numbers at its last epoch as the analysis gives them: accuracies
    under noise (LEVELS) and, when given, under FGSM and PGD (GRID, L_inf), as rows and artifacts."""
    epoch = run.last_epoch
    rows = [(epoch, "", noise_metric(level), value) for level, value in zip(LEVELS, noise)]
    artifact = {"noise_levels": list(LEVELS), "inputs": {"dataset": "digits", "split": "val", "inputs": 270,
                                                         "seed": 0}}
    if fgsm is not None:
        rows += [(epoch, "", attack_metric(method, "linf", eps), value) for method, values in (("fgsm", fgsm),
                 ("pgd", pgd)) for eps, value in zip(GRID, values)]
        artifact["attacks"] = ATTACKS
    return dataclasses.replace(run, rows=run.rows + rows, artifacts={**run.artifacts, "robustness": {epoch: artifact}},
                               description={**run.description, "model": {"num_classes": 10}})


@pytest.fixture
def runs(make_run):
    return [with_robustness(make_run("attn/s0", "attention_net"), (0.9, 0.5, 0.3), (0.9, 0.3, 0.0)),
            with_robustness(make_run("attn/s1", "attention_net"), (0.8, 0.3, 0.1), (0.8, 0.1, 0.0)),
            with_robustness(make_run("conv/s0", "conv_net"))]


def test_attack_curves_are_the_mean_and_sample_std_over_seeds_of_the_runs_attacked(runs):
    curves = attack_curves(runs)
    assert list(curves) == ["fgsm_linf", "pgd_linf"]
    (fgsm,), (pgd,) = curves["fgsm_linf"], curves["pgd_linf"]  # the run not attacked has no curve
    assert (fgsm.group, fgsm.runs) == ("attention_net", 2)
    np.testing.assert_allclose(fgsm.levels, GRID)
    np.testing.assert_allclose(fgsm.mean, [0.85, 0.4, 0.2])
    np.testing.assert_allclose(fgsm.std, np.std([[0.9, 0.5, 0.3], [0.8, 0.3, 0.1]], axis=0, ddof=1))
    np.testing.assert_allclose(pgd.mean, [0.85, 0.2, 0.0])


def test_the_figure_draws_a_panel_per_attack_beside_the_noise_panel(runs):
    figure = robustness_figure(runs)
    noise, fgsm, pgd = figure.axes
    assert [axis.get_title() for axis in figure.axes] == ["Gaussian noise", "FGSM, L∞", "PGD, L∞"]
    assert fgsm.get_xlabel() == pgd.get_xlabel() == "eps (normalised input units)"
    assert "normalised input units" in noise.get_xlabel()

    def drawn(axis):
        return [line.get_ydata() for line in axis.get_lines() if line.get_label() != "chance"]

    assert any(np.allclose(y, [0.85, 0.2, 0.0]) for y in drawn(pgd))
    assert any(np.allclose(y, [0.85, 0.4, 0.2]) for y in drawn(fgsm))
    assert any(np.allclose(y, [0.9, 0.4]) for y in drawn(noise))  # conv_net's noise curve, not attacked
    assert all(len(drawn(axis)) for axis in figure.axes)
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend == ["attention_net (2 seeds)", "conv_net (1 seed)", "chance"]


def test_without_attacks_the_figure_is_the_noise_panel_alone(make_run):
    runs = [with_robustness(make_run("conv/s0", "conv_net"))]
    assert attack_curves(runs) == {}
    assert [axis.get_title() for axis in robustness_figure(runs).axes] == ["Gaussian noise"]
    (figure, _), = section.figures(runs)
    assert "attack" not in figure.caption


def test_summary_holds_the_attack_settings_and_accuracies(runs):
    entry = section.summary(runs[0])["robustness"]
    assert entry["final_accuracy"] == [0.9, 0.4]
    final = {"fgsm_linf": [0.9, 0.5, 0.3], "pgd_linf": [0.9, 0.3, 0.0]}
    assert entry["attacks"] == {**ATTACKS, "accuracy": {"2": final}, "final_accuracy": final}
    assert "attacks" not in section.summary(runs[2])["robustness"]
    (figure, _), = section.figures(runs)
    assert "eps in normalised input units" in figure.caption
