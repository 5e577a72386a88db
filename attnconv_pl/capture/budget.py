"""How many bytes a run's snapshots take, and the refusal when that is too many."""

from __future__ import annotations

from dataclasses import dataclass, replace

from attnconv_pl.errors import ConfigError

from .snapshots import snapshot_nbytes


def format_bytes(n_bytes: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:.1f} {unit}" if unit != "B" else f"{int(n_bytes)} B"
        n_bytes /= 1024
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class SnapshotBudget:
    """Snapshot storage over a whole run.

    Args:
        layer_widths: ``{layer: (d_in, d_out)}`` widths of the stored points.
        n_inputs: inputs in the probe set (N).
        bytes_per_float: 2 for float16/bfloat16, 4 for float32.
        capture_inputs: whether layer inputs are stored beside the outputs.
        every_n_epochs: probing period; epoch 0 and the last epoch are always probed.
        max_epochs: training epochs of the run.
    """

    layer_widths: dict[str, tuple[int, int]]
    n_inputs: int
    bytes_per_float: int
    capture_inputs: bool
    every_n_epochs: int
    max_epochs: int

    @property
    def n_snapshots(self) -> int:
        """Probed epochs: 0, every ``every_n_epochs``-th, and ``max_epochs``."""
        periodic = self.max_epochs // self.every_n_epochs
        return 1 + periodic + (self.max_epochs % self.every_n_epochs != 0)

    @property
    def total_bytes(self) -> int:
        return snapshot_nbytes(self.layer_widths, self.n_inputs, self.bytes_per_float, self.n_snapshots,
                               self.capture_inputs)

    def describe(self) -> str:
        return (f"{format_bytes(self.total_bytes)} ({self.n_snapshots} snapshots of {self.n_inputs} inputs, "
                f"{format_bytes(self.total_bytes / self.n_snapshots)} each)")

    def check(self, max_bytes: int) -> None:
        """Raise :class:`ConfigError` with the numbers and settings that fit when over ``max_bytes``."""
        if self.total_bytes <= max_bytes:
            return
        fits = []
        for every in range(self.every_n_epochs + 1, self.max_epochs + 1):
            if replace(self, every_n_epochs=every).total_bytes <= max_bytes:
                fits.append(f"--dynamics.every_n_epochs {every}")
                break
        per_input = self.total_bytes / self.n_inputs
        if max_bytes // per_input >= 2:
            fits.append(f"--dynamics.probe_size {int(max_bytes // per_input)}")
        fits.append("a smaller --dynamics.project_dim, --dynamics.representation pool, "
                    "or --dynamics.capture_inputs false")
        raise ConfigError(
            f"dynamics snapshots would take {self.describe()}, above max_snapshot_bytes = "
            f"{format_bytes(max_bytes)}. Settings that fit: {'; '.join(fits)}; "
            f"or raise --dynamics.max_snapshot_bytes."
        )
