"""The library below the training CLI never imports the Lightning callbacks, and the report never
imports the CLI (checked on the source, import by import)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "attnconv_pl"


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def importers(prefix: str, files) -> list[str]:
    return sorted(str(path.relative_to(PACKAGE)) for path in files
                  if any(name == prefix or name.startswith(prefix + ".") for name in imported_modules(path)))


def test_only_the_training_cli_imports_the_callbacks():
    assert importers("callbacks", PACKAGE.rglob("*.py")) == ["cli.py"]


def test_the_report_never_imports_the_cli():
    assert importers("attnconv_pl.cli", (PACKAGE / "reports").rglob("*.py")) == []
