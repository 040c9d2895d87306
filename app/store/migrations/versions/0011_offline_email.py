"""offline replies by email: widget presence on the user, email progress per conversation (issue 20)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import app.store.tables

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("widget_seen_at", app.store.tables.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("widget_page", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.create_table(
        "email_progress",
        sa.Column("conversation_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("emailed_seq", sa.Integer(), nullable=False),
        sa.Column("claimed_seq", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("lease_until", app.store.tables.UTCDateTime(), nullable=True),
        sa.Column("emails_sent", sa.Integer(), nullable=False),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("updated_at", app.store.tables.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("conversation_id"),
    )
    with op.batch_alter_table("email_progress", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_email_progress_workspace_id"), ["workspace_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_email_progress_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("email_progress", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_email_progress_user_id"))
        batch_op.drop_index(batch_op.f("ix_email_progress_workspace_id"))
    op.drop_table("email_progress")
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_column("widget_page")
        batch_op.drop_column("widget_seen_at")
