"""probe.py's records and robustness options, parsed without probing anything."""

import dataclasses

import pytest

import probe
from attnconv_pl.analyses.robustness import DEFAULT_NOISE_LEVELS
from attnconv_pl.analyses.training_records import DEFAULT_TARGET_LOSS, TrainingRecords
from attnconv_pl.errors import ProbeInputError
from attnconv_pl.offline.assemble import unreachable_target
from attnconv_pl.offline.data_choice import DataChoice
from attnconv_pl.reports.records import ProbedRun


def parse(*args):
    return probe.build_parser().parse_args(["RUN", "--out", "R", *args])


def test_robustness_levels_default_sorted_and_distinct():
    assert parse().robustness is None
    assert probe.robustness_request(parse("--robustness"), DataChoice()).noise_levels == DEFAULT_NOISE_LEVELS
    request = probe.robustness_request(parse("--robustness", "1", "0", "0.5", "1", "--robustness-size", "50",
                                             "--data", "test"), DataChoice.parse("test"))
    assert (request.noise_levels, request.size, request.split) == ((0.0, 0.5, 1.0), 50, "test")
    assert parse().target_loss == DEFAULT_TARGET_LOSS and parse("--target-loss", "0.25").target_loss == 0.25


@pytest.mark.parametrize("args, message", [
    (("--robustness", "-1"), "-1 is not a noise level"),
    (("--robustness", "inf"), "inf is not a noise level"),
    (("--robustness", "x"), "'x' is not a noise level"),
    (("--robustness-size", "1"), "give at least 2"),
    (("--target-loss", "-0.5"), "a finite number > 0"),
])
def test_bad_values_stop_at_parsing(args, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        parse(*args)
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_robustness_on_another_dataset_is_refused():
    with pytest.raises(ProbeInputError, match="needs the run's own dataset"):
        probe.robustness_request(parse("--robustness", "--data", "digits"), DataChoice.parse("digits"))


def test_a_target_below_the_label_smoothing_floor_is_warned_about():
    records = TrainingRecords(epochs=3, target_loss=0.5, epochs_to_target_loss=None, seconds_to_target_loss=None,
                              best_val_acc=0.5, best_val_acc_epoch=3, final_val_acc=0.5, final_train_loss=0.9)
    run = ProbedRun(label="cifar/s0", group="g", layers=["a"], rows=[(3, "a", "variance", 1.0)],
                    artifacts={"training_records": {3: {"records": records, "loss_floor": 0.5003}}})
    assert "smallest mean training loss run cifar/s0 can reach (0.5003" in unreachable_target(run)
    reachable = dataclasses.replace(records, target_loss=1.0)
    assert unreachable_target(dataclasses.replace(
        run, artifacts={"training_records": {3: {"records": reachable, "loss_floor": 0.5003}}})) is None
