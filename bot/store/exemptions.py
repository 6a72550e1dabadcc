"""Who an IAM user is and whether it is excused: exemptions, identity links set from Slack, resolved identities."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from bot.store import schema as t
from bot.store.base import StoreBase, upsert, utc
from bot.store.records import IdentityChange, StoredExemption


class ExemptionStore(StoreBase):
    """Time-limited exemptions, identity links and the identities each ARN resolved to."""

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
        now, until = utc(now), utc(until)
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
        now = utc(now)
        with self._write() as conn:
            result = conn.execute(
                t.exemptions.update()
                .where(self._active_exemption(now), t.exemptions.c.arn == arn)
                .values(revoked_by=by, revoked_at=now)
            )
            return result.rowcount > 0

    def active_exemptions(self, now: datetime) -> dict[str, StoredExemption]:
        """ARN -> the exemption in force at `now` (expired and revoked ones are left out)."""
        query = sa.select(t.exemptions).where(self._active_exemption(utc(now)))
        with self._read() as conn:
            rows = conn.execute(query.order_by(t.exemptions.c.granted_at, t.exemptions.c.id))
            return {row.arn: StoredExemption(**row._mapping) for row in rows}

    @staticmethod
    def _active_exemption(now: datetime) -> sa.ColumnElement[bool]:
        return sa.and_(t.exemptions.c.revoked_at.is_(None), t.exemptions.c.until > now)

    def set_link(self, arn: str, slack_user_id: str, set_by: str, now: datetime) -> None:
        """Link IAM user `arn` to Slack user `slack_user_id` (replacing any earlier link)."""
        values = {"arn": arn, "slack_user_id": slack_user_id, "set_by": set_by, "set_at": utc(now)}
        with self._write() as conn:
            insert = upsert(conn, t.links).values(values)
            conn.execute(insert.on_conflict_do_update(index_elements=["arn"], set_=values))

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
        now = utc(now)
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
                conn.execute(upsert(conn, t.identities).values(new).on_conflict_do_nothing(index_elements=["arn"]))
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
