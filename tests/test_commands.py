"""The installed commands (``[project.scripts]`` of pyproject.toml) are the scripts' own ``main``:
``attnconv-train`` is ``python train.py``, ``attnconv-probe`` is ``python probe.py`` and
``attnconv-study`` is ``python -m attnconv_pl.study``."""

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import probe
import train
from attnconv_pl.study import runner


def test_each_command_runs_the_main_of_its_script():
    commands = {point.name: point.load() for point in entry_points(group="console_scripts")
                if point.name.startswith("attnconv-")}
    assert commands == {"attnconv-train": train.main, "attnconv-probe": probe.main,
                        "attnconv-study": runner.main}


def test_an_installed_command_starts_and_answers_help():
    command = Path(sys.executable).parent / "attnconv-probe"
    done = subprocess.run([str(command), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: probe.py") and "--out DIR" in done.stdout
