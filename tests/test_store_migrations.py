"""Alembic migrations on SQLite and PostgreSQL: they build exactly bot.store.schema."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from bot.store import Store, StoreError, migrate
from bot.store.db import MIGRATIONS, alembic_config, create_store_engine, write_transaction
from bot.store.schema import metadata

SCRIPTS = ScriptDirectory(str(MIGRATIONS))
HEAD = SCRIPTS.get_current_head()
FIRST = SCRIPTS.get_base()
T0 = datetime(2026, 11, 2, tzinfo=UTC)


def _inspect(url: str) -> tuple[str | None, set[str], list[Any]]:
    """(current revision, table names, differences between the database and schema.py)."""
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
            return (
                context.get_current_revision(),
                set(sa.inspect(conn).get_table_names()),
                compare_metadata(context, metadata),
            )
    finally:
        engine.dispose()


def test_single_linear_history_starting_with_the_initial_schema() -> None:
    assert FIRST == "0001"
    assert len(SCRIPTS.get_heads()) == 1


def test_upgrade_from_empty_to_head(store_url: str) -> None:
    assert _inspect(store_url)[:2] == (None, set())

    migrate(store_url)

    revision, tables, diff = _inspect(store_url)
    assert revision == HEAD
    assert tables == set(metadata.tables) | {"alembic_version"}
    assert diff == []


def test_upgrade_from_first_revision_to_head(store_url: str) -> None:
    migrate(store_url, FIRST)
    assert _inspect(store_url)[0] == FIRST

    with Store.open(store_url) as opened:  # what the bot does at start
        opened.record_action("UADMIN", "link", "arn", None, T0)

    revision, _, diff = _inspect(store_url)
    assert revision == HEAD
    assert diff == []


def test_downgrade_to_base_and_upgrade_again(store_url: str) -> None:
    migrate(store_url)
    engine = create_store_engine(store_url)
    try:
        with write_transaction(engine) as conn:
            command.downgrade(alembic_config(conn), "base")
    finally:
        engine.dispose()
    assert _inspect(store_url)[:2] == (None, {"alembic_version"})

    migrate(store_url)
    assert _inspect(store_url)[0] == HEAD


def test_database_from_a_newer_bot_is_a_store_error(store_url: str) -> None:
    migrate(store_url)
    engine = create_store_engine(store_url)
    with write_transaction(engine) as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'fffffffff999'"))
    engine.dispose()

    with pytest.raises(StoreError) as caught:
        Store.open(store_url)
    assert "\n" not in str(caught.value)
    assert "fffffffff999" in str(caught.value)


def test_claims_of_an_existing_database_become_leases(store_url: str) -> None:
    """Upgraded from 0002: a posted digest stays posted; an unposted claim is an expired lease of its
    claimant (another process may take it over); an escalation claim names its episode."""
    migrate(store_url, "0002")
    engine = create_store_engine(store_url)
    try:
        with write_transaction(engine) as conn:
            rows = [
                ("C1", "2026-11-01", "host-a:1", T0, T0),
                ("C1", "2026-11-02", "host-a:1", T0, None),
                ("CESC", "escalation:42:20261101T090000Z", "host-a:1", T0, T0),
            ]
            for channel, key, by, claimed, posted in rows:
                conn.execute(
                    sa.text(
                        "INSERT INTO digests (channel, period_key, posted_by, claimed_at, posted_at) "
                        "VALUES (:c, :k, :b, :at, :posted)"
                    ),
                    {"c": channel, "k": key, "b": by, "at": _stored(conn, claimed), "posted": _stored(conn, posted)},
                )
    finally:
        engine.dispose()

    with Store.open(store_url) as store:
        later = T0.replace(hour=23)
        (stale,) = store.expired_claims(later, [("C1", "2026-11-01"), ("C1", "2026-11-02")])
        assert (stale.period_key, stale.holder, stale.lease_until) == ("2026-11-02", "host-a:1", T0)
        assert store.claim_digest("C1", "2026-11-01", "host-b:2", later) is False  # posted: never again
        assert store.claim_digest("C1", "2026-11-02", "host-b:2", later) is True  # taken over
        assert store.claim_digest("CESC", "escalation:42:20261101T090000Z", "host-b:2", later) is False
    engine = create_store_engine(store_url)
    try:
        with engine.connect() as conn:
            episode = conn.execute(sa.text("SELECT episode_id FROM digests WHERE channel = 'CESC'")).scalar()
    finally:
        engine.dispose()
    assert episode == 42
    assert _inspect(store_url)[2] == []


def _stored(conn: sa.Connection, value: datetime | None) -> Any:
    """A timestamp as the store keeps it (SQLite: naive UTC text)."""
    if value is None or conn.dialect.name != "sqlite":
        return value
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f}"


def test_the_head_read_from_the_migration_files_is_alembics_head() -> None:
    from bot.store.db import _head_from_files

    assert _head_from_files() == HEAD


ALEMBIC_LOADED = (
    "import sys\n"
    "from bot.store import Store\n"
    "Store.open(sys.argv[1]).close()\n"
    "print(any(name.split('.')[0] == 'alembic' for name in sys.modules))\n"
)


def test_a_current_store_opens_with_one_version_read_and_no_alembic(tmp_path) -> None:
    import subprocess
    import sys
    from pathlib import Path

    url = f"sqlite:///{tmp_path}/bot.db"
    root = str(Path(__file__).resolve().parent.parent)

    def alembic_loaded() -> str:
        done = subprocess.run(
            [sys.executable, "-c", ALEMBIC_LOADED, url], capture_output=True, text=True, cwd=root, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert alembic_loaded() == "True"  # a new database: migrated by Alembic
    assert alembic_loaded() == "False"  # at head: one read of alembic_version, Alembic never imported
    assert _inspect(url)[0] == HEAD
