"""The fixed seeded Gaussian random projection of wide points, one matrix per layer."""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor


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
