"""What every part of the store shares: one engine, short transactions, UTC checks, the dialect's upsert.

Each concern of the store (episodes, exemptions, nudges, claims, audit trail, snapshots) is a
class over `StoreBase`; `bot.store.store.Store` is all of them over one engine.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from bot.store.db import write_transaction

SCHEDULER = "scheduler"  # `sent_by` / `requested_by` of nudges nobody clicked for
CLAIM_LEASE = timedelta(minutes=5)  # how long a claim holds without a renewal (CLAIM_LEASE_SECONDS)


def process_identity() -> str:
    """This process as "hostname:pid", for `posted_by` and lease owners."""
    return f"{socket.gethostname()}:{os.getpid()}"


def utc(value: datetime) -> datetime:
    """`value` in UTC; ValueError for a naive datetime (the store never guesses a zone)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
    return value.astimezone(UTC)


def upsert(conn: Connection, table: sa.Table) -> Any:
    """INSERT with ON CONFLICT support: the only place the two dialects differ."""
    return (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


def lease_expired(lease_until: sa.ColumnElement[Any], now: datetime) -> sa.ColumnElement[bool]:
    """A lease nobody holds at `now`: never set, released, or run out."""
    return sa.or_(lease_until.is_(None), lease_until <= now)


def lease_free(
    done: sa.ColumnElement[Any], lease_until: sa.ColumnElement[Any], now: datetime
) -> sa.ColumnElement[bool]:
    """A claim anyone may take at `now`: not finished (`done` is NULL) and its lease expired."""
    return sa.and_(done.is_(None), lease_expired(lease_until, now))


def claim_row(
    conn: Connection,
    table: sa.Table,
    values: Mapping[str, Any],
    keys: Sequence[str],
    returning: Sequence[sa.ColumnElement[Any]],
    take_over: Mapping[str, Any] | None = None,
    when: sa.ColumnElement[bool] | None = None,
) -> sa.Row[Any] | None:
    """Claim the row of `keys` in one statement the database decides (INSERT ... ON CONFLICT ... RETURNING).

    Won (the `returning` columns) when the row is new, or when it exists and `when` holds (e.g.
    `lease_free`: its holder died): then its columns become `take_over`. Without `take_over` an
    existing row is never taken over. Lost (None): someone else holds it, or it is taken for good.
    Of several processes claiming at once, at most one wins.
    """
    insert = upsert(conn, table).values(dict(values))
    if take_over is None:
        statement = insert.on_conflict_do_nothing(index_elements=list(keys))
    else:
        statement = insert.on_conflict_do_update(index_elements=list(keys), set_=dict(take_over), where=when)
    return conn.execute(statement.returning(*returning)).first()


class StoreBase:
    """One engine and its two kinds of short transaction; every concern of the store builds on it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A connection for reads (no write lock)."""
        with self.engine.connect() as conn:
            yield conn

    def _write(self) -> AbstractContextManager[Connection]:
        """A write transaction (BEGIN IMMEDIATE on SQLite), committed on exit."""
        return write_transaction(self.engine)
