"""Atomic file writes: a reader sees the old file or the complete new one, never a partial one.

Everything attnconv-pl writes (snapshots, CSV, JSON, figures) goes through these helpers: the
content is written to a temporary file in the destination's folder, flushed to disk, and then
``os.replace``'d onto the destination (an atomic rename on POSIX and Windows).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text"]


def _fsync_path(path: Path) -> None:
    """Flush a file's (or a folder's) content and metadata to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically.

    The temporary file lies in ``path``'s folder (created if missing), is hidden, and keeps
    ``path``'s suffix so that writers inferring the format from the name (``savefig``) work:
    ``.fig.tmp-1a2b3c4d.png`` for ``fig.png``. The body must create the file. On success the
    file is fsync'ed and renamed onto ``path``; if the body raises, the temporary file is
    removed, ``path`` is left as it was, and the exception propagates.

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
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if os.name == "posix":
        _fsync_path(path.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically, encoded as given, newlines written as they are."""
    atomic_write_bytes(path, text.encode(encoding))
