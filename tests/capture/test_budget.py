"""The snapshot budget: bytes of a run's snapshots, and the refusal with settings that fit."""

from __future__ import annotations

import pytest

from attnconv_pl.capture import SnapshotBudget
from attnconv_pl.capture.budget import format_bytes
from attnconv_pl.errors import ConfigError


def budget(**changes) -> SnapshotBudget:
    """Two layers, 10 inputs in float16, probed at epochs 0, 2, 4 and 5."""
    settings = dict(layer_widths={"a": (3, 5), "b": (0, 2)}, n_inputs=10, bytes_per_float=2,
                    capture_inputs=True, every_n_epochs=2, max_epochs=5)
    return SnapshotBudget(**settings | changes)


def test_bytes_of_a_hand_computed_run():
    # per row: 2 bytes * (5 + 3 + 2 + 0) values + 8 (index) + 8 (label) = 36 bytes
    assert budget().n_snapshots == 4
    assert budget().total_bytes == 4 * 10 * 36 == 1440
    # without inputs: 2 * (5 + 2) + 16 = 30 bytes per row
    assert budget(capture_inputs=False).total_bytes == 4 * 10 * 30
    assert budget(bytes_per_float=4).total_bytes == 4 * 10 * (4 * 10 + 16)


@pytest.mark.parametrize(("every", "max_epochs", "snapshots"),
                         [(1, 5, 6), (2, 4, 3), (2, 5, 4), (5, 5, 2), (7, 5, 2)])
def test_snapshots_are_epoch_zero_every_nth_and_the_last(every, max_epochs, snapshots):
    assert budget(every_n_epochs=every, max_epochs=max_epochs).n_snapshots == snapshots


def test_describe():
    assert budget().describe() == "1.4 KiB (4 snapshots of 10 inputs, 360 B each)"


def test_check_passes_at_the_limit_and_refuses_one_byte_below():
    assert budget().check(max_bytes=1440) is None
    with pytest.raises(ConfigError):
        budget().check(max_bytes=1439)


def test_check_refuses_with_the_numbers_and_the_settings_that_fit():
    with pytest.raises(ConfigError) as err:
        budget().check(max_bytes=1000)
    # every 3 or 4 epochs still takes 3 snapshots (1080 B); every 5 takes 2 (720 B);
    # one input takes 144 B over the run, so 1000 B hold 6
    assert str(err.value) == (
        "dynamics snapshots would take 1.4 KiB (4 snapshots of 10 inputs, 360 B each), above "
        "max_snapshot_bytes = 1000 B. Settings that fit: --dynamics.every_n_epochs 5; "
        "--dynamics.probe_size 6; a smaller --dynamics.project_dim, --dynamics.representation "
        "pool, or --dynamics.capture_inputs false; or raise --dynamics.max_snapshot_bytes."
    )


def test_check_suggests_only_what_fits():
    with pytest.raises(ConfigError) as err:
        budget().check(max_bytes=200)  # 2 snapshots take 720 B; 200 B hold 1 input
    message = str(err.value)
    assert "above max_snapshot_bytes = 200 B" in message
    assert "every_n_epochs" not in message and "probe_size" not in message
    assert "Settings that fit: a smaller --dynamics.project_dim" in message


@pytest.mark.parametrize(("n_bytes", "text"), [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"),
                                               (3 * 2**20, "3.0 MiB"), (5 * 2**40, "5120.0 GiB")])
def test_format_bytes(n_bytes, text):
    assert format_bytes(n_bytes) == text
