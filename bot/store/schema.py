"""The store's tables (SQLAlchemy Core), one definition for SQLite and PostgreSQL.

Every timestamp column is :class:`UTCDateTime`: timezone-aware UTC in Python, ``timestamptz``
on PostgreSQL and a fixed-width ISO text on SQLite (so comparisons in SQL stay correct).
Migrations in ``migrations/versions`` must produce exactly this schema (a test checks it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

STATUS_COLUMNS = ("violation", "compliant", "no_console", "exempt", "grace")

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime; naive datetimes are refused."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """To the database: UTC (naive on SQLite, whose text column compares as ISO); naive refused."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the store takes timezone-aware datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """From the database: a timezone-aware UTC datetime."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ts(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, UTCDateTime(), nullable=nullable)


scans = sa.Table(
    "scans",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.String(32), nullable=False),
    _ts("started_at"),
    _ts("finished_at", nullable=True),
    *(sa.Column(status, sa.Integer, nullable=False, server_default="0") for status in STATUS_COLUMNS),
    sa.Column("error", sa.Text, nullable=True),
    sa.Index(None, "account_id", "started_at"),
)

# One row per violation episode: open while fixed_at is NULL; at most one open episode per ARN.
episodes = sa.Table(
    "episodes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("arn", sa.String(2048), nullable=False),
    sa.Column("account_id", sa.String(32), nullable=False),
    sa.Column("user_name", sa.String(128), nullable=False),
    _ts("first_seen"),
    _ts("last_seen"),
    _ts("fixed_at", nullable=True),
    sa.Column("closed_as", sa.String(16), nullable=True),  # "exempted"; NULL: fixed (or still open)
    sa.Index(
        "ix_episodes_open_arn",
        "arn",
        unique=True,
        sqlite_where=sa.text("fixed_at IS NULL"),
        postgresql_where=sa.text("fixed_at IS NULL"),
    ),
    sa.Index(None, "account_id", "fixed_at"),
    sa.Index(None, "first_seen"),
    sa.Index(None, "fixed_at"),
)

