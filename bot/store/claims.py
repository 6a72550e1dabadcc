"""Leases and once-only claims: digests (and escalations) posted once, real-time events handled once, alerts sent once.

Decided by the database (unique keys, INSERT ... ON CONFLICT, conditional UPDATE), never by
in-process locks, so they hold across processes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

import sqlalchemy as sa

from bot.escalation import ESCALATION_PREFIX
from bot.store import schema as t
from bot.store.base import CLAIM_LEASE, StoreBase, claim_row, lease_free, upsert, utc
from bot.store.records import Digest, EventClaim

logger = logging.getLogger("bot.store.store")


def _steps(text: str | None) -> tuple[str, ...]:
    return tuple(step for step in (text or "").split(",") if step)


class ClaimStore(StoreBase):
    """Digest and escalation claims (leases), event claims and alert claims."""

    # -- digests and escalations -------------------------------------------------------------------

    def claim_digest(
        self,
        channel: str,
        period_key: str,
        holder: str,
        now: datetime,
        lease: timedelta = CLAIM_LEASE,
        episode_id: int | None = None,
    ) -> bool:
        """Claim the digest of (channel, period_key) as a lease of `holder` until now + `lease`.

        Won when nobody claimed it yet, or when the claim is unposted and its lease expired (its
        holder died): a takeover. Decided by the database in one statement (INSERT ... ON CONFLICT
        DO UPDATE ... WHERE lease expired AND not posted, RETURNING), so across processes at most
        one caller holds a claim at a time and a posted claim is never won again. `episode_id`
        names the violation episode of an escalation claim (kept while it is open).
        """
        now = utc(now)
        d = t.digests.c
        with self._write() as conn:
            before = conn.execute(sa.select(d.holder).where(d.channel == channel, d.period_key == period_key)).first()
            taken = {"holder": holder, "posted_by": holder, "lease_until": now + lease}
            row = claim_row(
                conn,
                t.digests,
                {"channel": channel, "period_key": period_key, "claimed_at": now, "episode_id": episode_id, **taken},
                keys=["channel", "period_key"],
                returning=[d.id],
                take_over=taken,
                when=lease_free(d.posted_at, d.lease_until, now),
            )
        won = row is not None
        if won and before is not None:
            logger.warning(
                "took over the unposted claim %s %s: the lease of %s expired", channel, period_key, before.holder
            )
        return won

    def renew_claims(self, holder: str, now: datetime, lease: timedelta = CLAIM_LEASE) -> int:
        """Extend every unposted claim `holder` still holds to now + `lease` (a heartbeat); returns how many."""
        d = t.digests.c
        with self._write() as conn:
            return conn.execute(
                t.digests.update().where(d.holder == holder, d.posted_at.is_(None)).values(lease_until=utc(now) + lease)
            ).rowcount

    def holds_claim(self, channel: str, period_key: str, holder: str, now: datetime) -> bool:
        """True while `holder`'s lease on (channel, period_key) is live and unposted (check before posting)."""
        d = t.digests.c
        query = sa.select(d.id).where(
            d.channel == channel,
            d.period_key == period_key,
            d.holder == holder,
            d.posted_at.is_(None),
            d.lease_until > utc(now),
        )
        with self._read() as conn:
            return conn.execute(query).first() is not None

    def expired_claims(
        self, now: datetime, digests: Iterable[tuple[str, str]] = (), escalation_channel: str | None = None
    ) -> list[Digest]:
        """Unposted claims whose lease expired (their holder died): to be taken over.

        Of the (channel, period_key) pairs in `digests`, and the escalation claims in
        `escalation_channel` whose violation episode is still open. A read: no write lock.
        """
        d = t.digests.c
        wanted = [sa.and_(d.channel == channel, d.period_key == key) for channel, key in digests]
        if escalation_channel:
            open_ids = sa.select(t.episodes.c.id).where(t.episodes.c.fixed_at.is_(None))
            wanted.append(sa.and_(d.channel == escalation_channel, d.episode_id.in_(open_ids)))
        if not wanted:
            return []
        query = (
            sa.select(t.digests).where(lease_free(d.posted_at, d.lease_until, utc(now)), sa.or_(*wanted)).order_by(d.id)
        )
        with self._read() as conn:
            return [Digest(**row._mapping) for row in conn.execute(query)]

    def release_digest_claim(self, channel: str, period_key: str, holder: str) -> bool:
        """Undo a claim whose posting failed, so a retry can claim again.

        Only its holder can release it, and only while it is not marked posted. False if there
        was no such claim.
        """
        d = t.digests.c
        with self._write() as conn:
            result = conn.execute(
                t.digests.delete().where(
                    d.channel == channel,
                    d.period_key == period_key,
                    d.holder == holder,
                    d.posted_at.is_(None),
                )
            )
            return result.rowcount > 0

    def mark_digest_posted(
        self, channel: str, period_key: str, message_ts: str, now: datetime, thread_ts: str | None = None
    ) -> None:
        """Record where the claimed digest went (its message and thread ts); the lease ends.

        Marks once: a claim already marked posted keeps its first message.
        """
        d = t.digests.c
        with self._write() as conn:
            result = conn.execute(
                t.digests.update()
                .where(d.channel == channel, d.period_key == period_key, d.posted_at.is_(None))
                .values(
                    message_ts=message_ts,
                    thread_ts=thread_ts,
                    posted_at=utc(now),
                    holder=None,
                    lease_until=None,
                )
            )
            if result.rowcount:
                return
            found = conn.execute(sa.select(d.id).where(d.channel == channel, d.period_key == period_key)).first()
            if found is None:
                raise LookupError(f"no digest claimed for {channel} {period_key}")
            logger.warning("the digest %s %s was already marked posted: kept the first", channel, period_key)

    def set_digest_rows(self, channel: str, period_key: str, rows: Mapping[str, str]) -> None:
        """Record, per ARN, the ts of the digest message that lists it (replacing earlier ones)."""
        with self._write() as conn:
            digest_id = conn.execute(
                sa.select(t.digests.c.id).where(t.digests.c.channel == channel, t.digests.c.period_key == period_key)
            ).scalar()
            if digest_id is None:
                raise LookupError(f"no digest claimed for {channel} {period_key}")
            for arn, message_ts in rows.items():
                insert = upsert(conn, t.digest_rows).values(digest_id=digest_id, arn=arn, message_ts=message_ts)
                conn.execute(
                    insert.on_conflict_do_update(index_elements=["digest_id", "arn"], set_={"message_ts": message_ts})
                )

    def digest_rows(self, channel: str, period_key: str) -> dict[str, str]:
        """ARN -> ts of the message of that digest that lists it."""
        query = (
            sa.select(t.digest_rows.c.arn, t.digest_rows.c.message_ts)
            .join(t.digests, t.digests.c.id == t.digest_rows.c.digest_id)
            .where(t.digests.c.channel == channel, t.digests.c.period_key == period_key)
        )
        with self._read() as conn:
            return {row.arn: row.message_ts for row in conn.execute(query)}

    def last_digest(self, channel: str) -> Digest | None:
        """The latest digest actually posted to `channel` (for "since last digest"), or None.

        Escalation claims (period keys starting with ESCALATION_PREFIX) are not digests: skipped.
        """
        d = t.digests.c
        query = (
            sa.select(t.digests)
            .where(d.channel == channel, d.posted_at.is_not(None), d.period_key.not_like(f"{ESCALATION_PREFIX}%"))
            .order_by(d.posted_at.desc(), d.id.desc())
            .limit(1)
        )
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else Digest(**row._mapping)

    # -- real-time events and alerts ---------------------------------------------------------------

    def claim_event(
        self, event_id: str, account_id: str, event_name: str, owner: str, now: datetime, lease_seconds: float
    ) -> EventClaim:
        """Claim a CloudTrail event for handling: new, or not handled and its lease expired (or released).

        Decided by the database (INSERT ... ON CONFLICT DO UPDATE ... WHERE), so of several
        processes that received the same event, one handles it; once `finish_event` marks it
        handled, nobody ever claims it again.
        """
        now = utc(now)
        c = t.event_claims.c
        lease = now + timedelta(seconds=lease_seconds)
        with self._write() as conn:
            taken = {"claimed_by": owner, "claimed_at": now, "lease_until": lease}
            row = claim_row(
                conn,
                t.event_claims,
                {
                    "event_id": event_id,
                    "account_id": account_id,
                    "event_name": event_name,
                    **taken,
                    "attempts": 1,
                    "steps": "",
                },
                keys=["event_id"],
                returning=[c.attempts, c.steps],
                take_over={**taken, "attempts": c.attempts + 1},
                when=lease_free(c.handled_at, c.lease_until, now),
            )
            if row is not None:
                return EventClaim(event_id, won=True, handled=False, attempts=row.attempts, steps=_steps(row.steps))
            held = conn.execute(
                sa.select(c.handled_at, c.attempts, c.steps, c.outcome).where(c.event_id == event_id)
            ).one()
        return EventClaim(
            event_id,
            won=False,
            handled=held.handled_at is not None,
            attempts=held.attempts,
            steps=_steps(held.steps),
            outcome=held.outcome,
        )

    def event_step_done(self, event_id: str, step: str) -> None:
        """Note that the handler of a claimed event did `step` (a retry skips it)."""
        c = t.event_claims.c
        with self._write() as conn:
            current = conn.execute(sa.select(c.steps).where(c.event_id == event_id)).scalar()
            if current is None:
                raise LookupError(f"event {event_id} is not claimed")
            if step not in _steps(current):
                steps = ",".join((*_steps(current), step))
                conn.execute(t.event_claims.update().where(c.event_id == event_id).values(steps=steps))

    def finish_event(self, event_id: str, outcome: str, now: datetime) -> None:
        """Mark a claimed event handled (`outcome`: what it led to): it is never handled again."""
        c = t.event_claims.c
        with self._write() as conn:
            conn.execute(
                t.event_claims.update()
                .where(c.event_id == event_id, c.handled_at.is_(None))
                .values(handled_at=utc(now), outcome=outcome)
            )

    def release_event(self, event_id: str, owner: str, now: datetime) -> bool:
        """Give up the lease of an event that failed, so any process may retry it when it comes back."""
        c = t.event_claims.c
        with self._write() as conn:
            result = conn.execute(
                t.event_claims.update()
                .where(c.event_id == event_id, c.claimed_by == owner, c.handled_at.is_(None))
                .values(lease_until=utc(now))
            )
            return result.rowcount > 0

    def event_claim(self, event_id: str) -> EventClaim | None:
        """The claim of one event as stored (won is False: nobody is claiming by reading), or None."""
        c = t.event_claims.c
        with self._read() as conn:
            row = conn.execute(
                sa.select(c.handled_at, c.attempts, c.steps, c.outcome).where(c.event_id == event_id)
            ).first()
        if row is None:
            return None
        return EventClaim(event_id, False, row.handled_at is not None, row.attempts, _steps(row.steps), row.outcome)

    def claim_alert(self, key: str, event_id: str, now: datetime) -> bool:
        """Claim an alert that goes once per `key`; exactly one caller ever wins."""
        values = {"key": key, "event_id": event_id, "claimed_at": utc(now)}
        with self._write() as conn:
            return claim_row(conn, t.alert_claims, values, keys=["key"], returning=[t.alert_claims.c.key]) is not None
