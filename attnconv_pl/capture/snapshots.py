"""Per-epoch snapshots of probe-set activations: one safetensors file per probed epoch.

A snapshot ``run_dir/snapshots/epoch=NNN.safetensors`` holds, for every probed layer, the
points of its output (and input) under the keys ``"{layer}/output"`` and ``"{layer}/input"``
(N rows each, float16 by default), the probe-set positions ``"probe_indices"`` and labels
``"probe_labels"`` (int64, N each), and string metadata such as the epoch and representation.
Files are written atomically. A file that cannot serve as the snapshot a reader expects
(truncated, corrupt, another epoch's or probe set's, a folder in its place) is an
:class:`UnreadableSnapshot`; a resumed run captures such a snapshot again from the epoch's
checkpoint and keeps the file beside it (:func:`set_aside`).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from attnconv_pl.io.atomic import atomic_path

from ._distributed import flatten_activations, unflatten_activations
from ._points import Activations

__all__ = ["UnreadableSnapshot", "load_snapshot", "save_snapshot", "set_aside", "snapshot_nbytes", "snapshot_path"]

INDICES_KEY = "probe_indices"
LABELS_KEY = "probe_labels"
LAYER_ORDER_KEY = "layers"
SET_ASIDE_SUFFIX = ".unreadable"


class UnreadableSnapshot(ValueError):
    """A path that holds no usable snapshot although something is there.

    Attributes:
        path: the snapshot's path.
        problem: what is wrong, as the end of a sentence about the file ("is a directory, ...").
    """

    def __init__(self, path: Path, problem: str) -> None:
        self.path, self.problem = path, problem
        super().__init__(f"snapshot {path} {problem}; resuming the run captures it again from the epoch's "
                         "checkpoint (probe.py computes the epoch's numbers from that checkpoint too)")


def snapshot_path(run_dir: str | os.PathLike[str], epoch: int) -> Path:
    """``run_dir/snapshots/epoch=NNN.safetensors`` (epoch zero-padded to 3 digits)."""
    return Path(run_dir) / "snapshots" / f"epoch={epoch:03d}.safetensors"


def snapshot_nbytes(
    layer_widths: Mapping[str, tuple[int, int]],
    n: int,
    dtype_bytes: int,
    n_snapshots: int,
    capture_inputs: bool,
) -> int:
    """Bytes of activation data the snapshots of a run take.

    Args:
        layer_widths: ``{layer: (d_in, d_out)}``, widths of the stored points (after the
            representation and the projection).
        n: probe-set size N (rows per layer and side).
        dtype_bytes: bytes per stored value (2 for float16).
        n_snapshots: number of snapshot files over the run (epoch 0 included).
        capture_inputs: whether the inputs are stored beside the outputs.

    Returns:
        ``n_snapshots * n * (dtype_bytes * sum(d_out [+ d_in]) + 16)``: the 16 bytes per row
        are the int64 probe index and label; the few-KiB file headers are not counted.
    """
    width = sum(d_out + (d_in if capture_inputs else 0) for d_in, d_out in layer_widths.values())
    return n_snapshots * n * (dtype_bytes * width + 2 * 8)


def save_snapshot(
    path: str | os.PathLike[str],
    activations: Mapping[str, Mapping[str, Tensor]],
    indices: Tensor,
    labels: Tensor,
    dtype: torch.dtype = torch.float16,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write one snapshot file atomically (the folder is created if missing).

    Args:
        path: destination, normally ``snapshot_path(run_dir, epoch)``.
        activations: ``{layer: {"input"|"output": (N, d)}}``, any float dtype and device.
        indices: (N,) probe-set positions of the rows.
        labels: (N,) class labels of the rows.
        dtype: stored dtype of the activations. float16 turns values beyond +-65504 into
            inf (a warning names the layer); store bfloat16 or float32 then.
        metadata: string key/values stored in the file header (epoch, representation, ...);
            the layers' order is stored beside them and restored by :func:`load_snapshot`.

    Raises:
        ValueError: a tensor's row count differs from ``len(indices)``.
        TypeError: a metadata key or value is not a string.
    """
    n = len(indices)
    tensors = {INDICES_KEY: indices.long(), LABELS_KEY: labels.long()}
    for key, points in flatten_activations(activations).items():
        if len(points) != n:
            raise ValueError(f"{key!r} has {len(points)} rows, expected one per index ({n})")
        stored = points.detach().to(device="cpu", dtype=dtype)
        if torch.isinf(stored).any() and not torch.isinf(points).any():
            warnings.warn(
                f"snapshot {path}: {key} reaches |x| = {points.abs().max().item():.3g}, beyond "
                f"the range of {dtype}, and is stored as inf; use dtype=torch.bfloat16 or "
                "torch.float32",
                stacklevel=2,
            )
        tensors[key] = stored.contiguous()
    metadata = dict(metadata or {}) | {LAYER_ORDER_KEY: json.dumps(list(activations))}
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                f"snapshot metadata must map strings to strings, got {key!r}: {value!r}; "
                "convert numbers with str()"
            )
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata)


