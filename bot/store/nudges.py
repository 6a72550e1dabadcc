"""Nudges: the log of DMs, the per-person cooldown claim, and the outbox that makes "Nudge all" survive a restart."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bot.store import schema as t
from bot.store.base import CLAIM_LEASE, StoreBase, claim_row, lease_expired, lease_free, upsert, utc
from bot.store.records import Nudge, NudgeBatch, NudgeClaim, OutboxItem

# "unknown": Slack may have posted the DM but its answer was lost (timed out, unreadable): the
# cooldown window stays claimed so no second DM goes, and the digest row says "delivery unknown".
NUDGE_OUTCOMES = ("sent", "failed", "skipped_cooldown", "unknown")


class NudgeStore(StoreBase):
    """DMs sent, cooldown windows, and the "Nudge all" outbox with its batches."""

    # -- the log -----------------------------------------------------------------------------------

    def record_nudge(
        self,
        slack_user_id: str,
        arns: Sequence[str],
        sent_by: str,
        now: datetime,
        outcome: str,
        error: str | None = None,
        channel: str | None = None,
        message_ts: str | None = None,
    ) -> int:
        """Log one DM attempt covering `arns` (sent_by: Slack user ID or "scheduler"); returns its id."""
        with self._write() as conn:
            return self._insert_nudge(conn, slack_user_id, arns, sent_by, utc(now), outcome, error, channel, message_ts)

    @staticmethod
    def _insert_nudge(
        conn: Connection,
        slack_user_id: str,
        arns: Sequence[str],
        sent_by: str,
        at: datetime,
        outcome: str,
        error: str | None,
        channel: str | None,
        message_ts: str | None,
    ) -> int:
        if outcome not in NUDGE_OUTCOMES:
            raise ValueError(f"nudge outcome must be one of {NUDGE_OUTCOMES}, got {outcome!r}")
        nudge_id = conn.execute(
            t.nudges.insert()
            .values(
                slack_user_id=slack_user_id,
                sent_by=sent_by,
                at=at,
                outcome=outcome,
                error=error,
                channel=channel,
                message_ts=message_ts,
            )
            .returning(t.nudges.c.id)
        ).scalar_one()
        unique_arns = list(dict.fromkeys(arns))
        if unique_arns:
            conn.execute(t.nudge_arns.insert(), [{"nudge_id": nudge_id, "arn": arn} for arn in unique_arns])
        return nudge_id

    def nudge_counts(self, arns: Iterable[str]) -> dict[str, int]:
        """ARN -> number of DMs actually sent about it (every ARN asked for is in the result)."""
        wanted = list(dict.fromkeys(arns))
        counts = dict.fromkeys(wanted, 0)
        if not wanted:
            return counts
        query = (
            sa.select(t.nudge_arns.c.arn, sa.func.count())
            .join(t.nudges, t.nudges.c.id == t.nudge_arns.c.nudge_id)
            .where(t.nudge_arns.c.arn.in_(wanted), t.nudges.c.outcome == "sent")
            .group_by(t.nudge_arns.c.arn)
        )
        with self._read() as conn:
            counts.update({arn: count for arn, count in conn.execute(query)})
        return counts

    def last_nudge(self, slack_user_id: str, outcomes: Sequence[str] = ("sent",)) -> Nudge | None:
        """The last DM actually sent to a person (when, by whom, covering which ARNs), or None.

        `outcomes=("sent", "unknown")`: the last DM that went or may have gone.
        """
        query = (
            sa.select(t.nudges)
            .where(t.nudges.c.slack_user_id == slack_user_id, t.nudges.c.outcome.in_(list(outcomes)))
            .order_by(t.nudges.c.at.desc(), t.nudges.c.id.desc())
            .limit(1)
        )
        with self._read() as conn:
            row = conn.execute(query).first()
            if row is None:
                return None
            arns = conn.execute(
                sa.select(t.nudge_arns.c.arn).where(t.nudge_arns.c.nudge_id == row.id).order_by(t.nudge_arns.c.arn)
            ).scalars()
            return Nudge(**row._mapping, arns=tuple(arns))

    def last_dm(self, arn: str) -> Nudge | None:
        """The last DM sent about `arn` whose message Slack named (channel and ts), with all the ARNs it covered.

        Where a re-check updates the DM: the bot's own record, never what a button payload says.
        """
        n, na = t.nudges.c, t.nudge_arns.c
        query = (
            sa.select(t.nudges)
            .join(t.nudge_arns, na.nudge_id == n.id)
            .where(na.arn == arn, n.outcome == "sent", n.channel.is_not(None), n.message_ts.is_not(None))
            .order_by(n.at.desc(), n.id.desc())
            .limit(1)
        )
        with self._read() as conn:
            row = conn.execute(query).first()
            if row is None:
                return None
            arns = conn.execute(sa.select(na.arn).where(na.nudge_id == row.id).order_by(na.arn)).scalars()
            return Nudge(**row._mapping, arns=tuple(arns))

    def first_nudge_at(self, arn: str, since: datetime | None = None) -> datetime | None:
        """When the first DM about `arn` was sent (after `since`, e.g. its episode's first_seen), or None."""
        query = (
            sa.select(sa.func.min(t.nudges.c.at))
            .join(t.nudge_arns, t.nudges.c.id == t.nudge_arns.c.nudge_id)
            .where(t.nudge_arns.c.arn == arn, t.nudges.c.outcome == "sent")
        )
        if since is not None:
            query = query.where(t.nudges.c.at >= utc(since))
        with self._read() as conn:
            return conn.execute(query).scalar()

    def first_nudges(self) -> dict[str, datetime]:
        """ARN -> when the first DM about its OPEN episode was sent (at or after its first_seen).

        One query for every open episode (`first_nudge_at` asks for one ARN); never-nudged ARNs are left out.
        """
        ep, n, na = t.episodes.c, t.nudges.c, t.nudge_arns.c
        query = (
            sa.select(ep.arn, sa.func.min(n.at))
            .select_from(t.episodes.join(t.nudge_arns, na.arn == ep.arn).join(t.nudges, n.id == na.nudge_id))
            .where(ep.fixed_at.is_(None), n.outcome == "sent", n.at >= ep.first_seen)
            .group_by(ep.arn)
        )
        with self._read() as conn:
            return {arn: at for arn, at in conn.execute(query)}

    # -- the per-person cooldown claim -------------------------------------------------------------

    def claim_nudge_window(self, slack_user_id: str, cooldown: timedelta, now: datetime, claimed_by: str) -> NudgeClaim:
        """Claim the right to DM `slack_user_id` now: at most one winner per person per cooldown.

        Atomic in the database (INSERT ... ON CONFLICT DO UPDATE ... WHERE the last claim is at
        least `cooldown` old), so it holds across processes. When not won, the claim returned
        names the earlier nudge (when, by whom). Release it with `release_nudge_window` if the
        DM could not be sent at all.
        """
        now = utc(now)
        w = t.nudge_windows.c
        with self._write() as conn:
            claim = {"claimed_at": now, "claimed_by": claimed_by}
            row = claim_row(
                conn,
                t.nudge_windows,
                {"slack_user_id": slack_user_id, **claim},
                keys=["slack_user_id"],
                returning=[w.slack_user_id],
                take_over=claim,
                when=w.claimed_at <= now - cooldown,
            )
            if row is not None:
                return NudgeClaim(won=True, slack_user_id=slack_user_id, claimed_at=now, claimed_by=claimed_by)
            held = conn.execute(sa.select(w.claimed_at, w.claimed_by).where(w.slack_user_id == slack_user_id)).one()
            return NudgeClaim(
                won=False, slack_user_id=slack_user_id, claimed_at=held.claimed_at, claimed_by=held.claimed_by
            )

    def release_nudge_window(self, claim: NudgeClaim) -> bool:
        """Give back a won window (the DM failed), so a retry need not wait; False if no longer held."""
        if not claim.won:
            return False
        w = t.nudge_windows.c
        with self._write() as conn:
            result = conn.execute(
                t.nudge_windows.delete().where(
                    w.slack_user_id == claim.slack_user_id,
                    w.claimed_at == claim.claimed_at,
                    w.claimed_by == claim.claimed_by,
                )
            )
            return result.rowcount > 0

    # -- the outbox ("Nudge all" survives a restart) -----------------------------------------------

    def enqueue_nudges(
        self,
        batch_id: str,
        items: Iterable[tuple[str, Sequence[str]]],
        requested_by: str,
        now: datetime,
        response_url: str | None = None,
    ) -> int:
        """Queue one DM per (slack_user_id, arns); idempotent per (batch_id, slack_user_id). Returns new items.

        The batch is kept too (who asked, `response_url` for its "finished" notice), in the same
        transaction, so whichever process sends its last DM can tell the admin.
        """
        now = utc(now)
        rows: dict[str, dict[str, Any]] = {}
        for user, arns in items:  # the first item of a person wins
            rows.setdefault(
                user,
                {
                    "batch_id": batch_id,
                    "slack_user_id": user,
                    "arns": list(dict.fromkeys(arns)),
                    "requested_by": requested_by,
                    "created_at": now,
                },
            )
        if not rows:
            return 0
        with self._write() as conn:
            batch = upsert(conn, t.nudge_batches).values(
                batch_id=batch_id, requested_by=requested_by, created_at=now, response_url=response_url
            )
            conn.execute(batch.on_conflict_do_nothing(index_elements=["batch_id"]))
            insert = upsert(conn, t.nudge_outbox).values(list(rows.values()))
            insert = insert.on_conflict_do_nothing(index_elements=["batch_id", "slack_user_id"])
            return len(conn.execute(insert.returning(t.nudge_outbox.c.id)).all())

    def _batch_done(self) -> sa.ColumnElement[bool]:
        """A batch whose notice is due: not sent, and no DM of it left in the outbox."""
        o, b = t.nudge_outbox.c, t.nudge_batches.c
        pending = sa.select(o.id).where(o.batch_id == b.batch_id, o.completed_at.is_(None))
        return sa.and_(b.notified_at.is_(None), ~sa.exists(pending))

    def finished_batches(self, now: datetime) -> list[str]:
        """Batches whose last DM is done and whose notice nobody holds (a read: the worker's idle check)."""
        b = t.nudge_batches.c
        free = lease_expired(b.notice_lease_until, utc(now))
        with self._read() as conn:
            return list(
                conn.execute(sa.select(b.batch_id).where(self._batch_done(), free).order_by(b.created_at)).scalars()
            )

    def claim_batch_notice(
        self, batch_id: str, holder: str, now: datetime, lease: timedelta = CLAIM_LEASE
    ) -> tuple[NudgeBatch, dict[str, int]] | None:
        """Lease the "finished" notice of a batch whose DMs are all done: (batch, outcome counts), or None.

        None when a DM is still queued, the notice went, or another process holds it. A holder
        that dies leaves the lease to expire; another process then sends the notice.
        """
        now = utc(now)
        b, o = t.nudge_batches.c, t.nudge_outbox.c
        free = lease_expired(b.notice_lease_until, now)
        with self._write() as conn:
            row = conn.execute(
                t.nudge_batches.update()
                .where(b.batch_id == batch_id, self._batch_done(), free)
                .values(notice_holder=holder, notice_lease_until=now + lease)
                .returning(*t.nudge_batches.c)
            ).first()
            if row is None:
                return None
            counts = conn.execute(
                sa.select(o.outcome, sa.func.count()).where(o.batch_id == batch_id).group_by(o.outcome)
            ).all()
        return NudgeBatch(**row._mapping), {outcome: n for outcome, n in counts if outcome}

    def finish_batch_notice(self, batch_id: str, now: datetime) -> None:
        """The notice went (or cannot go): never again; the response_url is forgotten."""
        with self._write() as conn:
            conn.execute(
                t.nudge_batches.update()
                .where(t.nudge_batches.c.batch_id == batch_id)
                .values(notified_at=utc(now), response_url=None, notice_holder=None, notice_lease_until=None)
            )

    def pending_nudges(self, limit: int = 100) -> list[OutboxItem]:
        """Queued DMs not completed yet, oldest first (leased or not)."""
        query = (
            sa.select(t.nudge_outbox)
            .where(t.nudge_outbox.c.completed_at.is_(None))
            .order_by(t.nudge_outbox.c.id)
            .limit(limit)
        )
        with self._read() as conn:
            return [self._outbox_item(row) for row in conn.execute(query)]

    def claim_pending_nudge(self, worker_id: str, now: datetime, lease_seconds: float = 300) -> OutboxItem | None:
        """Lease the oldest queued DM that nobody holds (or whose lease expired); None when none is left.

        A worker that crashes leaves its lease to expire, after which another worker re-claims the
        item. A crash after Slack accepted the DM but before `complete_nudge` means the DM may be
        tried again: exactly-once delivery is impossible there; the per-person cooldown
        (`claim_nudge_window`) is what stops the second DM.
        """
        now = utc(now)
        o = t.nudge_outbox.c
        claimable = lease_free(o.completed_at, o.lease_until, now)
        while True:
            with self._write() as conn:
                candidate = conn.execute(sa.select(o.id).where(claimable).order_by(o.id).limit(1)).scalar()
                if candidate is None:
                    return None
                row = conn.execute(
                    t.nudge_outbox.update()
                    .where(o.id == candidate, claimable)
                    .values(
                        lease_owner=worker_id,
                        lease_until=now + timedelta(seconds=lease_seconds),
                        attempts=o.attempts + 1,
                    )
                    .returning(*t.nudge_outbox.c)
                ).first()
                if row is not None:
                    return self._outbox_item(row)
            # another worker leased that one between our SELECT and UPDATE (PostgreSQL): try the next

    def complete_nudge(
        self,
        item_id: int,
        outcome: str,
        error: str | None,
        now: datetime,
        channel: str | None = None,
        message_ts: str | None = None,
    ) -> bool:
        """Finish a queued DM and log it as a nudge (sent_by = who requested it), in one transaction.

        False (and nothing logged) if the item was already completed.
        """
        now = utc(now)
        o = t.nudge_outbox.c
        with self._write() as conn:
            row = conn.execute(
                t.nudge_outbox.update()
                .where(o.id == item_id, o.completed_at.is_(None))
                .values(completed_at=now, outcome=outcome, error=error, lease_until=None)
                .returning(*t.nudge_outbox.c)
            ).first()
            if row is None:
                return False
            self._insert_nudge(
                conn, row.slack_user_id, row.arns, row.requested_by, now, outcome, error, channel, message_ts
            )
            return True

    @staticmethod
    def _outbox_item(row: Any) -> OutboxItem:
        values = dict(row._mapping)
        values["arns"] = tuple(values["arns"])
        return OutboxItem(**values)
