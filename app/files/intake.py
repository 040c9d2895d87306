"""Reading an upload: ``multipart/form-data`` with one part named ``file``, streamed.

The body is parsed as it arrives (python-multipart's push parser); the file's bytes go to a
staging file on disk a megabyte at a time, and the size limit is enforced while reading: a
declared ``Content-Length`` over it is refused before any of the body is read, and a body
streamed without one is refused as soon as it passes the limit. So a 2 GB upload costs at
most ``MAX_FILE_BYTES`` of disk and a megabyte of memory, and is answered 413 at once.

A body that is not a multipart form is a 400 (JSON: a 422 naming ``file``, ``api/files.py``);
a form without a ``file`` part, with two, or with an empty file, a 422 naming ``file``. The
content type is read from the first bytes of the file (``filetype``), never taken from the
client; what it does not recognise is ``text/plain`` when it is UTF-8 text and
``application/octet-stream`` otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread
import filetype
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from app import errors
from app.files.storage import FileStorage

# Headers, boundaries and other small form fields around the file: how far past the file
# limit a whole body may go before it is refused without looking further.
ENVELOPE_BYTES = 64 * 1024
FLUSH_BYTES = 1024 * 1024  # written to the staging file in pieces this big
HEAD_BYTES = 8192  # kept in memory to read the type from
MAX_NAME = 255
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f\"\\/]")


@dataclass
class Upload:
    name: str
    size: int
    content_type: str
    staged: Path
    digest: str  # SHA-256 of the bytes: an Idempotency-Key's fingerprint


def _malformed(message: str) -> errors.ApiError:
    return errors.BadRequest(f"The body is not an upload: {message}.", code="bad_request")


def _invalid(message: str) -> errors.ApiError:
    return errors.Unprocessable(f"Invalid field: file ({message})", details=[{"field": "file", "message": message}])


def too_large(limit: int) -> errors.ApiError:
    return errors.PayloadTooLarge(f"The file is larger than {limit} bytes.", details={"max_bytes": limit})


def clean_name(raw: str | None) -> str:
    """A file name fit to show and to put in a header: the last path segment, no control
    characters, quotes or slashes, at most 255 characters; ``file`` when nothing is left."""
    name = unicodedata.normalize("NFC", (raw or "").replace("\\", "/").rsplit("/", 1)[-1])
    name = _UNSAFE_NAME.sub("_", name).strip().strip(".")
    return name[:MAX_NAME] or "file"


def sniff(head: bytes) -> str:
    kind = filetype.guess_mime(head)
    if kind:
        return str(kind)
    if head and b"\x00" not in head:
        with contextlib.suppress(UnicodeDecodeError):
            head.decode("utf-8")
            return "text/plain"
        # the head may end inside a multi-byte character
        with contextlib.suppress(UnicodeDecodeError):
            head[:-3].decode("utf-8")
            return "text/plain"
    return "application/octet-stream"


@dataclass
class _Parts:
    """What the parser's callbacks saw, kept until the loop can act on it (they are synchronous)."""

    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    headers: dict[bytes, bytes] = field(default_factory=dict)
    in_file: bool = False
    seen_file: bool = False
    second_file: bool = False
    filename: str | None = None
    pending: list[bytes] = field(default_factory=list)
    pending_size: int = 0
    size: int = 0
    head: bytearray = field(default_factory=bytearray)
    hash: Any = field(default_factory=hashlib.sha256)
    done: bool = False

    def on_part_begin(self) -> None:
        self.headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[bytes(self.header_field).lower()] = bytes(self.header_value)
        self.header_field.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        is_file = options.get(b"name") == b"file"
        if is_file and self.seen_file:
            self.second_file = True
            is_file = False
        self.in_file = is_file
        if is_file:
            self.seen_file = True
            raw = options.get(b"filename")
            self.filename = raw.decode("utf-8", "replace") if raw is not None else None

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self.in_file or start == end:
            return
        piece = data[start:end]
        self.size += len(piece)
        if len(self.head) < HEAD_BYTES:
            self.head += piece[: HEAD_BYTES - len(self.head)]
        self.pending.append(piece)
        self.pending_size += len(piece)
        self.hash.update(piece)

    def on_part_end(self) -> None:
        self.in_file = False

    def on_end(self) -> None:
        self.done = True

    def callbacks(self) -> Any:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }


def _boundary(request: Request) -> bytes:
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary or len(boundary) > 200:
        raise _malformed("send multipart/form-data with one part named file")
    return boundary


async def receive_upload(request: Request, storage: FileStorage, limit: int) -> Upload:
    """Stream the request's ``file`` part into a staging file; 413 past ``limit`` bytes,
    422 for no file, an empty one or a body that is not a multipart form. The caller keeps
    or removes the staging file (``Upload.staged``)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + ENVELOPE_BYTES:
        raise too_large(limit)
    parts = _Parts()
    parser = MultipartParser(_boundary(request), parts.callbacks())
    out, staged = storage.staging_file()
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit + ENVELOPE_BYTES:
                raise too_large(limit)
            try:
                parser.write(chunk)
            except Exception:  # python-multipart's errors for a malformed body
                raise _malformed("not a well-formed multipart form") from None
            if parts.size > limit:
                raise too_large(limit)
            if parts.pending_size >= FLUSH_BYTES:
                await _flush(out, parts)
        try:
            parser.finalize()
        except Exception:
            raise _malformed("not a well-formed multipart form") from None
        await _flush(out, parts)
        out.close()
        if not parts.seen_file:
            raise _invalid("no part named file")
        if parts.second_file:
            raise _invalid("one file per request")
        if not parts.done:
            raise _malformed("the multipart form ends early")
        if parts.size == 0:
            raise _invalid("the file is empty")
        return Upload(clean_name(parts.filename), parts.size, sniff(bytes(parts.head)), staged, parts.hash.hexdigest())
    except BaseException:
        out.close()
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()
        raise


async def _flush(out: Any, parts: _Parts) -> None:
    if not parts.pending:
        return
    data = b"".join(parts.pending)
    parts.pending.clear()
    parts.pending_size = 0
    await anyio.to_thread.run_sync(out.write, data)
