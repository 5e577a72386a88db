"""The epoch tables (attnconv_pl/io/epoch_table.py): merges keep every row, and a table written
before a column was added gains it on resume."""

import csv

import pytest

from attnconv_pl.io.epoch_table import drop_epochs_after, write_epochs


def rows(path):
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def test_a_table_written_before_a_column_was_added_gains_it_empty_in_earlier_rows(tmp_path):
    path = tmp_path / "metrics.csv"
    write_epochs(path, [(1, 0.5), (2, 0.25)], columns=("epoch", "train_loss"))
    write_epochs(path, [(3, 0.125, 0.01)], columns=("epoch", "train_loss", "certificate_duality_gap"))
    assert rows(path) == [["epoch", "train_loss", "certificate_duality_gap"],
                          ["1", "0.5", ""], ["2", "0.25", ""], ["3", "0.125", "0.01"]]
    drop_epochs_after(path, 2, columns=("epoch", "train_loss", "certificate_duality_gap"))
    assert rows(path)[-1] == ["2", "0.25", ""]


def test_a_table_with_columns_the_writer_does_not_know_is_refused(tmp_path):
    path = tmp_path / "metrics.csv"
    write_epochs(path, [(1, 0.5, 7.0)], columns=("epoch", "train_loss", "other"))
    with pytest.raises(ValueError, match="has columns"):
        write_epochs(path, [(2, 0.25)], columns=("epoch", "train_loss"))
    assert rows(path) == [["epoch", "train_loss", "other"], ["1", "0.5", "7.0"]]


def test_a_leading_column_is_never_added_to_an_existing_table(tmp_path):
    path = tmp_path / "dynamics.csv"
    write_epochs(path, [(1, "a", "variance", 1.0)])
    with pytest.raises(ValueError, match="has columns"):
        write_epochs(path, [("run", 1, "a", "variance", 2.0)], columns=("run", "epoch", "layer", "metric", "value"))
