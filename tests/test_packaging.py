"""What gets installed: ranges in pyproject.toml, pinned and hashed lock files generated from them,
a runtime without the demo's moto, and a package that `pip install .` can build."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
LOCKS = {
    "requirements.txt": [],
    "requirements-demo.txt": ["demo"],
    "requirements-dev.txt": ["demo", "test"],
}


def pins(lock: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a lock file."""
    text = (ROOT / lock).read_text().replace("\\\n", " ")
    found = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)(.*)$", line)
        if match:
            name = canonicalize_name(match.group(1).split("[")[0])
            found[name] = (match.group(2), re.findall(r"--hash=sha256:([0-9a-f]{64})", match.group(3)))
    return found


def ranges(extras: list[str]) -> list[Requirement]:
    wanted = list(PROJECT["dependencies"])
    for extra in extras:
        wanted += PROJECT["optional-dependencies"][extra]
    return [Requirement(r) for r in wanted]


def test_each_lock_pins_every_range_of_its_extras_with_hashes():
    for lock, extras in LOCKS.items():
        pinned = pins(lock)
        assert pinned, lock
        for name, (version, hashes) in pinned.items():
            assert hashes, f"{lock}: {name}=={version} has no hash"
        for requirement in ranges(extras):
            name = canonicalize_name(requirement.name)
            assert name in pinned, f"{lock} lacks {name} (run scripts/lock)"
            version = pinned[name][0]
            assert requirement.specifier.contains(version), f"{lock}: {name}=={version} outside {requirement}"


def test_the_runtime_lock_holds_no_demo_or_test_tools():
    runtime = set(pins("requirements.txt"))
    assert not runtime & {"moto", "flask", "werkzeug", "pytest", "ruff", "cfn-lint", "docker"}
    assert {"moto", "flask"} <= set(pins("requirements-demo.txt"))
    assert {"moto", "pytest", "ruff", "cfn-lint"} <= set(pins("requirements-dev.txt"))
    demo, dev = pins("requirements-demo.txt"), pins("requirements-dev.txt")
    assert all(demo[name][0] == version for name, (version, _) in pins("requirements.txt").items())
    assert all(dev[name][0] == version for name, (version, _) in demo.items())


def test_the_image_and_heroku_install_the_runtime_lock_only():
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = re.findall(r"^RUN pip install .*$", dockerfile, flags=re.M)
    assert installs == ["RUN pip install --no-cache-dir --require-hashes -r requirements.txt"]
    assert "requirements-d" not in dockerfile
    assert (ROOT / ".python-version").read_text().strip().startswith("3.11")
    assert PROJECT["requires-python"] == ">=3.11"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -q --require-hashes -r requirements-dev.txt" in ci


def test_every_python_package_and_migration_is_in_the_distribution():
    setuptools = PYPROJECT["tool"]["setuptools"]
    on_disk = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in ROOT.glob("**/__init__.py")
        if path.parent.relative_to(ROOT).parts[0] in {"bot", "handlers"}
    }
    assert set(setuptools["packages"]) == on_disk
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["bot.store"]
    store = ROOT / "bot" / "store"
    shipped = {path for pattern in patterns for path in store.glob(pattern)}
    needed = {p for p in (store / "migrations").rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert needed and needed <= shipped
    assert PROJECT["scripts"] == {"mfa-bot": "bot.cli:run"}


def test_check_demo_without_moto_says_in_one_line_how_to_install_it(tmp_path):
    code = "import sys; sys.modules['moto'] = None; from bot.cli import main; sys.exit(main(['check', '--demo']))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert "pip install -r requirements-demo.txt" in done.stderr
