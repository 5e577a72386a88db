"""Snapshot files and the atomic writes under them."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch

from attnconv_pl.capture.snapshots import (
    UnreadableSnapshot,
    load_snapshot,
    save_snapshot,
    set_aside,
    snapshot_nbytes,
    snapshot_path,
)
from attnconv_pl.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text


def example_activations() -> dict[str, dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return {
        "stem.0": {
            "input": torch.randn(6, 12, generator=generator),
            "output": torch.randn(6, 20, generator=generator),
        },
        "blocks.1.attn": {"output": 100 * torch.randn(6, 8, generator=generator)},
    }


def write_example(path: Path, **kwargs) -> None:
    save_snapshot(
        path,
        example_activations(),
        indices=torch.arange(6),
        labels=torch.tensor([3, 1, 4, 1, 5, 9]),
        **kwargs,
    )


def test_snapshot_path_pads_the_epoch(tmp_path):
    assert snapshot_path(tmp_path, 7) == tmp_path / "snapshots" / "epoch=007.safetensors"
    assert snapshot_path(str(tmp_path), 1234).name == "epoch=1234.safetensors"


def test_round_trip_in_float16(tmp_path):
    path = snapshot_path(tmp_path, 3)
    write_example(path, metadata={"epoch": "3", "representation": "flatten"})
    activations, indices, labels, metadata = load_snapshot(path)
    expected = example_activations()
    assert {layer: list(sides) for layer, sides in activations.items()} == {
        layer: list(sides) for layer, sides in expected.items()
    }
    for layer, sides in expected.items():
        for side, points in sides.items():
            assert activations[layer][side].dtype == torch.float32
            # float16 keeps 11 significant bits: relative error <= 2**-11
            torch.testing.assert_close(activations[layer][side], points, rtol=2**-11, atol=1e-7)
    assert indices.tolist() == list(range(6)) and indices.dtype == torch.int64
    assert labels.tolist() == [3, 1, 4, 1, 5, 9]
    assert metadata == {"epoch": "3", "representation": "flatten"}


def test_round_trip_in_float32_is_exact(tmp_path):
    path = tmp_path / "exact.safetensors"
    write_example(path, dtype=torch.float32)
    activations, _, _, metadata = load_snapshot(path)
    assert torch.equal(activations["stem.0"]["output"], example_activations()["stem.0"]["output"])
    assert metadata == {}


def test_snapshot_nbytes_matches_the_data_section_of_a_written_file(tmp_path):
    path = tmp_path / "s.safetensors"
    write_example(path)
    raw = path.read_bytes()
    header_length = struct.unpack("<Q", raw[:8])[0]  # safetensors: u64 header size, JSON, data
    header = json.loads(raw[8 : 8 + header_length])
    data_bytes = len(raw) - 8 - header_length
    assert {"stem.0/input", "stem.0/output", "probe_indices", "probe_labels"} <= header.keys()
    widths = {"stem.0": (12, 20), "blocks.1.attn": (0, 8)}
    assert snapshot_nbytes(widths, n=6, dtype_bytes=2, n_snapshots=1, capture_inputs=True) == (
        data_bytes
    )
    assert snapshot_nbytes(widths, 6, 2, n_snapshots=5, capture_inputs=False) == 5 * 6 * (
        2 * 28 + 16
    )


def test_float16_overflow_warns_with_the_layer(tmp_path):
    huge = {"norm": {"output": torch.full((2, 3), 1e6)}}
    with pytest.warns(UserWarning, match="norm/output reaches"):
        save_snapshot(tmp_path / "s.safetensors", huge, torch.arange(2), torch.zeros(2))


def test_save_rejects_mismatched_rows_and_non_string_metadata(tmp_path):
    path = tmp_path / "s.safetensors"
    with pytest.raises(ValueError, match=r"'stem.0/input' has 6 rows, expected one per index"):
        save_snapshot(path, example_activations(), torch.arange(5), torch.zeros(5))
    with pytest.raises(TypeError, match="convert numbers with str"):
        write_example(path, metadata={"epoch": 3})
    assert list(tmp_path.iterdir()) == []


def test_missing_file_error_names_the_path(tmp_path):
    path = tmp_path / "epoch=004.safetensors"
    with pytest.raises(FileNotFoundError, match="epoch=004.safetensors does not exist"):
        load_snapshot(path)


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[: len(raw) // 2],  # truncated data
        lambda raw: raw[:20],  # truncated header
        lambda raw: b"not a safetensors file at all",
        lambda raw: b"",
    ],
    ids=["truncated-data", "truncated-header", "garbage", "empty"],
)
def test_corrupt_file_error_names_the_path(tmp_path, damage):
    path = tmp_path / "epoch=002.safetensors"
    write_example(path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=r"snapshot .*epoch=002.safetensors is not a readable"):
        load_snapshot(path)


def test_file_without_probe_indices_is_rejected(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match=r"lacks \['probe_indices', 'probe_labels'\]"):
        load_snapshot(path)


def test_a_folder_in_place_of_a_snapshot_is_unreadable_not_missing(tmp_path):
    path = snapshot_path(tmp_path, 2)
    path.mkdir(parents=True)
    with pytest.raises(UnreadableSnapshot, match=r"epoch=002.safetensors is a directory, not a snapshot file"):
        load_snapshot(path)


def test_rows_that_do_not_match_the_probe_indices_are_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "s.safetensors"
    save_file({"probe_indices": torch.arange(6), "probe_labels": torch.zeros(6, dtype=torch.int64),
               "stem.0/output": torch.zeros(5, 3)}, path)
    with pytest.raises(UnreadableSnapshot, match=r"has 5 rows of 'stem.0/output' for 6 probe indices"):
        load_snapshot(path)


@pytest.mark.parametrize("expected, problem", [
    ({"epoch": 4}, "holds epoch 3, not epoch 4"),
    ({"indices": torch.arange(1, 7)}, r"holds another probe set \(6 inputs, not the run's 6 in their order\)"),
    ({"indices": torch.arange(5)}, r"holds another probe set \(6 inputs, not the run's 5"),
    ({"layers": ["stem.0", "head"]}, r"lacks the output of \['head'\] \(it holds \['stem.0', 'blocks.1.attn'\]\)"),
])
def test_a_snapshot_other_than_the_one_expected_is_refused(tmp_path, expected, problem):
    path = snapshot_path(tmp_path, 3)
    write_example(path, metadata={"epoch": "3"})
    load_snapshot(path, epoch=3, indices=torch.arange(6), layers=["stem.0", "blocks.1.attn"])  # the expected one
    with pytest.raises(UnreadableSnapshot, match=problem):
        load_snapshot(path, **expected)


def test_set_aside_keeps_every_unreadable_entry_under_a_new_name(tmp_path):
    path = snapshot_path(tmp_path, 1)
    path.parent.mkdir()
    path.write_bytes(b"first")
    assert set_aside(path) == path.with_name("epoch=001.safetensors.unreadable")
    path.mkdir()
    assert set_aside(path) == path.with_name("epoch=001.safetensors.unreadable-2")
    assert not path.exists() and path.with_name("epoch=001.safetensors.unreadable").read_bytes() == b"first"
    assert path.with_name("epoch=001.safetensors.unreadable-2").is_dir()


# atomic writes


def test_atomic_writes_replace_the_file_and_leave_no_temporary(tmp_path):
    path = tmp_path / "sub" / "dynamics.csv"
    atomic_write_text(path, "epoch,layer\n")
    atomic_write_text(path, "epoch,layer,metric\n")
    assert path.read_text() == "epoch,layer,metric\n"
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["b.bin", "dynamics.csv", "sub"]


def test_atomic_path_keeps_the_suffix_for_format_inference(tmp_path):
    with atomic_path(tmp_path / "figure.png") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp.name.startswith(".")
        tmp.write_bytes(b"png")
    assert (tmp_path / "figure.png").read_bytes() == b"png"


def test_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "epoch=001.safetensors"
    write_example(path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(path) as tmp:
        tmp.write_bytes(before[:10])
        raise RuntimeError("disk full")
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


def test_failed_snapshot_never_leaves_a_partial_file(tmp_path, monkeypatch):
    def fail_midway(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError("no space left on device")

    monkeypatch.setattr("attnconv_pl.capture.snapshots.save_file", fail_midway)
    path = snapshot_path(tmp_path, 0)
    with pytest.raises(OSError, match="no space left"):
        write_example(path)
    assert list(path.parent.iterdir()) == []


def test_atomic_path_body_that_writes_nothing_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="did not create"), atomic_path(tmp_path / "x.json"):
        pass
    assert list(tmp_path.iterdir()) == []
