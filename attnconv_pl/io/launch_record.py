"""What one launch of ``train.py`` found in its run directory, so that a launch that stops on bad
input can remove what it created (the directory, its ``wandb_id``, a W&B offline run, a logger's
folder) and leave no half-started run behind.

A launch that wrote a checkpoint keeps everything: its directory holds epochs. A run directory
that existed before the launch (a resume) keeps every file it had; only the paths the launch
added go, and its ``config.yaml`` is put back as it was.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from attnconv_pl.io.atomic import atomic_write_bytes

CONFIG_FILE = "config.yaml"


def _checkpoints(run_dir: Path) -> dict[Path, int]:
    """``{checkpoint file: modification time in ns}`` of every ``*.ckpt`` under ``run_dir``."""
    return {path: path.stat().st_mtime_ns for path in run_dir.rglob("*.ckpt")} if run_dir.is_dir() else {}


@dataclass(frozen=True)
class LaunchRecord:
    """The state of ``run_dir`` before a launch (take it with :meth:`before_launch`).

    Attributes:
        run_dir: the launch's run directory.
        created: the highest folder the launch creates (``run_dir`` or a folder above it); None
            when ``run_dir`` existed.
        paths: every path under ``run_dir`` before the launch.
        links: its symbolic links (W&B's ``latest-run``, ``debug.log``) and their targets.
        checkpoints: its checkpoints and their modification times before the launch.
        config: the bytes of its ``config.yaml`` before the launch (None without one).
    """

    run_dir: Path
    created: Optional[Path]
    paths: frozenset[Path]
    links: dict[Path, str]
    checkpoints: dict[Path, int]
    config: Optional[bytes]

    @classmethod
    def before_launch(cls, run_dir: Path) -> LaunchRecord:
        """Record ``run_dir`` as it is now, before the launch creates anything in it."""
        missing = [folder for folder in (run_dir, *run_dir.parents) if not folder.exists()]
        config = run_dir / CONFIG_FILE
        paths = frozenset(run_dir.rglob("*")) if run_dir.is_dir() else frozenset()
        return cls(run_dir=run_dir, created=missing[-1] if missing else None, paths=paths,
                   links={path: os.readlink(path) for path in paths if path.is_symlink()},
                   checkpoints=_checkpoints(run_dir), config=config.read_bytes() if config.is_file() else None)

    def wrote_checkpoint(self) -> bool:
        """Whether the launch wrote (or rewrote) a checkpoint: then its run directory holds epochs."""
        return _checkpoints(self.run_dir) != self.checkpoints

    def discard(self) -> None:
        """Remove what the launch created, unless it wrote a checkpoint.

        A run directory the launch created goes whole, and so do the folders above it that it
        created, as long as they are empty (another launch may have put its run directory there
        meanwhile); in a run directory that existed, the paths the launch added go, and
        ``config.yaml`` and the links it had (which W&B points at its new run) get their old
        content back.
        """
        if self.wrote_checkpoint():
            return
        if self.created is not None:
            if self.run_dir.exists():
                shutil.rmtree(self.run_dir)
            for folder in self.run_dir.parents:
                if folder != self.created and self.created not in folder.parents:
                    break  # a folder that was there before the launch
                try:
                    folder.rmdir()
                except OSError:  # not empty: another launch's run directory is in it
                    break
            return
        added = sorted(set(self.run_dir.rglob("*")) - self.paths, key=lambda path: len(path.parts))
        removed: list[Path] = []
        for path in added:
            if any(folder in path.parents for folder in removed):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
        for link, target in self.links.items():
            if not link.is_symlink() or os.readlink(link) != target:
                link.unlink(missing_ok=True)
                link.symlink_to(target)
        config = self.run_dir / CONFIG_FILE
        if self.config is not None and (not config.is_file() or config.read_bytes() != self.config):
            atomic_write_bytes(config, self.config)
