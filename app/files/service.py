"""The running server's files: the store, the link signer, and the steps an upload takes.

Built by ``app.main.start_services`` and reached as ``state.files``. An upload is
streamed into a staging file (``intake``), kept in the store under a new file id, and only
then recorded (``records``), so a row never names bytes that are not there; when the
recording fails, the bytes are removed again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from app.files import records
from app.files.intake import Upload, receive_upload
from app.files.links import FileLinks, links_for
from app.files.storage import FileStorage, make_storage
from app.ids import new_id
from app.settings import Settings
from app.store.runner import Tx
from app.store.tables import File

log = logging.getLogger("backchannel.files")


@dataclass
class StoredUpload:
    """An upload whose bytes are in the store and whose row is not written yet."""

    id: str
    workspace_id: str
    key: str
    upload: Upload

    def row(self, uploaded_by: str, user_id: str | None = None) -> File:
        u = self.upload
        return File(
            id=self.id,
            workspace_id=self.workspace_id,
            user_id=user_id,
            uploaded_by=uploaded_by,
            name=u.name,
            content_type=u.content_type,
            size=u.size,
            storage_key=self.key,
        )


class Files:
    def __init__(self, settings: Settings, storage: FileStorage | None = None) -> None:
        self.settings = settings
        self.storage = storage or make_storage(settings.file_storage)
        self.links: FileLinks = links_for(settings)

    async def receive(self, request: Request, workspace_id: str) -> StoredUpload:
        """Stream the request's file into the store (413/422 as ``intake`` says)."""
        upload = await receive_upload(request, self.storage, self.settings.max_file_bytes)
        file_id = new_id("fil")
        key = records.storage_key(workspace_id, file_id)
        await self.storage.save(key, upload.staged, upload.content_type)
        return StoredUpload(file_id, workspace_id, key, upload)

    async def discard(self, stored: StoredUpload) -> None:
        """Remove bytes whose row was never written (a failed or replayed create)."""
        try:
            await self.storage.delete([stored.key])
        except Exception as exc:  # an orphan in the store is not worth failing the request for
            log.warning("files: could not remove unrecorded upload %s (%s)", stored.key, type(exc).__name__)

    async def erase(self, runner: Any, workspace_id: str, *, user_id: str | None = None,
                    conversation_ids: list[str] | None = None) -> int:  # fmt: skip
        """The erasure hook (SPEC §13): delete a user's or these conversations' files, rows
        first (in one transaction), then their bytes. Returns how many files went.

        An erasure that deletes users or conversations in its own transaction calls
        ``records.delete_files`` inside it instead, and ``delete_bytes`` after the commit."""

        def rows(tx: Tx) -> list[str]:
            return records.delete_files(
                tx.session, workspace_id, user_id=user_id, conversation_ids=conversation_ids or ()
            )

        keys: list[str] = await runner.write(rows)
        await self.delete_bytes(keys)
        return len(keys)

    async def delete_bytes(self, keys: list[str]) -> None:
        await self.storage.delete(keys)

    async def aclose(self) -> None:
        await self.storage.aclose()
