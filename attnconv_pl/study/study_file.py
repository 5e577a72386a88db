"""A study file (``configs/studies/<name>.yaml``, see :mod:`attnconv_pl.study.runner`): its
``train.py`` config, variants, ``probe.py`` flags and SLURM resources, read and checked
(:func:`load_study`), or found from the ``train.py`` config it names (:func:`resolve_study`)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from attnconv_pl.errors import StudyError
from attnconv_pl.study.launchers import SLURM_KEYS

STUDIES_FOLDER = "studies"
"""Study files of the configs in a folder live in its ``studies/`` subfolder."""
STUDY_KEYS = ("config", "variants", "probe", "slurm")
VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Study:
    """A study file: a ``train.py`` config and its variants.

    Attributes:
        name: the study file's stem; the experiment name of its runs and the report's folder name.
        path: the study file.
        config: the ``train.py`` config every variant starts from.
        variants: ``{variant name: train.py flags}`` in file order.
        probe_flags: extra flags of the ``probe.py`` call.
        slurm: the ``slurm:`` mapping, resources of ``--launcher slurm`` (``launchers.SLURM_KEYS``).
    """

    name: str
    path: Path
    config: Path
    variants: dict[str, tuple[str, ...]]
    probe_flags: tuple[str, ...] = ()
    slurm: Mapping[str, Any] = field(default_factory=dict)


class StudyFileLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s YAML, except that ``12:00:00`` stays a string (SLURM's time format), not
    the base-60 integer 43200 of YAML 1.1."""


StudyFileLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:int"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
StudyFileLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"))


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """The YAML mapping in ``path``.

    Raises:
        StudyError: the file is missing, not YAML, or not a mapping.
    """
    if not path.is_file():
        raise StudyError(f"{path} does not exist; give a study file such as "
                         "configs/studies/attention_vs_conv_digits.yaml")
    try:
        content = yaml.load(path.read_text(), Loader=StudyFileLoader)
    except yaml.YAMLError as error:
        raise StudyError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(content, dict):
        raise StudyError(f"{path} is not a YAML mapping; a study file has the keys {', '.join(STUDY_KEYS)}")
    return content


def flag_list(value: Any, where: str) -> tuple[str, ...]:
    """Command-line tokens from a YAML list of scalars (numbers and booleans written as on a command line).

    Raises:
        StudyError: ``value`` is not a list of scalars.
    """
    if not isinstance(value, list) or not all(isinstance(item, (str, int, float, bool)) for item in value):
        raise StudyError(f"{where} must be a list of command-line flags and values, e.g. "
                         f"[--model.init_args.arch, conv_net]; got {value!r}")
    return tuple(str(item).lower() if isinstance(item, bool) else str(item) for item in value)


def load_study(path: Path) -> Study:
    """Read and check a study file (see the module docstring for its keys).

    Raises:
        StudyError: a key is missing or unknown, the config does not exist, a variant name is not
            usable in a run id, or flags are not a list.
    """
    content = read_yaml_mapping(path)
    unknown = sorted(set(content) - set(STUDY_KEYS))
    missing = [key for key in ("config", "variants") if key not in content]
    if unknown or missing:
        problem = f"unknown key(s) {', '.join(unknown)}" if unknown else f"no {' and no '.join(missing)}"
        hint = " (it looks like a train.py config: give its study file instead)" if "trainer" in content else ""
        raise StudyError(f"{path} has {problem}{hint}; a study file has `config:` (a train.py config), "
                         "`variants:` ({name: [train.py flags]}) and optionally `probe:` ([probe.py flags]) "
                         f"and `slurm:` ({{{', '.join(SLURM_KEYS)}}})")
    config = Path(os.path.normpath(path.parent / str(content["config"])))
    if not config.is_file():
        raise StudyError(f"{path}: config {content['config']} does not exist ({config.resolve()}); "
                         "paths in a study file are relative to the study file")
    variants = content["variants"]
    if not isinstance(variants, dict) or not variants:
        raise StudyError(f"{path}: variants must be a mapping {{name: [train.py flags]}} with at least one entry")
    for name in variants:
        if not VARIANT_NAME.match(str(name)):
            raise StudyError(f"{path}: variant name {name!r} cannot be part of a run id; use letters, digits, "
                             "'_', '.' and '-'")
    slurm = content.get("slurm") or {}
    if not isinstance(slurm, dict):
        raise StudyError(f"{path}: slurm must be a mapping of job resources ({', '.join(SLURM_KEYS)}); got {slurm!r}")
    return Study(
        name=path.stem, path=path, config=config,
        variants={str(name): flag_list(flags or [], f"{path}: variant {name}") for name, flags in variants.items()},
        probe_flags=flag_list(content.get("probe") or [], f"{path}: probe"), slurm=slurm,
    )


def resolve_study(path: Path) -> Study:
    """The study of ``path``: a study file, or a ``train.py`` config named by exactly one study
    file in the ``studies/`` folder beside it.

    Raises:
        StudyError: the file is neither, or several study files name the config.
    """
    content = read_yaml_mapping(path)
    is_train_config = "trainer" in content and "variants" not in content
    if not is_train_config:
        return load_study(path)
    config = path.resolve()
    folder = path.parent / STUDIES_FOLDER
    naming = [candidate for candidate in sorted(folder.glob("*.yaml"))
              if (candidate.parent / str(read_yaml_mapping(candidate).get("config", ""))).resolve() == config]
    if len(naming) != 1:
        found = f"several study files name it: {', '.join(map(str, naming))}" if naming else \
            f"no study file in {folder}/ names it"
        raise StudyError(f"{path} is a train.py config and {found}; give a study file with --config, or write one "
                         f"({folder}/<name>.yaml with `config: ../{path.name}` and `variants:`)")
    return load_study(naming[0])