exemptions = sa.Table(
    "exemptions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("arn", sa.String(2048), nullable=False),
    sa.Column("account_id", sa.String(32), nullable=False),
    sa.Column("user_name", sa.String(128), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    _ts("until"),
    sa.Column("granted_by", sa.String(64), nullable=False),
    _ts("granted_at"),
    sa.Column("revoked_by", sa.String(64), nullable=True),
    _ts("revoked_at", nullable=True),
    sa.Index(None, "arn"),
)

links = sa.Table(
    "links",
    metadata,
    sa.Column("arn", sa.String(2048), primary_key=True),
    sa.Column("slack_user_id", sa.String(64), nullable=False),
    sa.Column("set_by", sa.String(64), nullable=False),
    _ts("set_at"),
    sa.Index(None, "slack_user_id"),
)

# The Slack person each IAM user last resolved to (identity chain), and the one before a change.
identities = sa.Table(
    "identities",
    metadata,
    sa.Column("arn", sa.String(2048), primary_key=True),
    sa.Column("slack_user_id", sa.String(64), nullable=False),
    sa.Column("source", sa.String(128), nullable=False),
    _ts("seen_at"),
    sa.Column("previous_slack_user_id", sa.String(64), nullable=True),
    sa.Column("previous_source", sa.String(128), nullable=True),
    _ts("changed_at", nullable=True),
)

# One row per DM attempt; nudge_arns lists the IAM users it covered (counted per ARN).
nudges = sa.Table(
    "nudges",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("slack_user_id", sa.String(64), nullable=False),
    sa.Column("sent_by", sa.String(64), nullable=False),
    _ts("at"),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("channel", sa.String(64), nullable=True),
    sa.Column("message_ts", sa.String(64), nullable=True),
    sa.Index(None, "slack_user_id", "at"),
    sa.Index(None, "at"),
)

nudge_arns = sa.Table(
    "nudge_arns",
    metadata,
    sa.Column("nudge_id", sa.Integer, sa.ForeignKey("nudges.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("arn", sa.String(2048), primary_key=True),
    sa.Index(None, "arn"),
)

# The per-person cooldown: who holds the current window since when (one row per person).
nudge_windows = sa.Table(
    "nudge_windows",
    metadata,
    sa.Column("slack_user_id", sa.String(64), primary_key=True),
    _ts("claimed_at"),
    sa.Column("claimed_by", sa.String(64), nullable=False),
)

# Durable queue of DMs to send ("Nudge all"), one item per (batch, person).
nudge_outbox = sa.Table(
    "nudge_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("batch_id", sa.String(64), nullable=False),
    sa.Column("slack_user_id", sa.String(64), nullable=False),
    sa.Column("arns", sa.JSON, nullable=False),
    sa.Column("requested_by", sa.String(64), nullable=False),
    _ts("created_at"),
    sa.Column("lease_owner", sa.String(255), nullable=True),
    _ts("lease_until", nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    _ts("completed_at", nullable=True),
    sa.Column("outcome", sa.String(32), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.UniqueConstraint("batch_id", "slack_user_id"),
    sa.Index(None, "completed_at", "id"),
)

# A "Nudge all" batch: where its "finished" notice goes (the admin's response_url, else their DM),
# and that notice's own lease, so it goes once, from whichever process finishes the batch.
nudge_batches = sa.Table(
    "nudge_batches",
    metadata,
    sa.Column("batch_id", sa.String(64), primary_key=True),
    sa.Column("requested_by", sa.String(64), nullable=False),
    _ts("created_at"),
    sa.Column("response_url", sa.Text, nullable=True),
    sa.Column("notice_holder", sa.String(255), nullable=True),
    _ts("notice_lease_until", nullable=True),
    _ts("notified_at", nullable=True),
    sa.Index(None, "notified_at"),
)

# One row per (channel, period): the unique key is the digest claim, held as a lease. `holder`
# (a process, "host:pid") holds it until `lease_until` and renews it while it works; posting ends
# it (posted_at set, holder and lease_until cleared). An expired, unposted claim may be taken
# over by another process. `posted_by`: the process that claimed last (once posted, who posted).
# Escalation claims name their violation episode (`episode_id`): they live as long as it is open.
digests = sa.Table(
    "digests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("channel", sa.String(64), nullable=False),
    sa.Column("period_key", sa.String(64), nullable=False),
    sa.Column("posted_by", sa.String(255), nullable=False),
    _ts("claimed_at"),
    _ts("posted_at", nullable=True),
    sa.Column("message_ts", sa.String(64), nullable=True),
    sa.Column("thread_ts", sa.String(64), nullable=True),
    sa.Column("holder", sa.String(255), nullable=True),
    _ts("lease_until", nullable=True),
    sa.Column("episode_id", sa.Integer, nullable=True),
    sa.UniqueConstraint("channel", "period_key"),
    sa.Index(None, "channel", "posted_at"),
    sa.Index(None, "episode_id"),
)

# For each digest, the message that lists a given ARN (so it can be chat.update'd in place).
digest_rows = sa.Table(
    "digest_rows",
    metadata,
    sa.Column("digest_id", sa.Integer, sa.ForeignKey("digests.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("arn", sa.String(2048), primary_key=True),
    sa.Column("message_ts", sa.String(64), nullable=False),
)

actions = sa.Table(
    "actions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    _ts("at"),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.Text, nullable=True),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Index(None, "at"),
    sa.Index(None, "action", "at"),
)

# The last successful audit of each account, its findings as JSON (`bot.snapshot`): the App Home
# is built from these, in any process, without calling AWS. One row per account, replaced.
account_snapshots = sa.Table(
    "account_snapshots",
    metadata,
    sa.Column("account_id", sa.String(32), primary_key=True),
    _ts("audited_at"),
    _ts("saved_at"),
    sa.Column("findings", sa.Text, nullable=False),
    sa.Index(None, "saved_at"),
)

# Who opened the App Home, and when last: their Home is published again after each audit while
# the visit is recent. One row per person.
home_openers = sa.Table(
    "home_openers",
    metadata,
    sa.Column("slack_user_id", sa.String(64), primary_key=True),
    _ts("opened_at"),
    sa.Index(None, "opened_at"),
)

# Real-time events: one row per CloudTrail eventID, claimed (leased) by the process handling it and
# marked handled once done, so a redelivered or duplicated SQS message changes nothing twice.
# `steps` lists what the handler already did (a retry after a failure skips those).
event_claims = sa.Table(
    "event_claims",
    metadata,
    sa.Column("event_id", sa.String(128), primary_key=True),
    sa.Column("account_id", sa.String(32), nullable=False),
    sa.Column("event_name", sa.String(64), nullable=False),
    sa.Column("claimed_by", sa.String(255), nullable=False),
    _ts("claimed_at"),
    _ts("lease_until"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
    sa.Column("steps", sa.Text, nullable=False),
    _ts("handled_at", nullable=True),
    sa.Column("outcome", sa.String(64), nullable=True),
    sa.Index(None, "handled_at"),
)

# Alerts that go once per key (e.g. a console sign-in without MFA: once per episode per day).
alert_claims = sa.Table(
    "alert_claims",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("event_id", sa.String(128), nullable=False),
    _ts("claimed_at"),
    sa.Index(None, "claimed_at"),
)
