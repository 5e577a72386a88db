"""Probe-set capture under DDP: each rank's shard, and its rows gathered back in probe-set order.

Under DDP each rank captures its shard of the probe set (:func:`shard_indices`) and
:func:`gather_in_probe_order` brings every rank's rows back into probe-set order; activations
travel through the collectives flattened to ``{"layer/side": points}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import Tensor

from ._points import Activations


def flatten_activations(activations: Mapping[str, Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """``{layer: {side: x}}`` -> ``{"layer/side": x}`` (module names never contain "/")."""
    return {
        f"{layer}/{side}": points
        for layer, sides in activations.items()
        for side, points in sides.items()
    }


def unflatten_activations(flat: Mapping[str, Tensor]) -> Activations:
    """``{"layer/side": x}`` -> ``{layer: {side: x}}``, the inverse of flatten_activations."""
    activations: Activations = {}
    for key, points in flat.items():
        layer, _, side = key.rpartition("/")
        activations.setdefault(layer, {})[side] = points
    return activations


def shard_indices(n_total: int, rank: int, world_size: int) -> Tensor:
    """The probe-set positions a rank holds, as ``DistributedSampler(shuffle=False)`` splits.

    Positions ``0..n_total-1`` are padded by wrapping around to a multiple of ``world_size``
    (``ceil(n_total / world_size) * world_size``), then rank ``r`` takes ``r::world_size``.
    So every rank holds ``ceil(n_total / world_size)`` positions, some repeated.
    Returns an int64 tensor on CPU.
    """
    if n_total < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"need n_total >= 1 and 0 <= rank < world_size, got n_total={n_total}, "
            f"rank={rank}, world_size={world_size}"
        )
    total_size = -(-n_total // world_size) * world_size
    return (torch.arange(total_size) % n_total)[rank::world_size]


def _gather_stacked(all_gather: Callable[[Tensor], Tensor], tensor: Tensor) -> Tensor:
    """``all_gather`` as (world_size, *tensor.shape); a single process may return the tensor
    unchanged (as ``LightningModule.all_gather`` does) and is given the leading dim here."""
    gathered = all_gather(tensor)
    return gathered.unsqueeze(0) if gathered.ndim == tensor.ndim else gathered


def _pad_rows(tensor: Tensor, length: int, fill: float = 0) -> Tensor:
    """``tensor`` (n, ...) padded with ``fill`` along dim 0 to (length, ...)."""
    padding = tensor.new_full((length - len(tensor), *tensor.shape[1:]), fill)
    return torch.cat([tensor, padding])


def gather_in_probe_order(
    local: Mapping[str, Tensor],
    local_indices: Tensor,
    all_gather: Callable[[Tensor], Tensor],
    n_total: int,
) -> dict[str, Tensor]:
    """Gather every rank's rows and put them in probe-set order, one row per position.

    Each rank holds, per key, the rows of its shard of the probe set, and ``local_indices``,
    the probe-set position of each row. Shards may differ in length (they are padded to the
    longest and trimmed after gathering) and may repeat positions (``DistributedSampler``
    pads by repeating; the first occurrence is kept). Every rank must call this function
    with the same keys, as it makes ``2 + len(local)`` collective calls, in sorted key order.

    Args:
        local: ``{key: (n_local, ...)}``, every tensor with ``n_local`` rows, of the same
            dtype and trailing shape on every rank (e.g. ``flatten_activations(...)``).
        local_indices: (n_local,) integer positions in ``[0, n_total)``, on the device the
            collective needs (CUDA for NCCL).
        all_gather: ``t -> (world_size, *t.shape)`` as ``LightningModule.all_gather`` or a
            stacked ``torch.distributed.all_gather``; returning ``t`` itself means one process.
        n_total: the probe-set size N.

    Returns:
        ``{key: (n_total, ...)}`` with row ``i`` the activation of probe-set position ``i``,
        the same on every rank, keys in ``local``'s order.

    Raises:
        ValueError: a key's row count differs from ``len(local_indices)``, or the gathered
            positions leave out or overshoot some of ``0..n_total-1``.
    """
    n_local = len(local_indices)
    for key, rows in local.items():
        if len(rows) != n_local:
            raise ValueError(
                f"{key!r} has {len(rows)} rows but local_indices has {n_local}; every "
                "tensor needs one row per local probe-set position"
            )
    lengths_tensor = torch.tensor([n_local], device=local_indices.device)
    lengths = _gather_stacked(all_gather, lengths_tensor).reshape(-1).tolist()
    longest = max(lengths)

    def gather_rows(tensor: Tensor, fill: float = 0) -> Tensor:
        gathered = _gather_stacked(all_gather, _pad_rows(tensor, longest, fill))
        return torch.cat([gathered[rank, :length] for rank, length in enumerate(lengths)])

    positions = gather_rows(local_indices.long(), fill=-1).cpu().numpy()
    unique, first_row = np.unique(positions, return_index=True)
    expected = np.arange(n_total)
    if len(unique) != n_total or not np.array_equal(unique, expected):
        missing = np.setdiff1d(expected, unique).tolist()
        outside = np.setdiff1d(unique, expected).tolist()
        raise ValueError(
            f"the ranks hold {len(unique)} distinct probe-set positions, expected exactly "
            f"0..{n_total - 1}; missing: {missing[:10]}, out of range: {outside[:10]}. Shard "
            "the probe set with shard_indices() or a DistributedSampler over all of it."
        )
    order = torch.from_numpy(first_row)
    gathered = {key: gather_rows(local[key]) for key in sorted(local)}
    return {key: gathered[key][order.to(gathered[key].device)] for key in local}
