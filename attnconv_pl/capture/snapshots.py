"""Per-epoch snapshots of probe-set activations: one safetensors file per probed epoch.

A snapshot ``run_dir/snapshots/epoch=NNN.safetensors`` holds, for every probed layer, the
points of its output (and input) under the keys ``"{layer}/output"`` and ``"{layer}/input"``
(N rows each, float16 by default), the probe-set positions ``"probe_indices"`` and labels
``"probe_labels"`` (int64, N each), and string metadata such as the epoch and representation.
Files are written atomically.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from attnconv_pl.atomic import atomic_path
from ._distributed import flatten_activations, unflatten_activations
from ._points import Activations

__all__ = ["load_snapshot", "save_snapshot", "snapshot_nbytes", "snapshot_path"]

INDICES_KEY = "probe_indices"
LABELS_KEY = "probe_labels"
LAYER_ORDER_KEY = "layers"


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
) -> tuple[Activations, Tensor, Tensor, dict[str, str]]:
    """Read a snapshot written by :func:`save_snapshot`.

    Returns:
        ``(activations, indices, labels, metadata)``: ``{layer: {side: (N, d)}}`` float32 on
        CPU, (N,) int64 probe-set positions, (N,) int64 labels, the string metadata.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a complete snapshot (truncated, corrupt, keys missing).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"snapshot {path} does not exist; expected a file written by save_snapshot "
            "(run_dir/snapshots/epoch=NNN.safetensors)"
        )
    try:
        with safe_open(path, framework="pt") as file:
            metadata = dict(file.metadata() or {})
            tensors = {key: file.get_tensor(key) for key in file.keys()}
    except (SafetensorError, OSError, RuntimeError) as err:
        raise ValueError(
            f"snapshot {path} is not a readable safetensors file ({err}); it is truncated or "
            "corrupt: delete it and recompute it from the epoch's checkpoint with probe.py"
        ) from err
    missing = {INDICES_KEY, LABELS_KEY} - tensors.keys()
    if missing:
        raise ValueError(f"snapshot {path} lacks {sorted(missing)}; not a snapshot file")
    indices, labels = tensors.pop(INDICES_KEY), tensors.pop(LABELS_KEY)
    activations = unflatten_activations({key: t.float() for key, t in tensors.items()})
    order = json.loads(metadata.pop(LAYER_ORDER_KEY, "[]"))  # safetensors sorts keys
    activations = {layer: activations[layer] for layer in order if layer in activations} | activations
    return activations, indices, labels, metadata
