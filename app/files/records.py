"""File rows: create, read, attach to a message, erase. Each runs inside the caller's
transaction (``Runner.read``/``Runner.write``); the bytes are ``storage``'s business."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, or_, select

from app import errors
from app.files.links import FILE_PART_KINDS, FileLinks
from app.ids import isoformat
from app.store.tables import Conversation, File

# What a part of each kind may carry, by the file's (sniffed) type. ``file`` takes anything.
_KIND_TYPES = {"image": ("image/",), "video": ("video/",), "audio": ("audio/", "video/ogg")}
# Images a browser shows inline (and the widget as a thumbnail); other images are files.
INLINE_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


def storage_key(workspace_id: str, file_id: str) -> str:
    return f"{workspace_id}/{file_id}"


def file_json(f: File, links: FileLinks) -> dict[str, Any]:
    url, expires = links.url(f.id)
    return {
        "id": f.id,
        "name": f.name,
        "content_type": f.content_type,
        "size": f.size,
        "url": url,
        "expires_at": isoformat(_from_unix(expires)),
        "created_at": isoformat(f.created_at),
    }


def _from_unix(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def get_file(s: Session, workspace_id: str, file_id: str) -> File:
    """The file, or 404 (another workspace's file is missing too)."""
    f = s.get(File, file_id)
    if f is None or f.workspace_id != workspace_id:
        raise errors.NotFound("No such file.")
    return f


def names_files(parts: Iterable[dict[str, Any]]) -> bool:
    for part in parts:
        if len(part) == 1:
            kind, body = next(iter(part.items()))
            if kind in FILE_PART_KINDS and isinstance(body, dict) and "file_id" in body:
                return True
    return False


def attach_files(
    s: Session,
    workspace_id: str,
    conversation: Any,
    parts: list[dict[str, Any]],
    *,
    customer_id: str | None = None,
) -> list[dict[str, Any]]:
    """``parts`` with each ``file_id`` checked and the file's name, type and size filled in.

    A file must be this workspace's (422 naming the field otherwise); a customer's upload is
    sent only in that customer's conversations; with ``customer_id`` (the widget) only that
    customer's own uploads, each sent as an image, video, audio or file part by its type. A file
    not yet sent anywhere now belongs to this conversation,
    so it goes with it when the conversation is erased."""
    wanted = [
        body["file_id"] for part in parts for body in part.values() if isinstance(body, dict) and "file_id" in body
    ]
    found = {f.id: f for f in s.exec(select(File).where(col(File.id).in_(wanted)))}
    out = []
    for n, part in enumerate(parts):
        kind, body = next(iter(part.items()))
        if kind not in FILE_PART_KINDS or not isinstance(body, dict) or "file_id" not in body:
            out.append(part)
            continue
        field = f"message_parts.{n}.{kind}.file_id"
        f = found.get(body["file_id"])
        if f is None or f.workspace_id != workspace_id:
            raise _field(field, "no such file in this workspace")
        if f.user_id is not None and f.user_id != conversation.user_id:
            raise _field(field, "a customer's file can only be sent in their own conversations")
        if customer_id is not None and f.user_id != customer_id:
            raise _field(field, "no such file among this visitor's uploads")
        if customer_id is not None and kind == "file":
            # The widget sends every upload as a file: it is shown as what it is.
            kind, shown = next(iter(part_for_file(f).items()))
            body = {**body, **shown}
        allowed = _KIND_TYPES.get(kind)
        if allowed and not f.content_type.startswith(allowed):
            raise _field(field, f"the file is {f.content_type}, not a {kind}")
        filled = {k: v for k, v in body.items() if k not in ("name", "content_type", "size", "url")}
        filled.update(file_id=f.id, name=f.name, content_type=f.content_type, size=f.size)
        if kind == "image" and not filled.get("alt"):
            filled["alt"] = f.name  # the widget shows an uploaded image with its file name as alt text
        out.append({kind: filled})
        if f.conversation_id is None:
            f.conversation_id = conversation.id
            s.add(f)
    s.flush()
    return out


def part_for_file(f: File) -> dict[str, Any]:
    """The part a customer's upload is sent as: an image, a video or audio player, or a file."""
    if f.content_type in INLINE_IMAGES:
        return {"image": {"file_id": f.id, "alt": f.name}}
    if f.content_type in ("video/mp4", "video/webm"):
        return {"video": {"file_id": f.id}}
    if f.content_type.startswith("audio/"):
        return {"audio": {"file_id": f.id}}
    return {"file": {"file_id": f.id}}


def _field(field: str, message: str) -> errors.ApiError:
    return errors.Unprocessable(f"Invalid field: {field}", details=[{"field": field, "message": message}])


# --- erasure (issue 21 calls this) -----------------------------------------------------


def delete_files(
    s: Session, workspace_id: str, *, user_id: str | None = None, conversation_ids: Iterable[str] = ()
) -> list[str]:
    """Delete the rows of the files that belong to a user (their uploads, and every file of
    their conversations) or to these conversations; returns the storage keys, whose bytes the
    caller deletes after the transaction commits (``FileStorage.delete``)."""
    conversation_ids = list(conversation_ids)
    if user_id is not None:
        conversation_ids += list(
            s.exec(
                select(Conversation.id).where(
                    Conversation.workspace_id == workspace_id, Conversation.user_id == user_id
                )
            )
        )
    owners = []
    if user_id is not None:
        owners.append(col(File.user_id) == user_id)
    if conversation_ids:
        owners.append(col(File.conversation_id).in_(conversation_ids))
    if not owners:
        return []
    doomed = list(s.exec(select(File).where(File.workspace_id == workspace_id, or_(*owners))))
    for f in doomed:
        s.delete(f)
    s.flush()
    return [f.storage_key for f in doomed]
