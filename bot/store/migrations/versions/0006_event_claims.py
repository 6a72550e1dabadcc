"""Real-time events: claimed CloudTrail event IDs and once-per-key alert claims.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Frozen, like 0001: written out in full.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create event_claims and alert_claims."""
    op.create_table(
        "event_claims",
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("event_name", sa.String(length=64), nullable=False),
        sa.Column("claimed_by", sa.String(length=255), nullable=False),
        sa.Column("claimed_at", _ts(), nullable=False),
        sa.Column("lease_until", _ts(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="1", nullable=False),
        sa.Column("steps", sa.Text(), nullable=False),
        sa.Column("handled_at", _ts(), nullable=True),
        sa.Column("outcome", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name="pk_event_claims"),
    )
    op.create_index("ix_event_claims_handled_at", "event_claims", ["handled_at"])
    op.create_table(
        "alert_claims",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("claimed_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_alert_claims"),
    )
    op.create_index("ix_alert_claims_claimed_at", "alert_claims", ["claimed_at"])


def downgrade() -> None:
    """Drop them."""
    op.drop_table("alert_claims")
    op.drop_table("event_claims")
