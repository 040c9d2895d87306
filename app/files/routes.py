"""The files' HTTP surface outside ``/api``: signed downloads and the widget's upload.

``GET /files/{file_id}?expires=…&signature=…`` serves a file only through a link
``links.FileLinks`` signed (403 otherwise; 404 once the file is gone), with headers that
stop a browser from running it: ``nosniff``, ``Content-Security-Policy: sandbox``, and
``Content-Disposition: attachment`` for everything but plain images, video, audio and PDF.
A single byte range is honoured (206), so video and audio seek.

``POST /widget/v1/files`` is the widget's upload: the session token as a bearer token, the
embedding page's origin checked, and per-visitor allowances of uploads and bytes an hour.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from app import errors
from app.api.framework import JSONResponse, error_response
from app.files import records
from app.files.service import Files
from app.realtime.identity import widget_caller, widget_cors, widget_preflight
from app.state import AppState
from app.store.runner import Tx
from app.store.tables import File

# Sent inline (shown by the browser, and only as what they are): everything else is a download.
INLINE_TYPES = frozenset(
    {
        "image/png", "image/jpeg", "image/gif", "image/webp",
        "video/mp4", "video/webm", "video/ogg",
        "audio/mpeg", "audio/ogg", "application/ogg",
        "application/pdf",
    }
)  # fmt: skip
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
UPLOAD_WINDOW_SECONDS = 3600


def _files(request: Request) -> tuple[AppState, Files]:
    state: AppState = request.app.state.bc
    return state, state.files


def content_disposition(kind: str, name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace("?", "_")
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """``(start, end)`` for one satisfiable range, None to send the whole file (no range,
    several ranges, or one that does not parse: RFC 9110 lets a server ignore those), or
    ``"unsatisfiable"``."""
    if not header:
        return None
    m = _RANGE.fullmatch(header.strip())
    if m is None:
        return None
    first, last = m.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        n = int(last)
        if n == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        return "unsatisfiable"
    return start, end


async def download(request: Request) -> Response:
    state, files = _files(request)
    file_id = request.path_params["file_id"]
    q = request.query_params
    if not files.links.valid(file_id, q.get("expires"), q.get("signature")):
        return error_response(errors.Forbidden("This download link is not valid or has expired.", code="invalid_link"))
    f: File | None = await state.runner.read(lambda s: s.get(File, file_id))
    if f is None:
        return error_response(errors.NotFound("No such file."))
    headers = {
        "Accept-Ranges": "bytes",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
        "Content-Disposition": content_disposition(
            "inline" if f.content_type in INLINE_TYPES else "attachment", f.name
        ),
        "Cache-Control": f"private, max-age={max(0, int(q['expires']) - int(time.time()))}",
        "Cross-Origin-Resource-Policy": "cross-origin",
        "Referrer-Policy": "no-referrer",
    }
    media_type = f.content_type + ("; charset=utf-8" if f.content_type == "text/plain" else "")
    wanted = parse_range(request.headers.get("range"), f.size)
    if isinstance(wanted, str):
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{f.size}"})
    status, (start, end) = (200, (0, f.size - 1)) if wanted is None else (206, wanted)
    headers["Content-Length"] = str(end - start + 1)
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{end}/{f.size}"
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=media_type)
    return StreamingResponse(files.storage.read(f.storage_key, start, end), status, headers, media_type=media_type)


async def widget_upload_preflight(request: Request) -> Response:
    return widget_preflight(request, "authorization, content-type")


async def widget_upload(request: Request) -> Response:
    state, files = _files(request)
    origin = request.headers.get("origin")
    try:
        identity, _ = await widget_caller(request, state.signer, state.runner)
        settings = state.settings
        await state.limiter.consume_or_raise(
            f"widget-upload:{identity.user_id}", settings.widget_uploads_per_hour, UPLOAD_WINDOW_SECONDS
        )
        stored = await files.receive(request, identity.workspace_id)
        try:
            await state.limiter.consume_or_raise(
                f"widget-upload-bytes:{identity.user_id}",
                settings.widget_upload_bytes_per_hour,
                UPLOAD_WINDOW_SECONDS,
                cost=stored.upload.size,
            )

            def record(tx: Tx) -> dict[str, Any]:
                row = stored.row("widget", identity.user_id)
                tx.session.add(row)
                tx.session.flush()
                return records.file_json(row, files.links)

            body = await state.runner.write(record)
        except BaseException:
            await files.discard(stored)
            raise
    except errors.ApiError as exc:
        response = error_response(exc)
        response.headers.update(widget_cors(origin))  # readable by the page, so the widget can say why
        return response
    return JSONResponse(body, status_code=201, headers=widget_cors(origin))


ROUTES: list[BaseRoute] = [
    Route("/files/{file_id}", download, methods=["GET", "HEAD"]),
    Route("/widget/v1/files", widget_upload, methods=["POST"]),
    Route("/widget/v1/files", widget_upload_preflight, methods=["OPTIONS"]),
]
