"""Who each IAM user resolves to in Slack, and the person before a change (identities).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create identities."""
    op.create_table(
        "identities",
        sa.Column("arn", sa.String(length=2048), nullable=False),
        sa.Column("slack_user_id", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("seen_at", _ts(), nullable=False),
        sa.Column("previous_slack_user_id", sa.String(length=64), nullable=True),
        sa.Column("previous_source", sa.String(length=128), nullable=True),
        sa.Column("changed_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("arn", name="pk_identities"),
    )


def downgrade() -> None:
    """Drop identities."""
    op.drop_table("identities")
