"""The code's shape, checked in every run (import-linter checks the rest of the graph in CI, `lint-imports`).

- No module of bot/ or handlers/ is over 500 lines: a module that grows past that holds two concerns.
- The pure core (the `pure-core` contract's modules in pyproject.toml) takes from the Slack SDK only its
  Block Kit models, never a client: import-linter sees `slack_sdk` as one package, so this is checked here.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 500
SLACK_MODELS = "slack_sdk.models"


def modules() -> list[Path]:
    """Every Python module of the bot's packages."""
    return sorted(p for package in ("bot", "handlers") for p in (ROOT / package).rglob("*.py"))


def pure_core() -> list[Path]:
    """The files of the modules (or packages) the `pure-core` import contract names."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c.get("id") == "pure-core"]
    files = []
    for name in contract["source_modules"]:
        path = ROOT.joinpath(*name.split("."))
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
    return [f for f in files if f.exists()]


def imported(path: Path) -> set[str]:
    """The absolute module names `path` imports (at any depth of the file)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_no_module_is_over_500_lines() -> None:
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in modules()}
    assert sizes, "no module found"
    assert {name: lines for name, lines in sizes.items() if lines > MAX_LINES} == {}


def test_the_pure_core_takes_only_block_kit_models_from_the_slack_sdk() -> None:
    files = pure_core()
    assert ROOT / "bot" / "audit.py" in files and ROOT / "bot" / "models.py" in files
    clients = {
        str(path.relative_to(ROOT)): sorted(
            n for n in imported(path) if n.split(".")[0] == "slack_sdk" and not n.startswith(SLACK_MODELS)
        )
        for path in files
    }
    assert {name: found for name, found in clients.items() if found} == {}
