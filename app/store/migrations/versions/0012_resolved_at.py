"""conversation.resolved_at: when it was last resolved (Reports, issue 20)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.store.tables

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resolved_at", app.store.tables.UTCDateTime(), nullable=True))
    # Conversations resolved before this column existed: their last change is the best we know.
    op.execute(sa.text("UPDATE conversation SET resolved_at = updated_at WHERE status = 'resolved'"))


def downgrade() -> None:
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.drop_column("resolved_at")
