"""Atomic file writes: a reader sees the old file or the complete new one, never a partial one.

Everything attnconv-pl writes (snapshots, CSV, JSON, figures) goes through these helpers: the
content is written to a temporary file in the destination's folder, flushed to disk, and then
``os.replace``'d onto the destination (an atomic rename on POSIX and Windows). A write that finds
the disk full raises :class:`DiskFullError`, which names the file, its folder's free space and
the space the file needs.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

__all__ = ["DiskFullError", "atomic_path", "atomic_write_bytes", "atomic_write_text", "disk_full_cause", "free_bytes",
           "mebibytes"]

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_DISK_FULL_WORDS = ("No space left on device", "Disk quota exceeded")
"""How libraries that raise their own errors (safetensors, torch) say that the disk is full."""


def disk_full_cause(error: BaseException) -> Optional[BaseException]:
    """The first error of ``error`` and the errors it was raised from that says the disk (or the
    quota) is full: an ``OSError`` with ``ENOSPC``/``EDQUOT``, or a library's error with the
    system's words for it (safetensors: ``SafetensorError: ... No space left on device (os error
    28)``); None when none does."""
    seen: list[BaseException] = []
    current: Optional[BaseException] = error
    while current is not None and all(current is not other for other in seen):
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            return current
        if any(words in str(current) for words in _DISK_FULL_WORDS):
            return current
        seen.append(current)
        current = current.__cause__ or current.__context__
    return None


def free_bytes(folder: Path) -> Optional[int]:
    """The bytes free on the disk of ``folder`` (or of its nearest existing parent); None if unknown."""
    existing = next((part for part in (folder, *folder.parents) if part.exists()), None)
    try:
        return shutil.disk_usage(existing).free if existing is not None else None
    except OSError:
        return None


def mebibytes(n_bytes: int) -> str:
    """``1572864`` -> ``'1.5 MiB'``."""
    return f"{n_bytes / 2**20:.1f} MiB"


class DiskFullError(OSError):
    """An atomic write that failed because the disk is full; nothing of it was left behind.

    Attributes:
        path: the file that was being written.
        needed: its size in bytes when known (the content given), else None.
        written: the bytes written before the disk filled (a lower bound of the size).
        free: the bytes free on its disk after the failed write was removed (None if unknown).
    """

    def __init__(self, path: Path, needed: Optional[int], written: int) -> None:
        self.path, self.needed, self.written = path, needed, written
        self.free = free_bytes(path.parent)
        super().__init__(errno.ENOSPC, str(self))

    def __str__(self) -> str:
        size = (f"it needs {mebibytes(self.needed)}" if self.needed is not None
                else f"it needs more than the {mebibytes(self.written)} written" if self.written
                else "its size is unknown")
        free = f"{mebibytes(self.free)} free" if self.free is not None else "free space unknown"
        return f"no space left on device for {self.path} ({size}; {free} in {self.path.parent})"


def _fsync_path(path: Path) -> None:
    """Flush a file's (or a folder's) content and metadata to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike[str], size: Optional[int] = None) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically.

    The temporary file lies in ``path``'s folder (created if missing), is hidden, and keeps
    ``path``'s suffix so that writers inferring the format from the name (``savefig``) work:
    ``.fig.tmp-1a2b3c4d.png`` for ``fig.png``. The body must create the file. On success the
    file is fsync'ed and renamed onto ``path``; if the body raises, the temporary file is
    removed, ``path`` is left as it was, and the exception propagates: as a
    :class:`DiskFullError` when it says the disk is full (``size``, the bytes of the content
    when the caller knows them, is named in its message).

    Example::

        with atomic_path(run_dir / "curve.png") as tmp:
            figure.savefig(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(
                f"atomic write of {path}: the body of atomic_path() did not create {tmp}; "
                "write the content to the yielded path"
            )
        _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException as error:
        written = tmp.stat().st_size if tmp.is_file() else 0
        tmp.unlink(missing_ok=True)
        if isinstance(error, Exception) and not isinstance(error, DiskFullError) and disk_full_cause(error) is not None:
            raise DiskFullError(path, size, written) from error
        raise
    if os.name == "posix":
        _fsync_path(path.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path, size=len(data)) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically, encoded as given, newlines written as they are."""
    atomic_write_bytes(path, text.encode(encoding))
