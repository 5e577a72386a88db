"""Forward hooks that record chosen layers' points over batches, and the capture run."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from ._layers import resolve_layers
from ._points import SIDES, Activations, first_tensor, reducer_of, to_points, token_width
from ._projection import Projector


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
    ``Projector.project`` (as the representation's reducer says) -> detached, computed outside
    autocast, on the activation's device.
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
        self._projection = reducer_of(representation).projection
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
        tensor = first_tensor(value, f"the {side} of layer {layer!r}")
        with torch.autocast(device_type=tensor.device.type, enabled=False):
            points = to_points(tensor.detach(), self.representation).float()
            if self._projection is not None:
                group_width = token_width(tensor) if self._projection == "token" else None
                points = self.projector.project(points, layer, group_width)
        self._chunks[layer][side].append(points)

    def result(self) -> Activations:
        """The recorded points, concatenated in batch order, on the activations' device.

        Raises:
            ValueError: nothing was recorded, or a layer never ran or layers recorded different numbers of
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
            never = [layer for layer in self.layers if not result[layer]]
            found = [f"never ran: {', '.join(never)}"] if never else []
            if len(set(rows.values())) > 1:
                found.append("points per layer: " + ", ".join(f"{key}: {count}" for key, count in rows.items()))
            raise ValueError(
                f"layers ran other than once per forward pass ({'; '.join(found)}): a layer skipped "
                "in the forward pass gives no points and one called more than once (a shared module) "
                "one point per call; choose layers that run exactly once per forward pass"
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
