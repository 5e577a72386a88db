"""The records of a run from metrics.csv rows, against hand-computed values."""

import math

import pytest

from attnconv_pl.analyses.training_records import (
    COLUMNS,
    best_val_accuracy,
    epochs_to_target_loss,
    loss_floor,
    read_metrics,
    seconds_to_epoch,
    training_records,
)
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
