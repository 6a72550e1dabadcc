"""The audit trail: who did what to whom (exempt, unexempt, link, nudge, digest, refused commands)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa

from bot.store import schema as t
from bot.store.base import StoreBase, utc
from bot.store.records import Action


class TrailStore(StoreBase):
    """Admin actions, logged and read back."""

    def record_action(
        self, actor: str, action: str, target: str | None, detail: str | None, now: datetime, outcome: str = "ok"
    ) -> int:
        """Log an admin action (exempt, unexempt, link, nudge, digest, refused commands...); returns its id."""
        with self._write() as conn:
            return conn.execute(
                t.actions.insert()
                .values(actor=actor, action=action, target=target, detail=detail, at=utc(now), outcome=outcome)
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
