"""The store: the bot's history and the claims that make several processes act once.

Every method runs in its own short transaction. Timestamps go in and come out timezone-aware
UTC; the clock is always passed in (`now`). Exactly-once claims are decided by the database
(unique keys, INSERT ... ON CONFLICT, conditional UPDATE ... RETURNING), never by in-process
locks, so they hold across processes on SQLite (WAL, busy timeout) and PostgreSQL alike.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from bot.store import schema as t
from bot.store.db import open_engine, write_transaction
from bot.store.records import (
    Action,
    Changes,
    Digest,
    Episode,
    EpisodeChanges,
    EventClaim,
    IdentityChange,
    Nudge,
    NudgeBatch,
    NudgeClaim,
    OutboxItem,
    Scan,
    Snapshot,
    StoredExemption,
)

# "unknown": Slack may have posted the DM but its answer was lost (timed out, unreadable): the
# cooldown window stays claimed so no second DM goes, and the digest row says "delivery unknown".
NUDGE_OUTCOMES = ("sent", "failed", "skipped_cooldown", "unknown")
EXEMPTED = "exempted"  # episodes.closed_as of a violation that became exempt (NULL: fixed)
SCHEDULER = "scheduler"  # `sent_by` / `requested_by` of nudges nobody clicked for
# Period keys of claims in the digests table that are not digests (one escalation per violation
# episode): `last_digest` never returns them.
ESCALATION_PREFIX = "escalation:"
CLAIM_LEASE = timedelta(minutes=5)  # how long a claim holds without a renewal (CLAIM_LEASE_SECONDS)

logger = logging.getLogger(__name__)


def process_identity() -> str:
    """This process as "hostname:pid", for `posted_by` and lease owners."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
    return value.astimezone(UTC)