def load_snapshot(
    path: str | os.PathLike[str],
    *,
    epoch: int | None = None,
    indices: Tensor | None = None,
    layers: Sequence[str] | None = None,
) -> tuple[Activations, Tensor, Tensor, dict[str, str]]:
    """Read a snapshot written by :func:`save_snapshot`, optionally checked against what the
    reader expects.

    Args:
        path: the file.
        epoch: the epoch it must hold (its ``epoch`` metadata, when it has one).
        indices: the probe-set positions it must hold, in this order.
        layers: layers whose output it must hold.

    Returns:
        ``(activations, indices, labels, metadata)``: ``{layer: {side: (N, d)}}`` float32 on
        CPU, (N,) int64 probe-set positions, (N,) int64 labels, the string metadata.

    Raises:
        FileNotFoundError: nothing at ``path``.
        UnreadableSnapshot: (a ``ValueError``) something else than a complete snapshot with one
            row per probe index is there (truncated, corrupt, keys missing, a folder), or not
            the one expected (another epoch, probe set or layers).
    """
    path = Path(path)
    if not path.is_file():
        if path.exists():
            raise UnreadableSnapshot(path, "is a directory, not a snapshot file" if path.is_dir()
                                     else "is not a regular file")
        raise FileNotFoundError(
            f"snapshot {path} does not exist; expected a file written by save_snapshot "
            "(run_dir/snapshots/epoch=NNN.safetensors)"
        )
    try:
        with safe_open(path, framework="pt") as file:
            metadata = dict(file.metadata() or {})
            tensors = {key: file.get_tensor(key) for key in file.keys()}
    except (SafetensorError, OSError, RuntimeError) as err:
        raise UnreadableSnapshot(path, f"is not a readable safetensors file ({err}): it is truncated or corrupt") \
            from err
    missing = {INDICES_KEY, LABELS_KEY} - tensors.keys()
    if missing:
        raise UnreadableSnapshot(path, f"lacks {sorted(missing)}: not a snapshot file")
    stored, labels = tensors.pop(INDICES_KEY), tensors.pop(LABELS_KEY)
    rows = {key: t.shape[0] if t.dim() else 0 for key, t in {LABELS_KEY: labels, **tensors}.items()}
    uneven = next((key for key, n in rows.items() if n != len(stored)), None)
    if uneven is not None:
        raise UnreadableSnapshot(path, f"has {rows[uneven]} rows of {uneven!r} for {len(stored)} probe indices: "
                                       "not a file save_snapshot wrote")
    if epoch is not None and metadata.get("epoch", str(epoch)) != str(epoch):
        raise UnreadableSnapshot(path, f"holds epoch {metadata['epoch']}, not epoch {epoch}")
    if indices is not None and not torch.equal(stored, indices.long().cpu()):
        raise UnreadableSnapshot(path, f"holds another probe set ({len(stored)} inputs, not the run's "
                                       f"{len(indices)} in their order)")
    activations = unflatten_activations({key: t.float() for key, t in tensors.items()})
    try:
        order = list(json.loads(metadata.pop(LAYER_ORDER_KEY, "[]")))  # safetensors sorts keys
    except (ValueError, TypeError) as err:
        raise UnreadableSnapshot(path, f"has a damaged layer order in its metadata ({err})") from err
    activations = {layer: activations[layer] for layer in order if layer in activations} | activations
    absent = [layer for layer in layers or () if "output" not in activations.get(layer, {})]
    if absent:
        raise UnreadableSnapshot(path, f"lacks the output of {absent} (it holds {list(activations)})")
    return activations, stored, labels, metadata


def set_aside(path: str | os.PathLike[str]) -> Path:
    """Rename whatever is at ``path`` (a damaged file, a folder) to ``<name>.unreadable`` beside
    it (``.unreadable-2``, ``-3``, ... when taken), so that a new snapshot can be written there
    and nothing the user had is destroyed; returns the new name."""
    path = Path(path)
    target, number = path.with_name(path.name + SET_ASIDE_SUFFIX), 1
    while target.exists() or target.is_symlink():
        number += 1
        target = path.with_name(f"{path.name}{SET_ASIDE_SUFFIX}-{number}")
    os.replace(path, target)
    return target
