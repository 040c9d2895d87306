"""``/api/v1/files``: upload a file (multipart/form-data, part ``file``) and read it back
with a fresh signed link. The upload streams (``app/files/intake.py``): a body over
``MAX_FILE_BYTES`` is a 413 without being held, an empty file a 422."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from app import errors
from app.api.framework import Call, Endpoint, loads_json, read_body
from app.api.schemas import FileOut
from app.files import records
from app.files.links import links_for
from app.files.service import Files, StoredUpload
from app.state import AppState

UPLOAD_FORM = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {
            "type": "string",
            "contentMediaType": "application/octet-stream",
            "description": "The file. Its type is read from its bytes; the name is its filename.",
        }
    },
}


def _files(state: AppState) -> Files:
    return state.files


async def receive(request: Request, state: AppState, workspace_id: str) -> tuple[bytes, StoredUpload]:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json":
        # JSON where a form belongs: read as every route reads JSON (400 when it is not JSON), then
        # refused for what it lacks, like any body without its required field.
        loads_json(await read_body(request, state.settings.max_body_bytes))
        raise errors.Unprocessable(
            "Invalid field: file (send multipart/form-data with one part named file)",
            details=[{"field": "file", "message": "send multipart/form-data with one part named file"}],
        )
    stored = await _files(state).receive(request, workspace_id)
    return stored.upload.digest.encode(), stored


async def discard(state: AppState, stored: StoredUpload) -> None:
    await _files(state).discard(stored)


def _links(call: Call) -> Any:
    assert call.settings is not None
    return links_for(call.settings)


def create(call: Call) -> dict[str, Any]:
    stored: StoredUpload = call.body
    row = stored.row("api")
    call.write.session.add(row)
    call.write.session.flush()
    return records.file_json(row, _links(call))


def read(call: Call) -> dict[str, Any]:
    return records.file_json(records.get_file(call.session, call.workspace_id, call.params["file_id"]), _links(call))


ENDPOINTS = [
    Endpoint(
        "POST",
        "/files",
        create,
        "Upload a file (multipart/form-data, one part named file)",
        "Files",
        response=FileOut,
        status=201,
        scope="write",
        errors=(413, 422),
        receive=receive,
        discard=discard,
        form=UPLOAD_FORM,
        description="The type is read from the bytes. Over MAX_FILE_BYTES (default 25 MiB) is a 413, "
        "an empty file a 422. Send the file as a message part with {'file': {'file_id': …}} "
        "(or image, video, audio).",
    ),
    Endpoint(
        "GET",
        "/files/{file_id}",
        read,
        "Get a file with a fresh download link",
        "Files",
        response=FileOut,
        errors=(404,),
    ),  # fmt: skip
]
