"""The analysis base: metric families, settings helpers, the registry and the schedule."""

import pytest

from attnconv_pl.analyses import list_analyses, load_analysis, metric_family
from attnconv_pl.analyses.base import MetricFamily, is_scheduled_epoch, settings_from, settings_help
from attnconv_pl.analyses.dynamics import DynamicsSettings


def test_a_family_matches_whole_metric_names_only():
    family = MetricFamily("drift", "Drift", r"drift_.+|variance")
    assert family.matches("drift_prev_w2") and family.matches("variance")
    assert not family.matches("total_variance") and not family.matches("variance_x")


@pytest.mark.parametrize(("metric", "family"), [
    ("variance", "compactness"), ("id_twonn", "compactness"), ("participation_ratio", "compactness"),
    ("stability_h1_w1", "stability"), ("lipschitz_p99", "stability"), ("next_h0_bottleneck", "next"),
    ("drift_init_w2", "drift"), ("h1_total_persistence", "topology"), ("overhead_seconds", None),
    ("snp_snr", "single_node"), ("andc_acc_refit", "andc"), ("head_jaccard", "heads"), ("heads_per_label", "heads"),
    ("stiffness_feature_q", "stiffness"), ("rate_mean", "stiffness"), ("jacobian_sigma_max", "stiffness"),
    ("gate_rate_spearman", "gates"), ("cka_prev", "similarity"), ("cka_with:blocks.0", "similarity"),
])
def test_every_metric_of_dynamics_csv_has_its_family(metric, family):
    found = metric_family(metric)
    assert (found.key if found else None) == family


def test_the_registry_names_every_analysis_and_refuses_an_unknown_one():
    assert list_analyses() == ["training_records", "dynamics", "robustness", "single_node", "stiffness",
                              "similarity"]
    assert [load_analysis(name).name for name in list_analyses()] == list_analyses()
    with pytest.raises(ValueError, match="unknown analysis 'stifness'; analyses are: training_records, dynamics"):
        load_analysis("stifness")


def test_settings_help_reads_each_field_from_the_docstring():
    described = settings_help(DynamicsSettings)
    assert set(described) == set(DynamicsSettings.__dataclass_fields__)
    assert described["mle_k"] == "neighbours of the Levina-Bickel MLE."
    assert described["id_methods"].endswith("each logged as ``id_<method>``.")  # a continued line


def test_settings_from_keeps_the_fields_and_validates():
    settings = settings_from(DynamicsSettings, {"enabled": True, "probe_size": 7, "id_methods": ["twonn"]})
    assert settings.probe_size == 7 and settings.id_methods == ("twonn",)
    with pytest.raises(ValueError, match="every_n_epochs"):
        settings_from(DynamicsSettings, {"every_n_epochs": 0})
    with pytest.raises(ValueError, match="snapshot_dtype"):
        DynamicsSettings(snapshot_dtype="int8")


@pytest.mark.parametrize(("epoch", "every", "max_epochs", "expected"), [
    (0, 5, 30, True), (5, 5, 30, True), (6, 5, 30, False), (7, 5, 7, True), (7, 5, None, False),
])
def test_the_schedule_is_epoch_0_every_nth_and_the_last(epoch, every, max_epochs, expected):
    assert is_scheduled_epoch(epoch, every, max_epochs) is expected
