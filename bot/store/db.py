"""Plumbing under the store: DATABASE_URL forms, engines, SQLite pragmas, migrations, errors.

One code path for SQLite and PostgreSQL (psycopg 3). SQLite connections get WAL mode, a busy
timeout and foreign keys on every connect, and SQLAlchemy (not the sqlite3 module) emits BEGIN,
``BEGIN IMMEDIATE`` for write transactions, so several processes can share one file safely.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from bot.dburl import DRIVERS as _DRIVERS
from bot.dburl import mask_url, normalize_url

SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_CONNECT_TIMEOUT_S = 10
WRITE = "mfa_bot_write"  # Connection execution option: this transaction will write
MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 0x6D66615F626F74  # pg_advisory_xact_lock key ("mfa_bot"): one migrator at a time

logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # seven "setup plugin" lines per start


class StoreError(RuntimeError):
    """The store cannot be opened or migrated; the message is one line, password masked."""


class MigrationError(RuntimeError):
    """Alembic could not migrate (e.g. the database is at a revision this code does not know)."""


def _secrets_of(url: str) -> list[str]:
    """The password and any password-like query values in `url` (to scrub from driver messages)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return []
    values = [parsed.password] + [v for k, v in parsed.query.items() if "pass" in k.lower()]
    flat = [item for value in values for item in (value if isinstance(value, tuple) else (value,))]
    return [str(item) for item in flat if item]


def _one_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = " ".join(str(orig if orig is not None else exc).split())
    return text[:300] or type(exc).__name__


def store_error(url: str, exc: BaseException, doing: str = "open") -> StoreError:
    """A one-line StoreError for `exc`, naming DATABASE_URL with the password masked."""
    reason = _one_line(exc)
    for secret in _secrets_of(url):
        reason = reason.replace(secret, "***")
    return StoreError(f"cannot {doing} DATABASE_URL {mask_url(url)}: {reason}")


def reachable(engine: Engine) -> bool:
    """True when the database answers a trivial query now (for /healthz)."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except (SQLAlchemyError, OSError):
        return False
    return True


def is_unreachable(exc: BaseException) -> bool:
    """True when `exc` (or what caused it) says the database could not be reached or opened."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sa.exc.OperationalError | sa.exc.InterfaceError | StoreError):
            return True
        if isinstance(seen, sa.exc.DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (see _sqlite_begin)
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # IMMEDIATE takes the write lock up front (waiting out the busy timeout), so a write
    # transaction never fails half-way on a lock upgrade; readers keep WAL's snapshot reads.
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE) else "BEGIN")


def _create_owner_only(path: str, url: str) -> None:
    """Create a new SQLite file readable by its owner only (0600); SQLite gives its -wal and -shm the same mode."""
    if path.startswith("file:"):  # a URI filename: SQLite opens it as the URI says
        return
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return
    except OSError as exc:
        raise store_error(url, exc) from None


def parse_url(url: str) -> URL:
    """DATABASE_URL parsed (``postgres://`` rewritten); StoreError (one line, masked) unless the store supports it."""
    url = normalize_url(url)
    try:
        parsed: URL = make_url(url)
    except (ArgumentError, ValueError):
        raise StoreError(f"DATABASE_URL is not a database URL: {mask_url(url)}") from None
    if parsed.drivername not in _DRIVERS:
        raise StoreError(f"DATABASE_URL must be sqlite:///PATH or postgresql://..., got {mask_url(url)}")
    return parsed


def create_store_engine(url: str) -> Engine:
    """An Engine for DATABASE_URL (SQLite file or memory, or PostgreSQL); no I/O but creating a new SQLite file."""
    url = normalize_url(url)
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        kwargs: dict[str, Any] = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}}
        if parsed.database in (None, "", ":memory:"):  # one shared connection: tests only
            kwargs = {"connect_args": {"check_same_thread": False}, "poolclass": StaticPool}
        else:
            _create_owner_only(parsed.database, url)
        engine = sa.create_engine(parsed, **kwargs)
        sa.event.listen(engine, "connect", _sqlite_connect)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": PG_CONNECT_TIMEOUT_S}
    return sa.create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that will write (BEGIN IMMEDIATE on SQLite); commits on exit."""
    with engine.connect() as conn:
        conn.execution_options(**{WRITE: True})
        with conn.begin():
            yield conn


def alembic_config(connection: Connection) -> Any:
    """An Alembic Config for our migrations, bound to `connection` (no alembic.ini needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


_REVISION_LINE = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*['\"]?([\w-]+|None)['\"]?\s*$", re.M)


def _head_from_files() -> str | None:
    """The head revision read from the migration files themselves (no Alembic import), or None
    when they do not name exactly one (then Alembic decides)."""
    revisions, parents = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        fields = dict(_REVISION_LINE.findall(path.read_text(encoding="utf-8")))
        if "revision" not in fields:
            return None
        revisions.add(fields["revision"])
        if fields.get("down_revision", "None") != "None":
            parents.add(fields["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _head() -> str | None:
    head = _head_from_files()
    if head is not None:
        return head
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def _current(conn: Connection) -> str | None:
    """The schema revision the database is at (one read of alembic_version), None when unversioned."""
    try:
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:
        return None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply pending migrations up to `revision` in one transaction, one migrator at a time.

    Alembic is imported only when there is something to migrate.
    """
    if revision == "head":
        with engine.connect() as conn:  # fast path: already current: one read, no write lock, no Alembic
            if _current(conn) == _head():
                return
    from alembic import command
    from alembic.util import CommandError

    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # Outside the transaction (SQLite ignores it inside): with foreign keys on, a future
            # batch migration that copies and drops a parent table would cascade-delete its children.
            conn.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")  # type: ignore[union-attr]
        try:
            conn.execution_options(**{WRITE: True})
            with conn.begin():
                if not sqlite:
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
                try:
                    command.upgrade(alembic_config(conn), revision)
                except CommandError as exc:
                    raise MigrationError(str(exc)) from exc
        finally:
            if sqlite:
                conn.connection.driver_connection.execute("PRAGMA foreign_keys = ON")  # type: ignore[union-attr]


def open_engine(url: str, revision: str = "head", doing: str = "open") -> Engine:
    """An Engine for `url`, migrated to `revision`; StoreError (one line, password masked) if it can't."""
    engine = create_store_engine(url)
    try:
        upgrade(engine, revision)
    except (SQLAlchemyError, MigrationError, OSError) as exc:
        engine.dispose()
        raise store_error(normalize_url(url), exc, doing) from None
    return engine


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` (``python -m bot migrate``); StoreError if it can't."""
    open_engine(url, revision, doing="migrate").dispose()
