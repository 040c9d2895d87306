"""The offline-reply email: who answered and what, as text and as HTML, and the link back."""

from __future__ import annotations

import html
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr
from typing import Any


@dataclass(frozen=True)
class Reply:
    author: str
    text: str


def part_text(part: dict[str, Any]) -> str:
    """A message part as a line of the email (never markup: the HTML escapes it)."""
    if "text" in part:
        return str(part["text"].get("content", ""))
    for kind in ("image", "file", "video", "audio"):
        if kind in part:
            body = part[kind]
            name = body.get("name") or body.get("alt") or kind
            return f"[{kind.capitalize()}: {name}]"
    for kind, key in (("url_button", "label"), ("web_view", "label")):
        if kind in part:
            return f"[{part[kind].get(key, '')}]"
    if "carousel" in part:
        return "[" + ", ".join(card.get("title", "") for card in part["carousel"].get("cards", [])) + "]"
    return ""


def reply_email(
    *,
    sender: str,
    to: str,
    customer_name: str | None,
    workspace_name: str,
    replies: list[Reply],
    link: str | None,
    thread_id: str,
    message_key: str,
) -> EmailMessage:
    """One email for the replies a customer missed. ``thread_id`` (the conversation) makes
    every email of one conversation one thread in the customer's mail program; ``message_key``
    (the conversation and the last seq it carries) makes the Message-ID the same if this email
    is ever sent again (after a crash mid-send), so a mail program can tell it is one email."""
    message = EmailMessage()
    message["Subject"] = f"New reply from {workspace_name}"
    message["From"] = sender
    message["To"] = formataddr((customer_name or "", to))
    domain = sender.rsplit("@", 1)[-1].strip("> ") or "localhost"
    message["Message-ID"] = f"<{message_key}@{domain}>"
    message["References"] = f"<{thread_id}@{domain}>"
    message["Auto-Submitted"] = "auto-generated"
    greeting = f"Hi {customer_name}," if customer_name else "Hi,"
    news = "a new reply" if len(replies) == 1 else "new replies"
    lines = [greeting, "", f"You have {news} from {workspace_name}:", ""]
    for reply in replies:
        lines.append(f"{reply.author}:")
        lines.extend(f"  {line}" for line in reply.text.splitlines() or [""])
        lines.append("")
    if link:
        lines += [f"Continue the conversation: {link}", ""]
    message.set_content("\n".join(lines))
    blocks = "".join(
        f'<p style="margin:0 0 4px;font-weight:600">{html.escape(r.author)}</p>'
        f'<p style="margin:0 0 16px;padding:10px 14px;background:#f3f4f6;border-radius:12px;white-space:pre-wrap">'
        f"{html.escape(r.text)}</p>"
        for r in replies
    )
    button = (
        f'<p><a href="{html.escape(link, quote=True)}" style="display:inline-block;padding:10px 18px;'
        f'background:#1f5eff;color:#fff;border-radius:20px;text-decoration:none;font-weight:600">'
        f"Continue the conversation</a></p>"
        if link
        else ""
    )
    message.add_alternative(
        f'<!doctype html><html><body style="font-family:system-ui,sans-serif;color:#111827;max-width:560px">'
        f"<p>{html.escape(greeting)}</p><p>{html.escape(lines[2])}</p>{blocks}{button}</body></html>",
        subtype="html",
    )
    return message
