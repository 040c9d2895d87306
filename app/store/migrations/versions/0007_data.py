"""data (issue 21): change order for CRM sync, conversation tags and properties, retention,
the audit log

Revision ID: 0007
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import app.store.tables

revision = "0007"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sync_seq", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.create_index("ix_user_ws_sync", ["workspace_id", "sync_seq", "id"], unique=False)
        batch_op.create_index("ix_user_ws_email", ["workspace_id", "email"], unique=False)
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tags", sa.JSON(), server_default="[]", nullable=False))
        batch_op.add_column(sa.Column("properties", sa.JSON(), server_default="{}", nullable=False))
        batch_op.add_column(sa.Column("sync_seq", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.create_index("ix_conversation_ws_sync", ["workspace_id", "sync_seq", "id"], unique=False)
    with op.batch_alter_table("workspace", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retention_days", sa.Integer(), nullable=True))
    op.create_table(
        "sync_clock",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO sync_clock (id, value) VALUES (1, 0)")
    op.create_table(
        "audit_entry",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("actor_type", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("actor_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("actor_name", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("target_type", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("target_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("ip", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("at", app.store.tables.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_entry", schema=None) as batch_op:
        batch_op.create_index("ix_audit_ws_at", ["workspace_id", "at", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_entry", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_ws_at")
    op.drop_table("audit_entry")
    op.drop_table("sync_clock")
    with op.batch_alter_table("workspace", schema=None) as batch_op:
        batch_op.drop_column("retention_days")
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.drop_index("ix_conversation_ws_sync")
        batch_op.drop_column("sync_seq")
        batch_op.drop_column("properties")
        batch_op.drop_column("tags")
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_index("ix_user_ws_email")
        batch_op.drop_index("ix_user_ws_sync")
        batch_op.drop_column("sync_seq")
