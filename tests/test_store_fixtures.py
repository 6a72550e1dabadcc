"""The `store_url` fixture's contract for PostgreSQL: skip when unset, FAIL when unreachable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures_db import PG_ENV

ROOT = Path(__file__).resolve().parents[1]
# serially, no cache written in the repo, no Hypothesis plugin (its summary alone costs a second and a half)
NO_EXTRAS = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")
TWO_STORE_TESTS = ("tests/test_store.py::test_links", "tests/test_store.py::test_failed_scan_leaves_episodes_open")


def _run_links_test(pg_url: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != PG_ENV}
    if pg_url is not None:
        env[PG_ENV] = pg_url
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-n", "0", *NO_EXTRAS, *TWO_STORE_TESTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("unset", [None, ""])
def test_postgresql_case_is_skipped_without_test_database_url(unset: str | None) -> None:
    result = _run_links_test(unset)

    assert result.returncode == 0, result.stdout
    assert "2 passed, 2 skipped" in result.stdout
    # said once, however many were skipped: one folded line and one closing line on how to run them
    assert result.stdout.count(f"{PG_ENV} not set") == 1
    assert f"SKIPPED [2] tests/fixtures_db.py: PostgreSQL: {PG_ENV} not set" in result.stdout
    assert f"2 PostgreSQL store tests skipped: {PG_ENV} is not set. To run them: export {PG_ENV}=" in result.stdout


def test_postgresql_case_fails_when_test_database_url_is_unreachable() -> None:
    result = _run_links_test("postgresql://tester:Pw-Not-Shown@127.0.0.1:1/test")

    assert result.returncode == 1, result.stdout
    assert "skipped" not in result.stdout
    assert f"{PG_ENV} is set but PostgreSQL cannot be used: cannot open DATABASE_URL" in result.stdout
    assert "tester:***@127.0.0.1:1" in result.stdout
    assert "Pw-Not-Shown" not in result.stdout
