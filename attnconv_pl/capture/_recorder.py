"""Capture layer activations over the probe set: one point per input, per layer, per side.

A *layer* is a module named in ``model.named_modules()``. For every probed layer the forward
hooks record its *input* (the first tensor argument of ``forward``) and its *output* as points:
``to_points`` turns the tensor into one row per input, and rows wider than ``project_dim``
are mapped by a fixed seeded Gaussian random projection (the same matrix at every epoch, in
every process, after every resume), which approximately preserves pairwise distances.

Under DDP each rank captures its shard of the probe set (``shard_indices``) and
``gather_in_probe_order`` brings every rank's rows back into probe-set order.

Plain torch; the Lightning callback and ``probe.py`` build on these functions.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from attnconv_pl.errors import ConfigError

__all__ = [
    "REPRESENTATIONS",
    "ActivationRecorder",
    "Projector",
    "capture_activations",
    "flatten_activations",
    "gather_in_probe_order",
    "projection_matrix",
    "resolve_layers",
    "shard_indices",
    "to_points",
    "token_width",
    "unflatten_activations",
]

REPRESENTATIONS = ("flatten", "pool", "tokens")
"""How a layer's tensor becomes one point per input (see :func:`to_points`)."""

SIDES = ("input", "output")
"""The two sides of a layer that are captured."""

Activations = dict[str, dict[str, Tensor]]
"""``{layer: {"input": (N, d_in), "output": (N, d_out)}}``; "input" only when captured."""


def _compact_listing(names: list[str]) -> str:
    """Names grouped by their pattern with numeric parts as ``*`` (a glob that selects them)."""
    groups: dict[str, list[str]] = {}
    for name in names:
        pattern = ".".join("*" if part.isdigit() else part for part in name.split("."))
        groups.setdefault(pattern, []).append(name)
    return ", ".join(
        members[0] if len(members) == 1 else f"{pattern} (x{len(members)})"
        for pattern, members in groups.items()
    )


def resolve_layers(model: nn.Module, patterns: Iterable[str]) -> list[str]:
    """Names of the layers that ``patterns`` select in ``model.named_modules()``.

    Each pattern is an exact name or an ``fnmatch`` glob (case-sensitive, ``*`` also crosses
    dots: ``blocks.*`` selects ``blocks.0`` and ``blocks.0.attn``). The result lists the matches
    of the first pattern in module order, then those of the second, and so on, each name once.
    The model itself (the empty name) is never selected.

    Raises:
        ConfigError: a pattern matches no layer; the message lists the available names.
    """
    names = [name for name, _ in model.named_modules() if name]
    selected: dict[str, None] = {}
    for pattern in patterns:
        matches = [name for name in names if name == pattern or fnmatch.fnmatchcase(name, pattern)]
        if not matches:
            raise ConfigError(
                f"no layer matches {pattern!r}; layers are: {_compact_listing(names)}. "
                "Give exact names or glob patterns over model.named_modules()."
            )
        selected.update(dict.fromkeys(matches))
    return list(selected)


def _first_tensor(value: Any, what: str) -> Tensor:
    """``value`` if it is a tensor, else the first tensor of a tuple or list."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            if isinstance(item, Tensor):
                return item
    raise TypeError(
        f"{what} is a {type(value).__name__} holding no tensor; expected a tensor or a "
        "tuple/list whose first tensor is the activation. Choose another layer."
    )


def _check_representation(representation: str) -> None:
    if representation not in REPRESENTATIONS:
        raise ValueError(
            f"unknown representation {representation!r}; expected one of {REPRESENTATIONS}"
        )


def to_points(output: Tensor | tuple | list, representation: str = "flatten") -> Tensor:
    """One point per input from a layer's tensor: (B, ...) -> (B, d).

    A tuple or list stands for its first tensor (e.g. ``nn.MultiheadAttention`` returns
    ``(out, weights)``). Shapes are read as (B, D) vectors, (B, T, D) tokens (transformer
    convention: 3-D means tokens, so give Conv1d maps ``flatten``) and (B, C, H, W) maps
    (more spatial dims work the same way). Representations:

    - ``"flatten"``: ``x.reshape(B, -1)``, the whole activation as one vector (channel-major
      for maps).
    - ``"pool"``: mean over tokens (dim 1 of (B, T, D)) or pixels (dims 2.. of (B, C, H, W)),
      giving (B, D) or (B, C); a (B, D) vector is already pooled and returned as is.
    - ``"tokens"``: the tokens of each input concatenated in order, token-major: (B, T * D);
      maps are read as H * W tokens of C channels (pixels row-major, channels last),
      (B, H * W * C). Row ``i`` reshaped to (T, D) is input ``i``'s token cloud, and
      :class:`Projector` projects each token separately, so the token structure survives.

    Returns a tensor of the input's dtype and device (a view where possible).

    Raises:
        ValueError: unknown ``representation`` or a 0-d tensor.
        TypeError: a tuple/list without a tensor.
    """
    _check_representation(representation)
    x = _first_tensor(output, "the layer's output")
    if x.ndim == 0:
        raise ValueError("a 0-d tensor has no batch dimension; expected (B, ...)")
    if x.ndim == 1:
        return x.unsqueeze(1)
    if representation == "flatten" or x.ndim == 2:
        return x.reshape(x.shape[0], -1)
    if representation == "pool":
        return x.mean(dim=1) if x.ndim == 3 else x.mean(dim=tuple(range(2, x.ndim)))
    tokens = x if x.ndim == 3 else x.flatten(2).transpose(1, 2)
    return tokens.reshape(x.shape[0], -1)


def token_width(output: Tensor | tuple | list) -> int:
    """Width of one token of a layer's tensor: D of (B, T, D) or (B, D), C of (B, C, H, W)."""
    x = _first_tensor(output, "the layer's output")
    return 1 if x.ndim == 1 else x.shape[-1] if x.ndim == 3 else x.shape[1]


