"""Database fixtures (a pytest plugin listed in conftest.py).

- `store_url`: parametrized over "sqlite" (a fresh file in tmp_path) and "postgresql" (a fresh,
  empty schema on the server named by TEST_DATABASE_URL, dropped after the test). Without
  TEST_DATABASE_URL the PostgreSQL case is skipped; with it set but unreachable, it fails.
- `store`: a `Store` opened (and migrated) on `store_url`.

Without TEST_DATABASE_URL (a laptop) the PostgreSQL skips are reported together: one folded
`SKIPPED [n]` line and one line at the end of the run saying how to run them (CI sets it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from bot.store import Store, StoreError, normalize_url
from bot.store.db import create_store_engine, store_error

PG_ENV = "TEST_DATABASE_URL"
PG_SKIPPED = f"PostgreSQL: {PG_ENV} not set"


def sqlite_url(directory: Path) -> str:
    """A SQLite URL for a new database file in `directory`."""
    return f"sqlite:///{directory / 'store.db'}"


def pg_admin_engine_for(url: str) -> Engine:
    """An engine on the PostgreSQL server at `url`, checked to answer; StoreError if it doesn't."""
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except SQLAlchemyError as exc:
        engine.dispose()
        raise store_error(normalize_url(url), exc) from None
    return engine


@contextmanager
def pg_schema_url(admin: Engine, url: str) -> Iterator[str]:
    """`url` narrowed to a new empty schema (via search_path), dropped with everything in it on exit."""
    schema = f"test_{uuid.uuid4().hex[:16]}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        narrowed = make_url(normalize_url(url)).update_query_dict({"options": f"-csearch_path={schema}"})
        yield narrowed.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(scope="session")
def pg_admin_engine() -> Iterator[Engine]:
    """The PostgreSQL server of TEST_DATABASE_URL: skip when unset, fail when unreachable."""
    url = os.environ.get(PG_ENV, "").strip()
    if not url:
        pytest.skip(PG_SKIPPED)
    problem = ""
    try:
        engine = pg_admin_engine_for(url)
    except StoreError as exc:
        problem = str(exc)
    if problem:  # fail outside the except block: one clear line, no chained traceback
        pytest.fail(f"{PG_ENV} is set but PostgreSQL cannot be used: {problem}", pytrace=False)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    admin = request.getfixturevalue("pg_admin_engine")
    with pg_schema_url(admin, os.environ[PG_ENV]) as url:
        yield url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """An opened, migrated Store on `store_url`."""
    opened = Store.open(store_url)
    yield opened
    opened.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Report every PostgreSQL skip at one place, so `-ra` folds them into one `SKIPPED [n]` line."""
    report = yield
    longrepr = getattr(report, "longrepr", None)
    if report.skipped and isinstance(longrepr, tuple) and longrepr[2].endswith(PG_SKIPPED):
        report.longrepr = (__file__, None, longrepr[2])
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line, once: how many PostgreSQL store tests did not run, and how to run them."""
    skipped = [
        r
        for r in terminalreporter.stats.get("skipped", [])
        if isinstance(r.longrepr, tuple) and str(r.longrepr[2]).endswith(PG_SKIPPED)
    ]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} PostgreSQL store tests skipped: {PG_ENV} is not set. To run them: "
            f"export {PG_ENV}=postgresql+psycopg://USER@HOST:5432/DB (CI sets it, and fails if it is unreachable)",
            yellow=True,
        )
