"""Scans and violation episodes: each audit run of an account, and each stretch a user violated the rule."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from bot.models import STATUSES, Status
from bot.store import schema as t
from bot.store.base import StoreBase, upsert, utc
from bot.store.records import Changes, Episode, EpisodeChanges, Scan

EXEMPTED = "exempted"  # episodes.closed_as of a violation that became exempt (NULL: fixed)


def _episode(row: Any) -> Episode:
    return Episode(**row._mapping)


class EpisodeStore(StoreBase):
    """Audit runs (scans) and violation episodes."""

    def record_scan(
        self,
        account_id: str,
        started_at: datetime,
        finished_at: datetime | None,
        counts: Mapping[Status, int],
        error: str | None = None,
    ) -> int:
        """Record one audit run of an account (counts per status; missing ones are 0); returns its id."""
        unknown = set(counts) - set(t.STATUS_COLUMNS)
        if unknown:
            raise ValueError(f"unknown status counts: {sorted(unknown)}")
        values = {status: int(counts.get(status, 0)) for status in STATUSES}
        with self._write() as conn:
            return conn.execute(
                t.scans.insert()
                .values(
                    account_id=account_id,
                    started_at=utc(started_at),
                    finished_at=finished_at and utc(finished_at),
                    error=error,
                    **values,
                )
                .returning(t.scans.c.id)
            ).scalar_one()

    def latest_scans(self) -> dict[str, Scan]:
        """Each account's latest scan (by started_at, then id), by account id."""
        s = t.scans.c
        rank = sa.func.row_number().over(partition_by=s.account_id, order_by=(s.started_at.desc(), s.id.desc()))
        ranked = sa.select(t.scans, rank.label("rank")).subquery()
        query = sa.select(*(ranked.c[c.name] for c in t.scans.c)).where(ranked.c.rank == 1)
        with self._read() as conn:
            return {row.account_id: Scan(**row._mapping) for row in conn.execute(query)}

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
        now = utc(now)
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
                insert = upsert(conn, t.episodes).values(new)
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
            """Sorted by ARN (a stable order for callers and tests)."""
            return sorted(episodes, key=lambda e: e.arn)

        return EpisodeChanges(opened=by_arn(opened), continued=by_arn(continued), closed=by_arn(closed))

    def close_episode(self, arn: str, now: datetime, closed_as: str | None = None) -> Episode | None:
        """Close the open episode of `arn` (a live re-check found it fixed; `closed_as` EXEMPTED: it became
        exempt); None if none was open."""
        with self._write() as conn:
            row = conn.execute(
                t.episodes.update()
                .where(t.episodes.c.arn == arn, t.episodes.c.fixed_at.is_(None))
                .values(fixed_at=utc(now), closed_as=closed_as)
                .returning(*t.episodes.c)
            ).first()
        return None if row is None else _episode(row)

    def open_episode(self, arn: str, account_id: str, user_name: str, now: datetime) -> Episode | None:
        """Open an episode for `arn` now (a real-time event found it violating); None if one is already open.

        Decided by the unique index on open episodes, so of two processes opening it, one wins.
        """
        now = utc(now)
        values = {"arn": arn, "account_id": account_id, "user_name": user_name, "first_seen": now, "last_seen": now}
        with self._write() as conn:
            insert = upsert(conn, t.episodes).values(values)
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
        since = utc(since)
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
