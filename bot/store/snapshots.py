"""The last audit's findings per account and who opened the App Home (what App Home renders from)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa

from bot.store import schema as t
from bot.store.base import StoreBase, upsert, utc
from bot.store.records import Snapshot


class SnapshotStore(StoreBase):
    """Kept audit snapshots and App Home visits."""

    def save_snapshot(self, account_id: str, audited_at: datetime, findings: str, now: datetime) -> None:
        """Keep `findings` (JSON) as the last successful audit of `account_id`, replacing the one before."""
        values = {"account_id": account_id, "audited_at": utc(audited_at), "saved_at": utc(now), "findings": findings}
        with self._write() as conn:
            insert = upsert(conn, t.account_snapshots).values(values)
            conn.execute(insert.on_conflict_do_update(index_elements=["account_id"], set_=values))

    def snapshot_times(self) -> dict[str, datetime]:
        """account id -> when its kept snapshot was saved (cheap: tells whether a cached copy is current)."""
        x = t.account_snapshots.c
        with self._read() as conn:
            return {row.account_id: row.saved_at for row in conn.execute(sa.select(x.account_id, x.saved_at))}

    def snapshots(self, account_ids: Iterable[str] | None = None) -> list[Snapshot]:
        """The kept snapshots (of `account_ids`, or all), by account id."""
        query = sa.select(t.account_snapshots).order_by(t.account_snapshots.c.account_id)
        if account_ids is not None:
            query = query.where(t.account_snapshots.c.account_id.in_(list(account_ids)))
        with self._read() as conn:
            return [Snapshot(**row._mapping) for row in conn.execute(query)]

    def note_home_opened(self, slack_user_id: str, now: datetime) -> None:
        """Remember that this person opened the App Home at `now`."""
        values = {"slack_user_id": slack_user_id, "opened_at": utc(now)}
        with self._write() as conn:
            insert = upsert(conn, t.home_openers).values(values)
            conn.execute(insert.on_conflict_do_update(index_elements=["slack_user_id"], set_=values))

    def recent_home_openers(self, since: datetime, limit: int) -> list[str]:
        """The people who opened the App Home after `since`, the latest first, at most `limit`."""
        h = t.home_openers.c
        query = (
            sa.select(h.slack_user_id)
            .where(h.opened_at > utc(since))
            .order_by(h.opened_at.desc(), h.slack_user_id)
            .limit(max(0, limit))
        )
        with self._read() as conn:
            return list(conn.execute(query).scalars())
