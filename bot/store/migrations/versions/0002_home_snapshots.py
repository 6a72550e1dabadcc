"""App Home: the last audit of each account kept as findings (account_snapshots), recent Home openers.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create account_snapshots and home_openers."""
    op.create_table(
        "account_snapshots",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("audited_at", _ts(), nullable=False),
        sa.Column("saved_at", _ts(), nullable=False),
        sa.Column("findings", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="pk_account_snapshots"),
    )
    op.create_index("ix_account_snapshots_saved_at", "account_snapshots", ["saved_at"])
    op.create_table(
        "home_openers",
        sa.Column("slack_user_id", sa.String(length=64), nullable=False),
        sa.Column("opened_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("slack_user_id", name="pk_home_openers"),
    )
    op.create_index("ix_home_openers_opened_at", "home_openers", ["opened_at"])


def downgrade() -> None:
    """Drop them."""
    op.drop_index("ix_home_openers_opened_at", table_name="home_openers")
    op.drop_table("home_openers")
    op.drop_index("ix_account_snapshots_saved_at", table_name="account_snapshots")
    op.drop_table("account_snapshots")
