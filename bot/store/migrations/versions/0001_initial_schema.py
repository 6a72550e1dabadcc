"""Initial schema: scans, episodes, exemptions, links, nudges, nudge windows and outbox, digests, actions.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Frozen: written out in full rather than read from bot.store.schema, so later schema edits
need a new revision (the schema test fails until there is one).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

OPEN = sa.text("fixed_at IS NULL")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create every table of the store."""
    op.create_table(
        "scans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("started_at", _ts(), nullable=False),
        sa.Column("finished_at", _ts(), nullable=True),
        sa.Column("violation", sa.Integer(), server_default="0", nullable=False),
        sa.Column("compliant", sa.Integer(), server_default="0", nullable=False),
        sa.Column("no_console", sa.Integer(), server_default="0", nullable=False),
        sa.Column("exempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("grace", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_scans"),
    )
    op.create_index("ix_scans_account_id_started_at", "scans", ["account_id", "started_at"])

    op.create_table(
        "episodes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("arn", sa.String(length=2048), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("user_name", sa.String(length=128), nullable=False),
        sa.Column("first_seen", _ts(), nullable=False),
        sa.Column("last_seen", _ts(), nullable=False),
        sa.Column("fixed_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_episodes"),
    )
    op.create_index("ix_episodes_open_arn", "episodes", ["arn"], unique=True, sqlite_where=OPEN, postgresql_where=OPEN)
    op.create_index("ix_episodes_account_id_fixed_at", "episodes", ["account_id", "fixed_at"])
    op.create_index("ix_episodes_first_seen", "episodes", ["first_seen"])
    op.create_index("ix_episodes_fixed_at", "episodes", ["fixed_at"])

    op.create_table(
        "exemptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("arn", sa.String(length=2048), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("user_name", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("until", _ts(), nullable=False),
        sa.Column("granted_by", sa.String(length=64), nullable=False),
        sa.Column("granted_at", _ts(), nullable=False),
        sa.Column("revoked_by", sa.String(length=64), nullable=True),
        sa.Column("revoked_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_exemptions"),
    )
    op.create_index("ix_exemptions_arn", "exemptions", ["arn"])

    op.create_table(
        "links",
        sa.Column("arn", sa.String(length=2048), nullable=False),
        sa.Column("slack_user_id", sa.String(length=64), nullable=False),
        sa.Column("set_by", sa.String(length=64), nullable=False),
        sa.Column("set_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("arn", name="pk_links"),
    )
    op.create_index("ix_links_slack_user_id", "links", ["slack_user_id"])

    op.create_table(
        "nudges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slack_user_id", sa.String(length=64), nullable=False),
        sa.Column("sent_by", sa.String(length=64), nullable=False),
        sa.Column("at", _ts(), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("channel", sa.String(length=64), nullable=True),
        sa.Column("message_ts", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_nudges"),
    )
    op.create_index("ix_nudges_slack_user_id_at", "nudges", ["slack_user_id", "at"])
    op.create_index("ix_nudges_at", "nudges", ["at"])

    op.create_table(
        "nudge_arns",
        sa.Column("nudge_id", sa.Integer(), nullable=False),
        sa.Column("arn", sa.String(length=2048), nullable=False),
        sa.ForeignKeyConstraint(["nudge_id"], ["nudges.id"], name="fk_nudge_arns_nudge_id_nudges", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("nudge_id", "arn", name="pk_nudge_arns"),
    )
    op.create_index("ix_nudge_arns_arn", "nudge_arns", ["arn"])

    op.create_table(
        "nudge_windows",
        sa.Column("slack_user_id", sa.String(length=64), nullable=False),
        sa.Column("claimed_at", _ts(), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("slack_user_id", name="pk_nudge_windows"),
    )

    op.create_table(
        "nudge_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("slack_user_id", sa.String(length=64), nullable=False),
        sa.Column("arns", sa.JSON(), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("lease_owner", sa.String(length=255), nullable=True),
        sa.Column("lease_until", _ts(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("completed_at", _ts(), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_nudge_outbox"),
        sa.UniqueConstraint("batch_id", "slack_user_id", name="uq_nudge_outbox_batch_id_slack_user_id"),
    )
    op.create_index("ix_nudge_outbox_completed_at_id", "nudge_outbox", ["completed_at", "id"])

    op.create_table(
        "digests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("period_key", sa.String(length=64), nullable=False),
        sa.Column("posted_by", sa.String(length=255), nullable=False),
        sa.Column("claimed_at", _ts(), nullable=False),
        sa.Column("posted_at", _ts(), nullable=True),
        sa.Column("message_ts", sa.String(length=64), nullable=True),
        sa.Column("thread_ts", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_digests"),
        sa.UniqueConstraint("channel", "period_key", name="uq_digests_channel_period_key"),
    )
    op.create_index("ix_digests_channel_posted_at", "digests", ["channel", "posted_at"])

    op.create_table(
        "digest_rows",
        sa.Column("digest_id", sa.Integer(), nullable=False),
        sa.Column("arn", sa.String(length=2048), nullable=False),
        sa.Column("message_ts", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["digest_id"], ["digests.id"], name="fk_digest_rows_digest_id_digests", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("digest_id", "arn", name="pk_digest_rows"),
    )

    op.create_table(
        "actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", _ts(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_actions"),
    )
    op.create_index("ix_actions_at", "actions", ["at"])
    op.create_index("ix_actions_action_at", "actions", ["action", "at"])


def downgrade() -> None:
    """Drop every table of the store (children first)."""
    for table in (
        "actions",
        "digest_rows",
        "digests",
        "nudge_outbox",
        "nudge_windows",
        "nudge_arns",
        "nudges",
        "links",
        "exemptions",
        "episodes",
        "scans",
    ):
        op.drop_table(table)
