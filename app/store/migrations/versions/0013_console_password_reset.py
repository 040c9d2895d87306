"""console_password_reset: "Forgot password" links, their secrets hashed (issue 23)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import app.store.tables

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_password_reset",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("console_user_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("workspace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", app.store.tables.UTCDateTime(), nullable=False),
        sa.Column("expires_at", app.store.tables.UTCDateTime(), nullable=False),
        sa.Column("used_at", app.store.tables.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("console_password_reset", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_console_password_reset_console_user_id"), ["console_user_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_console_password_reset_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("console_password_reset", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_console_password_reset_expires_at"))
        batch_op.drop_index(batch_op.f("ix_console_password_reset_console_user_id"))
    op.drop_table("console_password_reset")
