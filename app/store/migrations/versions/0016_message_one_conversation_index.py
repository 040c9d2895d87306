"""messages: one index on the conversation, not two

``ix_message_conversation_id`` repeated the first column of the ``(conversation_id, seq)``
unique index, which serves every lookup by conversation (a page of messages, a conversation's
deletion) as well: each message paid for a second entry, and each batch for its pages in the
write-ahead log (issue 24.2, docs/performance.md section 13).

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_index("ix_message_conversation_id")


def downgrade() -> None:
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.create_index("ix_message_conversation_id", ["conversation_id"], unique=False)
