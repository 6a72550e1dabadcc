"""Claims become leases: digests get holder, lease_until and episode_id; "Nudge all" batches are kept.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

Existing databases: a posted claim stays posted (posted_at is what says so); an unposted one
becomes a lease of its claimant that has already expired, so another process may take it over;
escalation claims get the episode id their period key names (`escalation:<id>:<first_seen>`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ESCALATION_PREFIX = "escalation:"


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _episode_id(period_key: str) -> int | None:
    head = period_key[len(ESCALATION_PREFIX) :].split(":", 1)[0]
    return int(head) if head.isdigit() else None


def upgrade() -> None:
    """Add the lease columns to digests (filled for existing rows) and create nudge_batches."""
    with op.batch_alter_table("digests") as batch:
        batch.add_column(sa.Column("holder", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("lease_until", _ts(), nullable=True))
        batch.add_column(sa.Column("episode_id", sa.Integer(), nullable=True))
        batch.create_index("ix_digests_episode_id", ["episode_id"])
    conn = op.get_bind()
    digests = sa.table(
        "digests",
        sa.column("id", sa.Integer),
        sa.column("period_key", sa.String),
        sa.column("posted_by", sa.String),
        sa.column("claimed_at", _ts()),
        sa.column("posted_at", _ts()),
        sa.column("holder", sa.String),
        sa.column("lease_until", _ts()),
        sa.column("episode_id", sa.Integer),
    )
    d = digests.c
    conn.execute(digests.update().where(d.posted_at.is_(None)).values(holder=d.posted_by, lease_until=d.claimed_at))
    escalations = conn.execute(sa.select(d.id, d.period_key).where(d.period_key.like(f"{ESCALATION_PREFIX}%"))).all()
    for row in escalations:
        episode_id = _episode_id(row.period_key)
        if episode_id is not None:
            conn.execute(digests.update().where(d.id == row.id).values(episode_id=episode_id))

    op.create_table(
        "nudge_batches",
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("response_url", sa.Text(), nullable=True),
        sa.Column("notice_holder", sa.String(length=255), nullable=True),
        sa.Column("notice_lease_until", _ts(), nullable=True),
        sa.Column("notified_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("batch_id", name="pk_nudge_batches"),
    )
    op.create_index("ix_nudge_batches_notified_at", "nudge_batches", ["notified_at"])


def downgrade() -> None:
    """Drop nudge_batches and the lease columns."""
    op.drop_table("nudge_batches")
    with op.batch_alter_table("digests") as batch:
        batch.drop_index("ix_digests_episode_id")
        batch.drop_column("episode_id")
        batch.drop_column("lease_until")
        batch.drop_column("holder")
