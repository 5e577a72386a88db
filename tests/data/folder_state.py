"""What a test needs to see that a data folder was left untouched."""

from pathlib import Path


def folder_state(folder) -> dict:
    """Every file below ``folder`` with its size and modification time (ns)."""
    return {path: (path.stat().st_size, path.stat().st_mtime_ns) for path in Path(folder).rglob("*") if path.is_file()}
