"""Plain SQL reads of the store for tests: rows the bot itself never reads back this way."""

from __future__ import annotations

import sqlalchemy as sa

from bot.store import Scan, Store
from bot.store import schema as t


def stored_scans(store: Store, account_id: str | None = None) -> list[Scan]:
    """Every recorded scan, newest first (started_at, then id), of one account or all."""
    query = sa.select(t.scans).order_by(t.scans.c.started_at.desc(), t.scans.c.id.desc())
    if account_id is not None:
        query = query.where(t.scans.c.account_id == account_id)
    with store.engine.connect() as conn:
        return [Scan(**row._mapping) for row in conn.execute(query)]
