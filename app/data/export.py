"""Export (SPEC §13): everything stored about one user, as one document.

``{user, conversations: [{…conversation, messages: [...]}], files: [...], exported_at}``: the
user as the API shows them, each of their conversations (oldest first) with every message in
``seq`` order (private notes included: they are stored about the person too), and every file
that is theirs (their uploads and the files sent in their conversations), each with a fresh
signed link, as the API's message parts carry them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlmodel import Session, col, or_
from sqlmodel import select as orm_select

from app import people
from app.files.links import FileLinks
from app.files.records import file_json
from app.ids import isoformat, utcnow
from app.shapes import conversation_json, user_json
from app.store import sql as rows
from app.store.tables import File

PAGE = 1000  # messages per read while walking a conversation


def export_user(s: Session, workspace_id: str, user_id: str, links: FileLinks) -> dict[str, Any]:
    user = people.get_user(s, workspace_id, user_id)  # 404 for another workspace's user
    c = rows.CONVERSATIONS.c
    found: Any = s.connection().execute(
        select(rows.CONVERSATIONS)
        .where(c.workspace_id == workspace_id, c.user_id == user_id)
        .order_by(c.created_at, c.id)
    )
    conversations = []
    for conv in found:
        messages: list[dict[str, Any]] = []
        after = 0
        while True:
            page = rows.messages_json_after(s, conv.id, after, PAGE)
            messages += [links.present_message(m) for m in page]
            if len(page) < PAGE:
                break
            after = page[-1]["seq"]
        conversations.append({**conversation_json(conv), "messages": messages})
    conversation_ids = [conv["id"] for conv in conversations]
    owners = [col(File.user_id) == user_id]
    if conversation_ids:
        owners.append(col(File.conversation_id).in_(conversation_ids))
    files = s.exec(
        orm_select(File).where(File.workspace_id == workspace_id, or_(*owners)).order_by(col(File.created_at))
    )
    return {
        "user": user_json(user),
        "conversations": conversations,
        "files": [file_json(f, links) for f in files],
        "exported_at": isoformat(utcnow()),
    }
