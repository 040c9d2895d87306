"""conversations by user, newest first: the widget handshake's one lookup stays an index search

Without it SQLite's planner read the conversation by ``ix_conversation_ws_sync`` (every
conversation of the workspace, then a sort): a handshake cost grew with the workspace, and
opening 16,000 sockets slowed from ~70 to ~50 a second (issue 24.3, docs/performance.md).
``(user_id, created_at)`` also serves everything the single-column ``user_id`` index did.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.create_index("ix_conversation_user_created", ["user_id", "created_at"], unique=False)
        batch_op.drop_index("ix_conversation_user_id")


def downgrade() -> None:
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.create_index("ix_conversation_user_id", ["user_id"], unique=False)
        batch_op.drop_index("ix_conversation_user_created")
