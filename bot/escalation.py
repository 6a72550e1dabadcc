"""Escalation, the pure part: which open violations are overdue, and the key that escalates each once.

A violation is overdue when its episode is still open ESCALATE_AFTER_DAYS (or more) after the
first DM about it (the first nudge sent at or after the episode's first_seen; a nudge about an
earlier episode of the same IAM user does not count). The digest lists overdue violations; each
episode is posted to ESCALATION_CHANNEL once: `bot.digest` claims `escalation_key(item)` in the
store (`Store.claim_digest(ESCALATION_CHANNEL, key, ...)`), so one process posts it, once, ever.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.models import Episode

# Period keys of claims in the store's digests table that are not digests (one escalation per
# violation episode): `Store.last_digest` never returns them.
ESCALATION_PREFIX = "escalation:"


@dataclass(frozen=True)
class Overdue:
    """An open violation episode still open `days` whole days after its first nudge."""

    episode_id: int
    arn: str
    account_id: str
    user_name: str
    first_seen: datetime
    first_nudge: datetime
    days: int


def select_overdue(
    episodes: Iterable[Episode], first_nudges: Mapping[str, datetime], now: datetime, after_days: int
) -> list[Overdue]:
    """The open episodes first nudged (since they opened) at least `after_days` days before `now`.

    `first_nudges` maps an ARN to its first nudge (`Store.first_nudges`); never nudged: not overdue.
    Longest overdue first, then account and user name.
    """
    limit = timedelta(days=after_days)
    found = []
    for episode in episodes:
        first = first_nudges.get(episode.arn)
        if episode.fixed_at is not None or first is None or first < episode.first_seen or now - first < limit:
            continue
        found.append(
            Overdue(
                episode_id=episode.id,
                arn=episode.arn,
                account_id=episode.account_id,
                user_name=episode.user_name,
                first_seen=episode.first_seen,
                first_nudge=first,
                days=(now - first).days,
            )
        )
    found.sort(key=lambda o: (o.first_nudge, o.account_id, o.user_name.lower()))
    return found


def escalation_key(item: Overdue) -> str:
    """The claim's period key: one per violation episode (its id and first_seen), at most 64 characters."""
    return f"{ESCALATION_PREFIX}{item.episode_id}:{item.first_seen.astimezone(UTC):%Y%m%dT%H%M%SZ}"
