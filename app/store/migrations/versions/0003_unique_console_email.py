"""a console account's email is unique across the server, whatever its case

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

Before this, login looked accounts up by email alone and took the first row, so another
workspace's admin could lock someone out by creating the same email. Existing duplicates
(compared lowercased and trimmed) cannot be merged automatically: the upgrade stops, before
changing anything, with ``DuplicateConsoleEmails`` naming each email and its workspaces.
"""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from alembic import op

from app.store.migrate import DuplicateConsoleEmails

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT email, workspace_id, id FROM console_user ORDER BY created_at, id")).all()
    owners: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for email, workspace_id, user_id in rows:
        owners[email.strip().lower()].append((workspace_id, user_id))
    duplicates = {email: found for email, found in owners.items() if len(found) > 1}
    if duplicates:
        raise DuplicateConsoleEmails(duplicates)
    for email, _workspace_id, user_id in rows:
        if email != email.strip().lower():
            bind.execute(
                sa.text("UPDATE console_user SET email = :email WHERE id = :id"),
                {"email": email.strip().lower(), "id": user_id},
            )
    with op.batch_alter_table("console_user", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_console_user_email"))
        batch_op.create_index(batch_op.f("ix_console_user_email"), ["email"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("console_user", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_console_user_email"))
        batch_op.create_index(batch_op.f("ix_console_user_email"), ["email"], unique=False)