def _layer_seed(seed: int, layer: str) -> int:
    """A 63-bit generator seed from (seed, layer), stable across processes and Python runs."""
    digest = hashlib.blake2b(f"{seed}:{layer}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def projection_matrix(in_dim: int, out_dim: int, seed: int, layer: str) -> Tensor:
    """The fixed Gaussian random projection of a layer: (in_dim, out_dim) float32 on CPU.

    Entries are i.i.d. N(0, 1/out_dim), so ``x @ P`` preserves squared norms in expectation
    and pairwise distances up to a relative error of order sqrt(2 / out_dim)
    (Johnson-Lindenstrauss). The generator is seeded by a hash of ``(seed, layer)`` (not
    Python's salted ``hash``), so the matrix is the same at every epoch, in every process and
    after every resume; a layer's input and output of equal width share it.
    """
    generator = torch.Generator().manual_seed(_layer_seed(seed, layer))
    return torch.randn(in_dim, out_dim, generator=generator) / out_dim**0.5


class Projector:
    """Applies the per-layer random projections and keeps the matrices it has built.

    Points (or, for the ``tokens`` representation, each token) wider than ``project_dim`` are
    multiplied by ``projection_matrix(width, project_dim, seed, layer)``; narrower ones are
    returned unchanged. Matrices are cached per (layer, width, device): keep one Projector for
    the whole run so they are built once (a (65536, 1024) float32 matrix takes 256 MiB).
    """

    def __init__(self, project_dim: int = 1024, seed: int = 0) -> None:
        if project_dim < 1:
            raise ValueError(f"project_dim must be a positive width, got {project_dim}")
        self.project_dim = project_dim
        self.seed = seed
        self._matrices: dict[tuple[str, int, torch.device], Tensor] = {}

    def matrix(self, layer: str, in_dim: int, device: torch.device | str) -> Tensor:
        """The cached (in_dim, project_dim) projection matrix of ``layer`` on ``device``."""
        key = (layer, in_dim, torch.device(device))
        if key not in self._matrices:
            cpu_matrix = projection_matrix(in_dim, self.project_dim, self.seed, layer)
            self._matrices[key] = cpu_matrix.to(device)
        return self._matrices[key]

    def project(self, points: Tensor, layer: str, group_width: int | None = None) -> Tensor:
        """Project ``points`` (B, d) float32; each consecutive group of ``group_width`` columns
        (a token; default: the whole row) is projected separately when wider than
        ``project_dim``. Returns (B, d) unchanged or (B, d / group_width * project_dim)."""
        width = points.shape[1] if group_width is None else group_width
        if width <= self.project_dim:
            return points
        groups = points.reshape(-1, width)
        projected = groups @ self.matrix(layer, width, points.device)
        return projected.reshape(points.shape[0], -1)


def _first_input(args: tuple, kwargs: dict[str, Any], layer: str) -> Tensor:
    """The first tensor among a forward call's positional arguments, else its keywords."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, Tensor):
            return value
    raise TypeError(
        f"layer {layer!r} was called without a tensor argument, so its input cannot be "
        "captured; choose another layer or set capture_inputs=False"
    )


class ActivationRecorder(AbstractContextManager):
    """Forward hooks that record the points of chosen layers, batch after batch.

    Inside the ``with`` block every forward pass of ``model`` appends, for each layer, its
    output (and input when ``capture_inputs``) as float32 points: ``to_points`` ->
    ``Projector.project`` -> detached, computed outside autocast, on the activation's device.
    The hooks are removed on exit, also when the block raises.

    Example::

        with ActivationRecorder(model, ["blocks.*.attn"]) as recorder, torch.no_grad():
            for x in batches:
                model(x)
        points = recorder.result()   # {layer: {"input": (N, d_in), "output": (N, d_out)}}
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Iterable[str],
        *,
        representation: str = "flatten",
        projector: Projector | None = None,
        capture_inputs: bool = True,
    ) -> None:
        _check_representation(representation)
        self.model = model
        self.layers = resolve_layers(model, layers)
        self.representation = representation
        self.projector = Projector() if projector is None else projector
        self.capture_inputs = capture_inputs
        self.sides = SIDES if capture_inputs else ("output",)
        self._chunks: dict[str, dict[str, list[Tensor]]] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> ActivationRecorder:
        self._chunks = {layer: {side: [] for side in self.sides} for layer in self.layers}
        modules = dict(self.model.named_modules())
        for layer in self.layers:
            handle = modules[layer].register_forward_hook(self._hook(layer), with_kwargs=True)
            self._handles.append(handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, layer: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
            self._record(layer, "output", output)
            if self.capture_inputs:
                self._record(layer, "input", _first_input(args, kwargs, layer))

        return hook

    def _record(self, layer: str, side: str, value: Any) -> None:
        tensor = _first_tensor(value, f"the {side} of layer {layer!r}")
        group_width = token_width(tensor) if self.representation == "tokens" else None
        with torch.autocast(device_type=tensor.device.type, enabled=False):
            points = to_points(tensor.detach(), self.representation).float()
            points = self.projector.project(points, layer, group_width)
        self._chunks[layer][side].append(points)

    def result(self) -> Activations:
        """The recorded points, concatenated in batch order, on the activations' device.

        Raises:
            ValueError: nothing was recorded, or the layers recorded different numbers of
                rows (a layer called more than once per forward pass, or skipped).
        """
        result = {
            layer: {side: torch.cat(chunks) for side, chunks in sides.items() if chunks}
            for layer, sides in self._chunks.items()
        }
        rows = {
            f"{layer}/{side}": len(points)
            for layer, sides in result.items()
            for side, points in sides.items()
        }
        expected_keys = len(self.layers) * len(self.sides)
        if not rows:
            raise ValueError(
                f"no activations were recorded for layers {self.layers}; run the model's "
                "forward pass inside the recorder's `with` block"
            )
        if len(rows) < expected_keys or len(set(rows.values())) > 1:
            counts = ", ".join(f"{key}: {count}" for key, count in rows.items())
            raise ValueError(
                f"layers recorded different numbers of points ({counts}; expected "
                f"{expected_keys} entries of equal length): a layer called more than once per "
                "forward pass (a shared module) or skipped gives one point per call; choose "
                "layers that run exactly once per forward pass"
            )
        return result


def capture_activations(
    model: nn.Module,
    layers: Iterable[str],
    batches: Iterable[Tensor],
    *,
    representation: str = "flatten",
    projector: Projector | None = None,
    autocast: Callable[[], AbstractContextManager] | None = None,
    capture_inputs: bool = True,
) -> Activations:
    """Run ``model`` in eval mode without gradients over ``batches`` and return the points.

    Args:
        model: the network; every module's train/eval mode is restored afterwards.
        layers: names or glob patterns (see :func:`resolve_layers`).
        batches: input tensors, already on the model's device, in probe-set order.
        representation: see :func:`to_points`.
        projector: the run's :class:`Projector` (reuse it across epochs); default
            ``Projector(project_dim=1024, seed=0)``.
        autocast: a context-manager factory entered around the forward passes, e.g. the
            trainer's precision context, so activations are those seen in training; None for
            full precision.
        capture_inputs: also record each layer's input.

    Returns:
        ``{layer: {"input": (N, d_in), "output": (N, d_out)}}`` float32 on the model's
        device, rows in batch order, layers in the order of :func:`resolve_layers`.
    """
    training = {module: module.training for module in model.modules()}
    recorder = ActivationRecorder(
        model,
        layers,
        representation=representation,
        projector=projector,
        capture_inputs=capture_inputs,
    )
    model.eval()
    try:
        with recorder, torch.no_grad(), autocast() if autocast else nullcontext():
            for batch in batches:
                model(batch)
    finally:
        for module, mode in training.items():
            module.training = mode
    return recorder.result()


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
