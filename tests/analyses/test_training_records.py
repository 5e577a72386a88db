"""The records of a run from metrics.csv rows, against hand-computed values, and the analysis
giving them at each checkpoint."""

import math

import pytest

from attnconv_pl.analyses.base import CheckpointInputs
from attnconv_pl.analyses.training_records import (
    COLUMNS,
    RECORD_METRICS,
    TrainingRecordsAnalysis,
    TrainingRecordsSettings,
    best_val_accuracy,
    epochs_to_target_loss,
    loss_floor,
    read_metrics,
    seconds_to_epoch,
    training_records,
)
from attnconv_pl.errors import ProbeInputError
from attnconv_pl.io.epoch_table import write_epochs

NAN = math.nan
ROWS = [  # epoch, train_loss, val_acc, epoch_seconds
    {"epoch": 1, "train_loss": 2.10, "val_acc": 0.40, "epoch_seconds": 10.0},
    {"epoch": 2, "train_loss": 1.20, "val_acc": 0.70, "epoch_seconds": 11.0},
    {"epoch": 3, "train_loss": 0.90, "val_acc": NAN, "epoch_seconds": 12.0},
    {"epoch": 4, "train_loss": 0.45, "val_acc": 0.85, "epoch_seconds": 13.0},
    {"epoch": 5, "train_loss": 0.50, "val_acc": 0.85, "epoch_seconds": 14.0},
    {"epoch": 6, "train_loss": 0.30, "val_acc": 0.80, "epoch_seconds": 15.0},
]


def test_best_validation_accuracy_is_the_earliest_maximum_and_skips_missing_values():
    assert best_val_accuracy(ROWS) == (4, 0.85)
    assert best_val_accuracy([{"epoch": 1, "val_acc": NAN}]) is None


@pytest.mark.parametrize("target, epoch", [(3.0, 1), (1.2, 2), (1.0, 3), (0.5, 4), (0.45, 4), (0.3, 6), (0.29, None)])
def test_epochs_to_target_loss_is_the_first_epoch_at_or_below_the_target(target, epoch):
    assert epochs_to_target_loss(ROWS, target) == epoch


def test_records_of_a_run():
    records = training_records(list(reversed(ROWS)), target_loss=1.0)
    assert records.as_dict() == {
        "epochs": 6, "target_loss": 1.0, "epochs_to_target_loss": 3, "seconds_to_target_loss": 33.0,
        "best_val_acc": 0.85, "best_val_acc_epoch": 4, "final_val_acc": 0.80, "final_train_loss": 0.30}
    never = training_records(ROWS, target_loss=0.1)
    assert never.epochs_to_target_loss is None and never.seconds_to_target_loss is None


def test_seconds_need_every_epoch_up_to_the_target():
    assert seconds_to_epoch(ROWS, 2) == 21.0
    assert seconds_to_epoch([r for r in ROWS if r["epoch"] != 1], 2) is None
    assert seconds_to_epoch([{**ROWS[0], "epoch_seconds": NAN}], 1) is None


def test_no_rows_is_an_error():
    with pytest.raises(ValueError, match="not completed an epoch"):
        training_records([])


def test_loss_floor_is_the_entropy_of_the_smoothed_target():
    assert loss_floor(0.0, 10) == 0.0
    eps, k = 0.1, 10
    on, off = 0.91, 0.01
    assert loss_floor(eps, k) == pytest.approx(-(on * math.log(on) + 9 * off * math.log(off)))
    assert loss_floor(1.0, k) == pytest.approx(math.log(k))  # uniform target: ln K


def test_read_metrics_parses_the_file_the_callback_writes(tmp_path):
    path = tmp_path / "metrics.csv"
    write_epochs(path, [(2, 1.5, 0.5, 1.4, 0.6, 0.9, 3.0), (1, 2.0, 0.3, NAN, NAN, NAN, 2.5)], columns=COLUMNS)
    rows = read_metrics(path)
    assert [row["epoch"] for row in rows] == [1, 2]
    assert rows[1] == {"epoch": 2, "train_loss": 1.5, "train_acc": 0.5, "val_loss": 1.4, "val_acc": 0.6,
                       "val_acc_top5": 0.9, "epoch_seconds": 3.0}
    assert math.isnan(rows[0]["val_acc"])


