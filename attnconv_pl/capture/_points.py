"""One point per input from a layer's tensor, by a reducer chosen by name.

A *reducer* maps a layer's tensor (B, ...) with at least two dimensions to points (B, d). The
reducers are registered by name with :func:`register_reducer` (the name is the
``representation`` of the capture settings) and say how their points are projected. A new
representation is one decorated function here, above ``REPRESENTATIONS``::

    @register_reducer("channel_norms", projection=None)
    def _channel_norms(x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C), stored unprojected
        return x.flatten(2).norm(dim=2)

(that one is registered: the stiffness analysis reads per-channel norms).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor

Projection = Literal["point", "token"] | None
"""How a reducer's points are projected: ``"point"`` projects each point wider than
``project_dim`` as a whole, ``"token"`` each token (of :func:`token_width` columns) separately,
None stores the points as reduced."""

SIDES = ("input", "output")
"""The two sides of a layer that are captured."""

Activations = dict[str, dict[str, Tensor]]
"""``{layer: {"input": (N, d_in), "output": (N, d_out)}}``; "input" only when captured."""


@dataclass(frozen=True)
class Reducer:
    """A registered reduction (B, ...) -> (B, d), called like the function it wraps."""

    reduce: Callable[[Tensor], Tensor]
    projection: Projection = "point"

    def __call__(self, x: Tensor) -> Tensor:
        return self.reduce(x)


REDUCERS: dict[str, Reducer] = {}
"""The registered reducers by representation name (see :func:`register_reducer`)."""


def register_reducer(
    name: str, *, projection: Projection = "point"
) -> Callable[[Callable[[Tensor], Tensor]], Callable[[Tensor], Tensor]]:
    """Register a function ``(B, ...) -> (B, d)`` as the representation ``name`` (a decorator).

    The function receives the layer's tensor detached, with at least two dimensions (1-D
    tensors become (B, 1) before), of the activation's dtype and device; it returns one row
    per input. ``projection`` says how :class:`Projector` maps the rows (see ``Projection``).
    The function is returned unchanged; ``REDUCERS.pop(name)`` unregisters it.

    Raises:
        ValueError: ``name`` is registered to another function, or ``projection`` is unknown.
    """
    if projection not in ("point", "token", None):
        raise ValueError(f"unknown projection {projection!r}; expected 'point', 'token' or None")

    def decorator(reduce: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
        registered = REDUCERS.get(name)
        if registered is not None and registered.reduce is not reduce:
            raise ValueError(
                f"a reducer named {name!r} is already registered (by {registered.reduce.__module__}); "
                "register the new reducer under a different name"
            )
        REDUCERS[name] = Reducer(reduce, projection)
        return reduce

    return decorator


def reducer_of(representation: str) -> Reducer:
    """The reducer registered as ``representation``; ValueError naming the registered ones."""
    reducer = REDUCERS.get(representation)
    if reducer is None:
        raise ValueError(
            f"unknown representation {representation!r}; expected one of {tuple(REDUCERS)} "
            "(add one with attnconv_pl.capture.register_reducer)"
        )
    return reducer


@register_reducer("flatten")
def _flatten(x: Tensor) -> Tensor:
    """``x.reshape(B, -1)``: the whole activation as one vector (channel-major for maps)."""
    return x.reshape(x.shape[0], -1)


@register_reducer("pool")
def _pool(x: Tensor) -> Tensor:
    """Mean over tokens (dim 1 of (B, T, D)) or pixels (dims 2.. of (B, C, H, W)): (B, D) or
    (B, C); a (B, D) vector is already pooled."""
    if x.ndim == 2:
        return x
    return x.mean(dim=1) if x.ndim == 3 else x.mean(dim=tuple(range(2, x.ndim)))


@register_reducer("tokens", projection="token")
def _tokens(x: Tensor) -> Tensor:
    """The tokens of each input concatenated in order, token-major: (B, T * D); maps are read
    as H * W tokens of C channels (pixels row-major, channels last), (B, H * W * C)."""
    tokens = x if x.ndim <= 3 else x.flatten(2).transpose(1, 2)
    return tokens.reshape(x.shape[0], -1)


@register_reducer("channel_norms", projection=None)
def _channel_norms(x: Tensor) -> Tensor:
    """Per channel, the L2 norm over positions: (B, C, ...) -> (B, C), stored unprojected (the
    norms over inputs and positions follow as the norms of these rows, per column)."""
    return x.flatten(2).norm(dim=2) if x.ndim > 2 else x.abs()


REPRESENTATIONS = tuple(REDUCERS)
"""The representations defined here (see :func:`to_points`); ``REDUCERS`` also holds any
registered later."""


def first_tensor(value: Any, what: str) -> Tensor:
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


def to_points(output: Tensor | tuple | list, representation: str = "flatten") -> Tensor:
    """One point per input from a layer's tensor: (B, ...) -> (B, d).

    A tuple or list stands for its first tensor (e.g. ``nn.MultiheadAttention`` returns
    ``(out, weights)``). Shapes are read as (B, D) vectors, (B, T, D) tokens (transformer
    convention: 3-D means tokens, so give Conv1d maps ``flatten``) and (B, C, H, W) maps
    (more spatial dims work the same way); a (B,) tensor is (B, 1). ``representation`` names
    a reducer of ``REDUCERS``; those defined here:

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
    reducer = reducer_of(representation)
    x = first_tensor(output, "the layer's output")
    if x.ndim == 0:
        raise ValueError("a 0-d tensor has no batch dimension; expected (B, ...)")
    if x.ndim == 1:
        return x.unsqueeze(1)
    return reducer(x)


def token_width(output: Tensor | tuple | list) -> int:
    """Width of one token of a layer's tensor: D of (B, T, D) or (B, D), C of (B, C, H, W)."""
    x = first_tensor(output, "the layer's output")
    return 1 if x.ndim == 1 else x.shape[-1] if x.ndim == 3 else x.shape[1]
