"""The bot's history and cross-process claims (SQLAlchemy 2, SQLite or PostgreSQL, Alembic).

`Store.open(config.database_url)` migrates and returns the store; `migrate(url)` is what
`python -m bot migrate` runs. Both raise StoreError (one line, password masked) when the
database cannot be opened.
"""

from bot.escalation import ESCALATION_PREFIX
from bot.store.base import CLAIM_LEASE, SCHEDULER, process_identity
from bot.store.db import StoreError, mask_url, migrate, normalize_url
from bot.store.episodes import EXEMPTED
from bot.store.nudges import NUDGE_OUTCOMES
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
from bot.store.store import Store

__all__ = [
    "CLAIM_LEASE",
    "ESCALATION_PREFIX",
    "EXEMPTED",
    "NUDGE_OUTCOMES",
    "SCHEDULER",
    "Action",
    "Changes",
    "Digest",
    "Episode",
    "EpisodeChanges",
    "EventClaim",
    "IdentityChange",
    "Nudge",
    "NudgeBatch",
    "NudgeClaim",
    "OutboxItem",
    "Scan",
    "Snapshot",
    "Store",
    "StoreError",
    "StoredExemption",
    "mask_url",
    "migrate",
    "normalize_url",
    "process_identity",
]