def test_read_metrics_names_a_file_that_is_not_metrics_csv(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("step,loss\n1,2.0\n")
    with pytest.raises(ValueError, match="is not a metrics.csv"):
        read_metrics(path)
    path.write_text("epoch,train_loss\n1,abc\n")
    with pytest.raises(ValueError, match="not a number"):
        read_metrics(path)


def test_read_metrics_names_the_file_and_line_without_quoting_them(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("SECRET-TOKEN:x:0:0\n")
    link = tmp_path / "metrics.csv"
    link.symlink_to(secret)
    with pytest.raises(ValueError) as error:
        read_metrics(link)
    assert str(error.value).startswith(f"{link} is not a metrics.csv") and "SECRET" not in str(error.value)
    secret.write_text("epoch,train_loss\n1,2.0\n2,SECRET\n")
    with pytest.raises(ValueError) as error:
        read_metrics(link)
    assert str(error.value) == f"line 3 of {link} holds a cell that is not a number"
    secret.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(ValueError, match="is not a metrics.csv"):
        read_metrics(link)


def at_checkpoint(epoch, run_dir, target_loss=1.0, hparams=None):
    """The training records analysis run on a checkpoint of ``epoch`` of the run in ``run_dir``
    (it reads only the epoch, the run directory and the hyper-parameters)."""
    checkpoint = CheckpointInputs(epoch=epoch, model=None, device=None, autocast=None, seed=0, batch_size=1,
                                  max_epochs=None, inputs=None, run_dir=run_dir,
                                  hparams={"num_classes": 10, "label_smoothing": 0.1} if hparams is None else hparams)
    return TrainingRecordsAnalysis(TrainingRecordsSettings(target_loss)).probe_checkpoint(checkpoint)


def test_each_checkpoint_gives_the_records_of_the_rows_up_to_its_epoch(tmp_path):
    path = tmp_path / "metrics.csv"
    write_epochs(path, [(row["epoch"], row["train_loss"], NAN, NAN, row["val_acc"], NAN, row["epoch_seconds"])
                        for row in ROWS], columns=COLUMNS)
    for epoch in range(1, 7):
        result = at_checkpoint(epoch, tmp_path)
        expected = training_records(read_metrics(path)[:epoch], target_loss=1.0)  # the records of the file itself
        assert result.artifacts["records"] == expected
        assert result.values == {("", name): float(getattr(expected, name)) for name in RECORD_METRICS
                                 if getattr(expected, name) is not None}
        assert [row["epoch"] for row in result.artifacts["curves"]] == list(range(1, epoch + 1))
        assert result.artifacts["metrics_csv"] == str(path) and result.artifacts["missing"] is None
        assert result.artifacts["loss_floor"] == loss_floor(0.1, 10)
    assert ("", "epochs_to_target_loss") not in at_checkpoint(2, tmp_path).values  # not reached by epoch 2
    assert {metric: value for (_, metric), value in at_checkpoint(4, tmp_path).values.items()} == {  # by hand
        "best_val_acc": 0.85, "best_val_acc_epoch": 4.0, "epochs_to_target_loss": 3.0,
        "seconds_to_target_loss": 33.0, "final_val_acc": 0.85, "final_train_loss": 0.45}
    assert all(TrainingRecordsAnalysis.family_of(metric).key == "records" for metric in RECORD_METRICS)


def test_without_rows_a_checkpoint_gives_no_values_and_says_why(tmp_path):
    write_epochs(tmp_path / "metrics.csv", [(1, 2.0, 0.3, 2.1, 0.25, 0.6, 3.0)], columns=COLUMNS)
    before = at_checkpoint(0, tmp_path)  # the model at initialisation: no epoch trained yet
    assert before.values == {} and before.artifacts["records"] is None and before.artifacts["curves"] == []
    assert before.artifacts["missing"] == f"{tmp_path / 'metrics.csv'} has no rows up to epoch 0"
    bare = at_checkpoint(3, None, hparams={})
    assert bare.values == {} and bare.artifacts["records"] is None and bare.artifacts["metrics_csv"] is None
    assert bare.artifacts["missing"] == "no metrics.csv: a checkpoint outside a run directory"
    assert bare.artifacts["loss_floor"] is None  # no number of classes: no floor
    absent = at_checkpoint(3, tmp_path / "run")
    assert absent.values == {} and absent.artifacts["missing"].endswith("run/metrics.csv does not exist")


def test_a_file_that_is_not_metrics_csv_is_refused_with_what_to_do(tmp_path):
    (tmp_path / "metrics.csv").write_text("step,loss\n1,2.0\n")
    with pytest.raises(ProbeInputError, match="is not a metrics.csv .*; metrics.csv is written by train.py"):
        at_checkpoint(1, tmp_path)