def _insert(conn: Connection, table: sa.Table) -> Any:
    """INSERT with ON CONFLICT support: the only place the two dialects differ."""
    return (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


def _steps(text: str | None) -> tuple[str, ...]:
    return tuple(step for step in (text or "").split(",") if step)


def _episode(row: Any) -> Episode:
    return Episode(**row._mapping)


class Store:
    """The bot's persistent state. Open with `Store.open(url)`; safe to share between threads."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

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

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def _write(self) -> AbstractContextManager[Connection]:
        return write_transaction(self.engine)

    # -- scans -------------------------------------------------------------------------------

    def record_scan(
        self,
        account_id: str,
        started_at: datetime,
        finished_at: datetime | None,
        counts: Mapping[str, int],
        error: str | None = None,
    ) -> int:
        """Record one audit run of an account (counts per status; missing ones are 0); returns its id."""
        unknown = set(counts) - set(t.STATUS_COLUMNS)
        if unknown:
            raise ValueError(f"unknown status counts: {sorted(unknown)}")
        values = {status: int(counts.get(status, 0)) for status in t.STATUS_COLUMNS}
        with self._write() as conn:
            return conn.execute(
                t.scans.insert()
                .values(
                    account_id=account_id,
                    started_at=_utc(started_at),
                    finished_at=finished_at and _utc(finished_at),
                    error=error,
                    **values,
                )
                .returning(t.scans.c.id)
            ).scalar_one()

    def scans(self, account_id: str | None = None, limit: int = 50) -> list[Scan]:
        """The latest scans, newest first (of one account, or all)."""
        query = sa.select(t.scans).order_by(t.scans.c.started_at.desc(), t.scans.c.id.desc()).limit(limit)
        if account_id is not None:
            query = query.where(t.scans.c.account_id == account_id)
        with self._read() as conn:
            return [Scan(**row._mapping) for row in conn.execute(query)]

    def latest_scans(self) -> dict[str, Scan]:
        """Each account's latest scan (by started_at, then id), by account id."""
        s = t.scans.c
        rank = sa.func.row_number().over(partition_by=s.account_id, order_by=(s.started_at.desc(), s.id.desc()))
        ranked = sa.select(t.scans, rank.label("rank")).subquery()
        query = sa.select(*(ranked.c[c.name] for c in t.scans.c)).where(ranked.c.rank == 1)
        with self._read() as conn:
            return {row.account_id: Scan(**row._mapping) for row in conn.execute(query)}

    # -- the last audit's findings (App Home) --------------------------------------------------

    def save_snapshot(self, account_id: str, audited_at: datetime, findings: str, now: datetime) -> None:
        """Keep `findings` (JSON) as the last successful audit of `account_id`, replacing the one before."""
        values = {"account_id": account_id, "audited_at": _utc(audited_at), "saved_at": _utc(now), "findings": findings}
        with self._write() as conn:
            insert = _insert(conn, t.account_snapshots).values(values)
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
        values = {"slack_user_id": slack_user_id, "opened_at": _utc(now)}
        with self._write() as conn:
            insert = _insert(conn, t.home_openers).values(values)
            conn.execute(insert.on_conflict_do_update(index_elements=["slack_user_id"], set_=values))

    def recent_home_openers(self, since: datetime, limit: int) -> list[str]:
        """The people who opened the App Home after `since`, the latest first, at most `limit`."""
        h = t.home_openers.c
        query = (
            sa.select(h.slack_user_id)
            .where(h.opened_at > _utc(since))
            .order_by(h.opened_at.desc(), h.slack_user_id)
            .limit(max(0, limit))
        )
        with self._read() as conn:
            return list(conn.execute(query).scalars())

    # -- violation episodes ------------------------------------------------------------------

    def sync_episodes(
        self, account_id: str, violating: Iterable[tuple[str, str]], now: datetime, exempted: Iterable[str] = ()
    ) -> EpisodeChanges:
        """Make the open episodes of `account_id` match `violating` [(arn, user_name)] as of `now`.

        Opens an episode per new violator, bumps last_seen of continuing ones and closes
        (fixed_at=now) open ones no longer violating: as "exempted" (`closed_as`) the ARNs in
        `exempted` (they are exempt now, not fixed), the others as fixed. Call it ONLY after a successful scan of
        the account: the list of a failed scan is incomplete and would close episodes of people
        who are still violating. A failed scan must leave episodes alone.
        """
        now = _utc(now)
        names = dict(violating)
        ep = t.episodes.c
        is_open = sa.and_(ep.account_id == account_id, ep.fixed_at.is_(None))
        with self._write() as conn:
            already = set(conn.execute(sa.select(ep.arn).where(is_open)).scalars())
            opened: list[Episode] = []
            new = [
                {"arn": arn, "account_id": account_id, "user_name": name, "first_seen": now, "last_seen": now}
                for arn, name in names.items()
                if arn not in already
            ]
            if new:
                insert = _insert(conn, t.episodes).values(new)
                insert = insert.on_conflict_do_nothing(index_elements=["arn"], index_where=ep.fixed_at.is_(None))
                opened = [_episode(row) for row in conn.execute(insert.returning(*t.episodes.c))]
            continued: list[Episode] = []
            seen = [arn for arn in names if arn in already]
            if seen:
                bump = t.episodes.update().where(is_open, ep.arn.in_(seen)).values(last_seen=now)
                continued = [_episode(row) for row in conn.execute(bump.returning(*t.episodes.c))]
            exempt = [arn for arn in dict.fromkeys(exempted) if arn not in names]
            closing = sa.and_(is_open, ep.arn.not_in(list(names)))
            closed = []
            if exempt:
                close = t.episodes.update().where(closing, ep.arn.in_(exempt)).values(fixed_at=now, closed_as=EXEMPTED)
                closed += [_episode(row) for row in conn.execute(close.returning(*t.episodes.c))]
            close = t.episodes.update().where(closing).values(fixed_at=now)
            closed += [_episode(row) for row in conn.execute(close.returning(*t.episodes.c))]

        def by_arn(episodes: list[Episode]) -> list[Episode]:
            return sorted(episodes, key=lambda e: e.arn)

        return EpisodeChanges(opened=by_arn(opened), continued=by_arn(continued), closed=by_arn(closed))

    def close_episode(self, arn: str, now: datetime, closed_as: str | None = None) -> Episode | None:
        """Close the open episode of `arn` (a live re-check found it fixed; `closed_as` EXEMPTED: it became
        exempt); None if none was open."""
        with self._write() as conn:
            row = conn.execute(
                t.episodes.update()
                .where(t.episodes.c.arn == arn, t.episodes.c.fixed_at.is_(None))
                .values(fixed_at=_utc(now), closed_as=closed_as)
                .returning(*t.episodes.c)
            ).first()
        return None if row is None else _episode(row)

    def open_episode(self, arn: str, account_id: str, user_name: str, now: datetime) -> Episode | None:
        """Open an episode for `arn` now (a real-time event found it violating); None if one is already open.

        Decided by the unique index on open episodes, so of two processes opening it, one wins.
        """
        now = _utc(now)
        values = {"arn": arn, "account_id": account_id, "user_name": user_name, "first_seen": now, "last_seen": now}
        with self._write() as conn:
            insert = _insert(conn, t.episodes).values(values)
            insert = insert.on_conflict_do_nothing(index_elements=["arn"], index_where=t.episodes.c.fixed_at.is_(None))
            row = conn.execute(insert.returning(*t.episodes.c)).first()
        return None if row is None else _episode(row)

    def open_episode_of(self, account_id: str, user_name: str) -> Episode | None:
        """The open episode of the IAM user `user_name` of `account_id` (events name users, not ARNs), or None."""
        ep = t.episodes.c
        query = sa.select(t.episodes).where(
            ep.account_id == account_id, ep.user_name == user_name, ep.fixed_at.is_(None)
        )
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else _episode(row)

    def open_episodes(self, account_id: str | None = None) -> list[Episode]:
        """Open episodes (oldest first_seen first), of one account or all."""
        query = sa.select(t.episodes).where(t.episodes.c.fixed_at.is_(None))
        if account_id is not None:
            query = query.where(t.episodes.c.account_id == account_id)
        with self._read() as conn:
            return [_episode(row) for row in conn.execute(query.order_by(t.episodes.c.first_seen, t.episodes.c.arn))]

    def changes_since(self, since: datetime) -> Changes:
        """Episodes opened after `since` (new), and closed after it: fixed, or exempted (exempt now, never "fixed")."""
        since = _utc(since)
        ep = t.episodes.c
        with self._read() as conn:
            new = conn.execute(sa.select(t.episodes).where(ep.first_seen > since).order_by(ep.first_seen, ep.arn))
            new_episodes = [_episode(row) for row in new]
            closed = conn.execute(sa.select(t.episodes).where(ep.fixed_at > since).order_by(ep.fixed_at, ep.arn))
            closed_episodes = [_episode(row) for row in closed]
        return Changes(
            new=new_episodes,
            fixed=[e for e in closed_episodes if e.closed_as != EXEMPTED],
            exempted=[e for e in closed_episodes if e.closed_as == EXEMPTED],
        )

    # -- exemptions ----------------------------------------------------------------------------

    def grant_exemption(
        self,
        arn: str,
        account_id: str,
        user_name: str,
        reason: str,
        until: datetime,
        granted_by: str,
        now: datetime,
    ) -> StoredExemption:
        """Exempt `arn` until `until` (must be after `now`); replaces (revokes) an active one."""
        now, until = _utc(now), _utc(until)
        if until <= now:
            raise ValueError(f"exemption end {until.isoformat()} is not after now ({now.isoformat()})")
        with self._write() as conn:
            conn.execute(
                t.exemptions.update()
                .where(self._active_exemption(now), t.exemptions.c.arn == arn)
                .values(revoked_by=granted_by, revoked_at=now)
            )
            row = conn.execute(
                t.exemptions.insert()
                .values(
                    arn=arn,
                    account_id=account_id,
                    user_name=user_name,
                    reason=reason,
                    until=until,
                    granted_by=granted_by,
                    granted_at=now,
                )
                .returning(*t.exemptions.c)
            ).one()
        return StoredExemption(**row._mapping)

    def revoke_exemption(self, arn: str, by: str, now: datetime) -> bool:
        """End the active exemption of `arn` now; False if it had none."""
        now = _utc(now)
        with self._write() as conn:
            result = conn.execute(
                t.exemptions.update()
                .where(self._active_exemption(now), t.exemptions.c.arn == arn)
                .values(revoked_by=by, revoked_at=now)
            )
            return result.rowcount > 0

    def active_exemptions(self, now: datetime) -> dict[str, StoredExemption]:
        """ARN -> the exemption in force at `now` (expired and revoked ones are left out)."""
        query = sa.select(t.exemptions).where(self._active_exemption(_utc(now)))
        with self._read() as conn:
            rows = conn.execute(query.order_by(t.exemptions.c.granted_at, t.exemptions.c.id))
            return {row.arn: StoredExemption(**row._mapping) for row in rows}

    @staticmethod
    def _active_exemption(now: datetime) -> sa.ColumnElement[bool]:
        return sa.and_(t.exemptions.c.revoked_at.is_(None), t.exemptions.c.until > now)

    # -- identity links ------------------------------------------------------------------------

    def set_link(self, arn: str, slack_user_id: str, set_by: str, now: datetime) -> None:
        """Link IAM user `arn` to Slack user `slack_user_id` (replacing any earlier link)."""
        values = {"arn": arn, "slack_user_id": slack_user_id, "set_by": set_by, "set_at": _utc(now)}
        with self._write() as conn:
            insert = _insert(conn, t.links).values(values)
            conn.execute(insert.on_conflict_do_update(index_elements=["arn"], set_=values))

    def remove_link(self, arn: str) -> bool:
        """Forget the link of `arn`; False if there was none."""
        with self._write() as conn:
            return conn.execute(t.links.delete().where(t.links.c.arn == arn)).rowcount > 0

    def links(self) -> dict[str, str]:
        """Every stored link: IAM user ARN -> Slack user ID."""
        with self._read() as conn:
            return {
                row.arn: row.slack_user_id for row in conn.execute(sa.select(t.links.c.arn, t.links.c.slack_user_id))
            }

    def note_identities(self, current: Mapping[str, tuple[str, str]], now: datetime) -> list[IdentityChange]:
        """Remember who each ARN resolves to now ({arn: (slack_user_id, source)}); returns the changes.

        The first sighting of an ARN is no change. A change is decided by a conditional UPDATE
        (on the person seen before), so of several processes noting it at once exactly one gets it.
        """
        now = _utc(now)
        i = t.identities.c
        wanted = list(current)
        known: dict[str, Any] = {}
        with self._read() as conn:
            for start in range(0, len(wanted), 500):
                rows = conn.execute(sa.select(t.identities).where(i.arn.in_(wanted[start : start + 500])))
                known.update({row.arn: row for row in rows})
        new = [
            {"arn": arn, "slack_user_id": person, "source": source, "seen_at": now}
            for arn, (person, source) in current.items()
            if arn not in known
        ]
        moved = {arn: value for arn, value in current.items() if arn in known and known[arn].slack_user_id != value[0]}
        if not new and not moved:
            return []
        changes: list[IdentityChange] = []
        with self._write() as conn:
            if new:
                conn.execute(_insert(conn, t.identities).values(new).on_conflict_do_nothing(index_elements=["arn"]))
            for arn, (person, source) in sorted(moved.items()):
                before = known[arn]
                updated = conn.execute(
                    t.identities.update()
                    .where(i.arn == arn, i.slack_user_id == before.slack_user_id)
                    .values(
                        slack_user_id=person,
                        source=source,
                        seen_at=now,
                        previous_slack_user_id=before.slack_user_id,
                        previous_source=before.source,
                        changed_at=now,
                    )
                )
                if updated.rowcount:
                    changes.append(IdentityChange(arn, person, source, before.slack_user_id, before.source, now))
        return changes

    def identities(self, arns: Iterable[str]) -> dict[str, IdentityChange]:
        """ARN -> the person it last resolved to, with the one before the last change (if it ever changed)."""
        wanted = list(dict.fromkeys(arns))
        found: dict[str, IdentityChange] = {}
        with self._read() as conn:
            for start in range(0, len(wanted), 500):
                query = sa.select(t.identities).where(t.identities.c.arn.in_(wanted[start : start + 500]))
                for row in conn.execute(query):
                    found[row.arn] = IdentityChange(
                        row.arn,
                        row.slack_user_id,
                        row.source,
                        row.previous_slack_user_id,
                        row.previous_source,
                        row.changed_at,
                    )
        return found

    def arns_for_slack_user(self, slack_user_id: str) -> list[str]:
        """The IAM user ARNs linked to one Slack user, sorted."""
        query = sa.select(t.links.c.arn).where(t.links.c.slack_user_id == slack_user_id).order_by(t.links.c.arn)
        with self._read() as conn:
            return list(conn.execute(query).scalars())

    # -- nudges: the log -----------------------------------------------------------------------

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
            return self._insert_nudge(
                conn, slack_user_id, arns, sent_by, _utc(now), outcome, error, channel, message_ts
            )

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

    def nudge_count(self, arn: str) -> int:
        """Number of DMs actually sent about one ARN."""
        return self.nudge_counts([arn])[arn]

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
            query = query.where(t.nudges.c.at >= _utc(since))
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

    # -- nudges: the per-person cooldown claim -----------------------------------------------

    def claim_nudge_window(self, slack_user_id: str, cooldown: timedelta, now: datetime, claimed_by: str) -> NudgeClaim:
        """Claim the right to DM `slack_user_id` now: at most one winner per person per cooldown.

        Atomic in the database (INSERT ... ON CONFLICT DO UPDATE ... WHERE the last claim is at
        least `cooldown` old), so it holds across processes. When not won, the claim returned
        names the earlier nudge (when, by whom). Release it with `release_nudge_window` if the
        DM could not be sent at all.
        """
        now = _utc(now)
        w = t.nudge_windows.c
        with self._write() as conn:
            insert = _insert(conn, t.nudge_windows).values(
                slack_user_id=slack_user_id, claimed_at=now, claimed_by=claimed_by
            )
            insert = insert.on_conflict_do_update(
                index_elements=["slack_user_id"],
                set_={"claimed_at": insert.excluded.claimed_at, "claimed_by": insert.excluded.claimed_by},
                where=w.claimed_at <= now - cooldown,
            )
            won = conn.execute(insert.returning(w.slack_user_id)).first() is not None
            if won:
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

    # -- nudges: the outbox ("Nudge all" survives a restart) ---------------------------------

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
        now = _utc(now)
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
            batch = _insert(conn, t.nudge_batches).values(
                batch_id=batch_id, requested_by=requested_by, created_at=now, response_url=response_url
            )
            conn.execute(batch.on_conflict_do_nothing(index_elements=["batch_id"]))
            insert = _insert(conn, t.nudge_outbox).values(list(rows.values()))
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
        free = sa.or_(b.notice_lease_until.is_(None), b.notice_lease_until <= _utc(now))
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
        now = _utc(now)
        b, o = t.nudge_batches.c, t.nudge_outbox.c
        free = sa.or_(b.notice_lease_until.is_(None), b.notice_lease_until <= now)
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
                .values(notified_at=_utc(now), response_url=None, notice_holder=None, notice_lease_until=None)
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
        now = _utc(now)
        o = t.nudge_outbox.c
        claimable = sa.and_(o.completed_at.is_(None), sa.or_(o.lease_until.is_(None), o.lease_until <= now))
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
        now = _utc(now)
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

    # -- digests -------------------------------------------------------------------------------

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
        now = _utc(now)
        d = t.digests.c
        with self._write() as conn:
            before = conn.execute(sa.select(d.holder).where(d.channel == channel, d.period_key == period_key)).first()
            insert = _insert(conn, t.digests).values(
                channel=channel,
                period_key=period_key,
                posted_by=holder,
                claimed_at=now,
                holder=holder,
                lease_until=now + lease,
                episode_id=episode_id,
            )
            insert = insert.on_conflict_do_update(
                index_elements=["channel", "period_key"],
                set_={"holder": holder, "posted_by": holder, "lease_until": now + lease},
                where=sa.and_(d.posted_at.is_(None), sa.or_(d.lease_until.is_(None), d.lease_until <= now)),
            )
            won = conn.execute(insert.returning(d.id)).first() is not None
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
                t.digests.update()
                .where(d.holder == holder, d.posted_at.is_(None))
                .values(lease_until=_utc(now) + lease)
            ).rowcount

    def holds_claim(self, channel: str, period_key: str, holder: str, now: datetime) -> bool:
        """True while `holder`'s lease on (channel, period_key) is live and unposted (check before posting)."""
        d = t.digests.c
        query = sa.select(d.id).where(
            d.channel == channel,
            d.period_key == period_key,
            d.holder == holder,
            d.posted_at.is_(None),
            d.lease_until > _utc(now),
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
            sa.select(t.digests)
            .where(d.posted_at.is_(None), sa.or_(d.lease_until.is_(None), d.lease_until <= _utc(now)), sa.or_(*wanted))
            .order_by(d.id)
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
                    posted_at=_utc(now),
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
                insert = _insert(conn, t.digest_rows).values(digest_id=digest_id, arn=arn, message_ts=message_ts)
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

    # -- real-time events ------------------------------------------------------------------------

    def claim_event(
        self, event_id: str, account_id: str, event_name: str, owner: str, now: datetime, lease_seconds: float
    ) -> EventClaim:
        """Claim a CloudTrail event for handling: new, or not handled and its lease expired (or released).

        Decided by the database (INSERT ... ON CONFLICT DO UPDATE ... WHERE), so of several
        processes that received the same event, one handles it; once `finish_event` marks it
        handled, nobody ever claims it again.
        """
        now = _utc(now)
        c = t.event_claims.c
        lease = now + timedelta(seconds=lease_seconds)
        with self._write() as conn:
            insert = _insert(conn, t.event_claims).values(
                event_id=event_id,
                account_id=account_id,
                event_name=event_name,
                claimed_by=owner,
                claimed_at=now,
                lease_until=lease,
                attempts=1,
                steps="",
            )
            insert = insert.on_conflict_do_update(
                index_elements=["event_id"],
                set_={"claimed_by": owner, "claimed_at": now, "lease_until": lease, "attempts": c.attempts + 1},
                where=sa.and_(c.handled_at.is_(None), c.lease_until <= now),
            )
            row = conn.execute(insert.returning(c.attempts, c.steps)).first()
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
                .values(handled_at=_utc(now), outcome=outcome)
            )

    def release_event(self, event_id: str, owner: str, now: datetime) -> bool:
        """Give up the lease of an event that failed, so any process may retry it when it comes back."""
        c = t.event_claims.c
        with self._write() as conn:
            result = conn.execute(
                t.event_claims.update()
                .where(c.event_id == event_id, c.claimed_by == owner, c.handled_at.is_(None))
                .values(lease_until=_utc(now))
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
        with self._write() as conn:
            insert = _insert(conn, t.alert_claims).values(key=key, event_id=event_id, claimed_at=_utc(now))
            insert = insert.on_conflict_do_nothing(index_elements=["key"])
            return conn.execute(insert.returning(t.alert_claims.c.key)).first() is not None

    # -- audit trail ---------------------------------------------------------------------------

    def record_action(
        self, actor: str, action: str, target: str | None, detail: str | None, now: datetime, outcome: str = "ok"
    ) -> int:
        """Log an admin action (exempt, unexempt, link, nudge, digest, refused commands...); returns its id."""
        with self._write() as conn:
            return conn.execute(
                t.actions.insert()
                .values(actor=actor, action=action, target=target, detail=detail, at=_utc(now), outcome=outcome)
                .returning(t.actions.c.id)
            ).scalar_one()

    def latest_actions(self, action: str, targets: Iterable[str]) -> dict[str, Action]:
        """Target -> the latest audit-trail entry of `action` about it (targets without one are left out)."""
        wanted = list(dict.fromkeys(targets))
        found: dict[str, Action] = {}
        a = t.actions.c
        with self._read() as conn:
            for start in range(0, len(wanted), 500):
                query = (
                    sa.select(t.actions)
                    .where(a.action == action, a.target.in_(wanted[start : start + 500]))
                    .order_by(a.at, a.id)
                )
                found.update({row.target: Action(**row._mapping) for row in conn.execute(query)})
        return found

    def actions(self, limit: int = 50, action: str | None = None, target: str | None = None) -> list[Action]:
        """The latest audit-trail entries, newest first (optionally of one action, and one target)."""
        query = sa.select(t.actions).order_by(t.actions.c.at.desc(), t.actions.c.id.desc()).limit(limit)
        if action is not None:
            query = query.where(t.actions.c.action == action)
        if target is not None:
            query = query.where(t.actions.c.target == target)
        with self._read() as conn:
            return [Action(**row._mapping) for row in conn.execute(query)]

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
        cutoff = _utc(now) - timedelta(days=older_than_days)
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
