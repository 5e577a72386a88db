"""Input validation shared by every probe: one checker, one message format."""

import warnings

import numpy as np
import torch


class DegenerateInputWarning(RuntimeWarning):
    """Legitimate but degenerate activations (duplicates, a constant layer) changed or voided a probe."""


def warn_degenerate(message: str) -> None:
    """Emit a :class:`DegenerateInputWarning` attributed to the caller of the public probe."""
    warnings.warn(message, DegenerateInputWarning, stacklevel=3)


def as_points(x, name: str, *, min_points: int = 1, hint: str = "") -> torch.Tensor:
    """Check that ``x`` is a finite (n, d) floating tensor with n >= ``min_points``; return it.

    float16 / bfloat16 inputs (e.g. stored snapshots) are returned as float32, the precision the
    probes compute in; float32 and float64 are returned unchanged, on their device.

    Raises:
        ValueError: naming ``name``, the shape seen and what is needed.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor of shape (n points, d features), got {type(x).__name__}")
    needed = f"a 2-D floating tensor (n points, d features) with n >= {min_points} and finite values"
    if x.ndim != 2 or x.shape[0] < min_points or x.shape[1] < 1:
        raise ValueError(f"{name}: got shape {tuple(x.shape)}, expected {needed}. {hint}".rstrip())
    if not x.is_floating_point():
        raise ValueError(f"{name}: got dtype {x.dtype}, expected {needed}; convert with .float()")
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).any(dim=1).sum())
        raise ValueError(f"{name}: {bad} of {x.shape[0]} rows hold NaN or inf, expected {needed}")
    return x


def require_same(x: torch.Tensor, y: torch.Tensor, names: tuple[str, str], axis: int) -> None:
    """Require ``x.shape[axis] == y.shape[axis]`` (axis 0: the same inputs, axis 1: the same width)."""
    if x.shape[axis] != y.shape[axis]:
        what = "number of points (rows are the same inputs)" if axis == 0 else "width d"
        raise ValueError(
            f"{names[0]} has shape {tuple(x.shape)} and {names[1]} has shape {tuple(y.shape)}: "
            f"they must have the same {what}"
        )


def as_diagram(diagram, name: str) -> np.ndarray:
    """Check a persistence diagram and return its off-diagonal points as a float64 (m, 2) array.

    Accepts a numpy array, a torch tensor or a nested list of (birth, death) pairs; an empty
    diagram may have shape (0, 2) or (0,). Points on the diagonal (death == birth) are dropped:
    they cost nothing in any diagram distance.

    Raises:
        ValueError: not (m, 2), non-finite values (drop essential classes first), or death < birth.
    """
    if isinstance(diagram, torch.Tensor):
        diagram = diagram.detach().cpu().numpy()
    points = np.asarray(diagram, dtype=np.float64)
    if points.shape == (0,):
        return np.zeros((0, 2))
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"{name}: got shape {points.shape}, expected (m, 2) (birth, death) pairs")
    if not np.isfinite(points).all():
        raise ValueError(
            f"{name}: holds infinite or NaN values, expected finite (birth, death) pairs; "
            "drop essential classes (infinite deaths) first, as persistence_diagrams does"
        )
    if (points[:, 1] < points[:, 0]).any():
        raise ValueError(f"{name}: some deaths precede their births, expected death >= birth")
    return points[points[:, 1] > points[:, 0]]
