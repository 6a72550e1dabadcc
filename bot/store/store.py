"""The store: the bot's history and the claims that make several processes act once.

Every method runs in its own short transaction. Timestamps go in and come out timezone-aware
UTC; the clock is always passed in (`now`). Exactly-once claims are decided by the database
(unique keys, INSERT ... ON CONFLICT, conditional UPDATE ... RETURNING), never by in-process
locks, so they hold across processes on SQLite (WAL, busy timeout) and PostgreSQL alike.

`Store` is one class per concern over one engine: episodes and scans (`bot.store.episodes`),
exemptions, links and identities (`bot.store.exemptions`), nudges and the outbox
(`bot.store.nudges`), digests and other claims (`bot.store.claims`), the audit trail
(`bot.store.trail`) and App Home snapshots (`bot.store.snapshots`); retention is here.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from types import TracebackType

import sqlalchemy as sa

from bot.store import schema as t
from bot.store.base import StoreBase, utc
from bot.store.claims import ClaimStore
from bot.store.db import open_engine
from bot.store.episodes import EpisodeStore
from bot.store.exemptions import ExemptionStore
from bot.store.nudges import NudgeStore
from bot.store.snapshots import SnapshotStore
from bot.store.trail import TrailStore

__all__ = ["Store"]


class Store(EpisodeStore, SnapshotStore, ExemptionStore, NudgeStore, ClaimStore, TrailStore, StoreBase):
    """The bot's persistent state. Open with `Store.open(url)`; safe to share between threads."""

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect to DATABASE_URL and apply pending migrations; StoreError (one line) if it can't."""
        return cls(open_engine(url))

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- retention -----------------------------------------------------------------------------

    @staticmethod
    def _not_open_escalation() -> sa.ColumnElement[bool]:
        """A digests row that is not the escalation claim of an episode still open (those stay)."""
        open_ids = sa.select(t.episodes.c.id).where(t.episodes.c.fixed_at.is_(None))
        return sa.or_(t.digests.c.episode_id.is_(None), t.digests.c.episode_id.not_in(open_ids))

    def prune(self, older_than_days: int, now: datetime) -> dict[str, int]:
        """Delete history older than the cutoff; returns rows deleted per table.

        Goes: scans (by started_at), CLOSED episodes (by fixed_at), nudges (by at), finished
        outbox items (by completed_at), digests with their rows (by claimed_at; an escalation claim
        only once its episode is closed, so an open violation is never escalated twice), audit-trail
        entries (by at), exemptions that ended (expired or revoked) before the cutoff, snapshots of
        accounts no longer audited (by saved_at), App Home visits (by opened_at), and handled
        events and alert claims (an SQS message lives 14 days at most: a handled eventID kept
        RETENTION_DAYS still stops any redelivery).
        Stays: open episodes, exemptions still in force or recently ended, links, identities, pending
        outbox items and the cooldown windows (one row per person).
        """
        if older_than_days < 1:
            raise ValueError(f"older_than_days must be at least 1, got {older_than_days}")
        cutoff = utc(now) - timedelta(days=older_than_days)
        x = t.exemptions.c
        deletes = {
            "scans": t.scans.delete().where(t.scans.c.started_at < cutoff),
            "episodes": t.episodes.delete().where(t.episodes.c.fixed_at < cutoff),
            "exemptions": t.exemptions.delete().where(sa.or_(x.until < cutoff, x.revoked_at < cutoff)),
            "nudges": t.nudges.delete().where(t.nudges.c.at < cutoff),
            "nudge_outbox": t.nudge_outbox.delete().where(t.nudge_outbox.c.completed_at < cutoff),
            "nudge_batches": t.nudge_batches.delete().where(t.nudge_batches.c.notified_at < cutoff),
            "digests": t.digests.delete().where(t.digests.c.claimed_at < cutoff, self._not_open_escalation()),
            "actions": t.actions.delete().where(t.actions.c.at < cutoff),
            "account_snapshots": t.account_snapshots.delete().where(t.account_snapshots.c.saved_at < cutoff),
            "home_openers": t.home_openers.delete().where(t.home_openers.c.opened_at < cutoff),
            "event_claims": t.event_claims.delete().where(t.event_claims.c.handled_at < cutoff),
            "alert_claims": t.alert_claims.delete().where(t.alert_claims.c.claimed_at < cutoff),
        }
        with self._write() as conn:
            return {name: conn.execute(statement).rowcount for name, statement in deletes.items()}
