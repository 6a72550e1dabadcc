"""Episodes closed because the IAM user became exempt are "exempted", never "fixed" (episodes.closed_as).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add episodes.closed_as (NULL: fixed or open; "exempted")."""
    with op.batch_alter_table("episodes") as batch:
        batch.add_column(sa.Column("closed_as", sa.String(length=16), nullable=True))


def downgrade() -> None:
    """Drop episodes.closed_as."""
    with op.batch_alter_table("episodes") as batch:
        batch.drop_column("closed_as")
