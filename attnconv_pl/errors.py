"""Errors caused by the user's input (config, paths, data), reported without a traceback, and the
check of a folder the user names for output.

One hierarchy: every error a user can fix is a :class:`ConfigError` (a ``ValueError``);
``train.py``, ``probe.py`` and the study runner print it as one ``error:`` line and exit with 2.
"""

from __future__ import annotations

import os
from pathlib import Path


class ConfigError(ValueError):
    """Bad input that the user can fix; the message says what was wrong and what to do.

    ``train.py`` and ``probe.py`` print it as one ``error: ...`` line and exit with status 2.
    """


class ProbeInputError(ConfigError):
    """An input ``probe.py`` cannot use (a path, a checkpoint, a layer pattern, a dataset).

    The message names the offending path or value, says what was expected and what to do.
    """


class StudyError(ConfigError):
    """A study file or command line the study runner cannot use; the message says what to do."""


def check_creatable_dir(path: Path, option: str, purpose: str) -> None:
    """Check, before any work, that ``path`` is a folder or can be created as one.

    Args:
        path: the folder the user named.
        option: the command-line option that named it, for the message (``--out``).
        purpose: what the folder is for, for the message (``the folder of the report``).

    Raises:
        ConfigError: ``path`` or a folder above it is a file, or the nearest existing folder is
            not writable.
    """
    existing = next(part for part in (path, *path.parents) if part.exists())
    if not existing.is_dir():
        problem = "is a file, not a folder" if existing == path else f"cannot be created: {existing} is a file"
        advice = "give another path, or move the file away"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem, advice = f"cannot be written: {existing} is not writable", "give a path in a folder you can write to"
    else:
        return
    raise ConfigError(f"{option} {path} {problem}; {option} names {purpose} (created when missing): {advice}")
