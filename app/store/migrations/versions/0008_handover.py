"""handover: who has control of a conversation, agents' availability, private notes (issue 19)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import app.store.tables

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("assignee_kind", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(
            sa.Column("handled_by", sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default="bot")
        )
        batch_op.create_index("ix_conversation_assignee_status", ["assignee_id", "status"], unique=False)
    # Conversations assigned before this migration: their assignee's kind, and a human's control.
    op.execute("UPDATE conversation SET assignee_kind = (SELECT kind FROM agent WHERE agent.id = conversation.assignee_id)")
    op.execute("UPDATE conversation SET handled_by = 'human' WHERE assignee_kind = 'human' AND status = 'open'")
    with op.batch_alter_table("agent", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default="online")
        )
        batch_op.add_column(sa.Column("last_seen_at", app.store.tables.UTCDateTime(), nullable=True))
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("private", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_column("private")
    with op.batch_alter_table("agent", schema=None) as batch_op:
        batch_op.drop_column("last_seen_at")
        batch_op.drop_column("status")
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.drop_index("ix_conversation_assignee_status")
        batch_op.drop_column("handled_by")
        batch_op.drop_column("assignee_kind")
