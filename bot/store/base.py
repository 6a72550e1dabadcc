"""What every part of the store shares: one engine, short transactions, UTC checks, the dialect's upsert.

Each concern of the store (episodes, exemptions, nudges, claims, audit trail, snapshots) is a
class over `StoreBase`; `bot.store.store.Store` is all of them over one engine.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
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
