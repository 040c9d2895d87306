"""Files in the Inbox: an agent's upload from the reply box, and a reply's file parts.

``POST /console/inbox/{conversation_id}/files`` takes one file as the API's ``POST
/api/v1/files`` does (streamed, the type read from the bytes, ``MAX_FILE_BYTES``), through
the console session and its CSRF token (``X-CSRF-Token``), and answers the file's JSON
(docs/files.md). The reply form then names the uploaded files' ids (``file_id`` fields),
and the reply goes out with a part per file after its text.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session
from starlette.responses import JSONResponse, Response

from app import conversations
from app.console.auth import Ctx
from app.console.pages import console_page
from app.files import records
from app.store.runner import Tx
from app.store.tables import File

MAX_FILES_PER_REPLY = 10


@console_page(upload=True)
async def upload(ctx: Ctx) -> Response:
    conversation_id = ctx.request.path_params["conversation_id"]
    # Only into a conversation of this workspace (404 otherwise), before any byte is read.
    await ctx.state.runner.read(conversations.get_conversation, ctx.workspace_id, conversation_id)
    files = ctx.state.files
    stored = await files.receive(ctx.request, ctx.workspace_id)

    def record(tx: Tx) -> File:
        row = stored.row("console")
        tx.session.add(row)
        tx.session.flush()
        return row

    try:
        row = await ctx.state.runner.write(record)
    except BaseException:
        await files.discard(stored)
        raise
    return JSONResponse(records.file_json(row, files.links), status_code=201)


def file_parts(s: Session, workspace_id: str, file_ids: list[str]) -> list[dict[str, Any]]:
    """A part per file named in the reply form (another workspace's file: 404), read before the write."""
    return [records.part_for_file(records.get_file(s, workspace_id, i)) for i in file_ids]
