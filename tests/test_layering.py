"""The house has floors: every import (lazy ones inside functions included) goes from a room to a
room below it, so there are no circles between rooms. A room is a subpackage of ``attnconv_pl``,
one of its top-level modules, or the ``callbacks`` package. Checked on the source, import by
import; the checker itself is tested on small made-up packages with a circle and an upward import.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FLOORS = (
    "attnconv_pl.errors",
    "attnconv_pl.models",
    "attnconv_pl.io",
    "attnconv_pl.module",
    "attnconv_pl.capture",
    "attnconv_pl.probes",
    "attnconv_pl.data",
    "attnconv_pl.analyses",
    "attnconv_pl.reports",
    "attnconv_pl.offline",
    "attnconv_pl.heads",
    "attnconv_pl.api",
    "callbacks",
    "attnconv_pl.cli",
    "attnconv_pl.study",
)
"""The rooms from the ground floor up: a room may import only rooms listed before it."""

PACKAGES = ("attnconv_pl", "callbacks")


def module_files(root: Path, packages=PACKAGES) -> dict[str, Path]:
    """``{dotted module name: file}`` of every module of ``packages`` under ``root``."""
    modules = {}
    for package in packages:
        for path in (root / package).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_names(module: str, path: Path) -> set[str]:
    """Every name ``module`` imports anywhere in its file (relative imports resolved), as the
    dotted module and, for ``from X import Y``, also ``X.Y`` (Y may be a submodule)."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            source = ".".join(base + ([node.module] if node.module else []))
            names |= {source} | {f"{source}.{alias.name}" for alias in node.names}
    return names


def room_of(module: str) -> str:
    """The room of a dotted module name: ``callbacks``, or ``attnconv_pl.<first part>``."""
    parts = module.split(".")
    return parts[0] if parts[0] != "attnconv_pl" else ".".join(parts[:2])


def room_arrows(root: Path, packages=PACKAGES) -> dict[tuple[str, str], str]:
    """``{(importing room, imported room): an example 'module imports name'}`` between different
    rooms of the project's own modules (the package root ``attnconv_pl`` itself is no room)."""
    modules = module_files(root, packages)
    arrows = {}
    for module, path in sorted(modules.items()):
        for name in sorted(imported_names(module, path)):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name in ("", "attnconv_pl") or module == "attnconv_pl":
                continue
            source, target = room_of(module), room_of(name)
            if source != target:
                arrows.setdefault((source, target), f"{module} imports {name}")
    return arrows


def circles(arrows) -> list[list[str]]:
    """The groups of rooms that reach each other through imports (strongly connected, more than one room)."""
    rooms = sorted({room for arrow in arrows for room in arrow})
    reach = {room: {target for source, target in arrows if source == room} for room in rooms}
    for middle in rooms:  # transitive closure (Floyd-Warshall on a few rooms)
        for room in rooms:
            if middle in reach[room]:
                reach[room] |= reach[middle]
    groups = {frozenset([room] + [other for other in rooms if other in reach[room] and room in reach[other]])
              for room in rooms}
    return sorted(sorted(group) for group in groups if len(group) > 1)


def wrong_arrows(arrows, floors=FLOORS) -> list[str]:
    """Imports of a room that is not below the importing one, and rooms missing from ``floors``."""
    level = {room: index for index, room in enumerate(floors)}
    problems = [f"{room} is on no floor: add it to FLOORS in tests/test_layering.py"
                for room in sorted({room for arrow in arrows for room in arrow} - set(level))]
    return problems + [f"upward: {example} ({source} is below {target})"
                       for (source, target), example in sorted(arrows.items())
                       if source in level and target in level and level[target] > level[source]]


def test_the_project_has_no_circles_and_no_upward_imports():
    arrows = room_arrows(REPO)
    assert circles(arrows) == []
    assert wrong_arrows(arrows) == []
    assert set(FLOORS) == {room for arrow in arrows for room in arrow}, "a floor without imports: remove it"


def write_package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_lazy_upward_import_and_the_circle_it_makes_are_found(tmp_path):
    write_package(tmp_path, {
        "attnconv_pl/__init__.py": "",
        "attnconv_pl/errors.py": "",
        "attnconv_pl/io/__init__.py": "",
        "attnconv_pl/io/atomic.py": "from attnconv_pl.errors import X\n",
        "attnconv_pl/study/__init__.py": "",
        "attnconv_pl/study/runner.py": "from ..io import atomic\n",
        "callbacks/__init__.py": "import attnconv_pl.io.atomic\n",
    })
    floors = ("attnconv_pl.errors", "attnconv_pl.io", "callbacks", "attnconv_pl.study")
    assert circles(room_arrows(tmp_path)) == []
    assert wrong_arrows(room_arrows(tmp_path), floors) == []

    (tmp_path / "attnconv_pl/io/atomic.py").write_text(
        "from attnconv_pl.errors import X\n\ndef later():\n    from attnconv_pl.study.runner import main\n")
    arrows = room_arrows(tmp_path)
    assert circles(arrows) == [["attnconv_pl.io", "attnconv_pl.study"]]
    assert wrong_arrows(arrows, floors) == [
        "upward: attnconv_pl.io.atomic imports attnconv_pl.study.runner (attnconv_pl.io is below attnconv_pl.study)"]


def test_a_room_on_no_floor_is_named(tmp_path):
    write_package(tmp_path, {"attnconv_pl/__init__.py": "", "attnconv_pl/errors.py": "",
                             "attnconv_pl/extra.py": "from . import errors\n", "callbacks/__init__.py": ""})
    assert wrong_arrows(room_arrows(tmp_path), ("attnconv_pl.errors",)) == [
        "attnconv_pl.extra is on no floor: add it to FLOORS in tests/test_layering.py"]


def test_only_the_training_cli_imports_the_callbacks():
    assert [example for (source, target), example in room_arrows(REPO).items() if target == "callbacks"] == [
        "attnconv_pl.cli imports callbacks"]


MAX_LINES = 400
LONG_MODULE_REASON = "Longer than 400 lines:"


def test_no_module_is_longer_than_400_lines_without_saying_why_in_its_docstring():
    too_long = []
    for path in sorted(module_files(REPO).values()):
        text = path.read_text()
        if text.count("\n") > MAX_LINES and LONG_MODULE_REASON not in (ast.get_docstring(ast.parse(text)) or ""):
            too_long.append(f"{path.relative_to(REPO)} ({text.count(chr(10))} lines)")
    assert too_long == [], f"split these modules, or say why not in a docstring line '{LONG_MODULE_REASON} ...'"
