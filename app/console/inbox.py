"""The Inbox: live conversation lists, transcripts, replying, assigning, resolving.

Every write here is the REST API's own action (``conversations.post_message``,
``conversations.update_conversation``) inside ``runner.write``: a human's reply auto-assigns the
conversation and emits ``conversation.assigned``, exactly as it would over the API.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from pydantic import ValidationError
from sqlmodel import Session
from starlette.responses import JSONResponse, Response

from app import conversations, errors, people
from app.api.schemas import ActorIn, ConversationPatch, HandoverIn, MessageIn
from app.console import conversations as convs
from app.console import customer, files
from app.console.auth import Ctx
from app.console.pages import console_page
from app.console.render import redirect, render, render_fragment
from app.store import search

MAX_REPLY = 4096


def _view(ctx: Ctx) -> str:
    view = ctx.request.query_params.get("view") or ctx.field("view") or "open"
    return view if view in convs.VIEWS else "open"


def _url(conversation_id: str | None, view: str) -> str:
    base = f"/console/inbox/{conversation_id}" if conversation_id else "/console/inbox"
    return base if view == "open" else f"{base}?view={view}"


@dataclass
class Listing:
    """One page of the conversation list: its rows, the search and filters, and where "Load
    more" goes on."""

    rows: list[convs.ConversationRow]
    view: str
    q: str = ""
    filters: convs.Filters = field(default_factory=convs.Filters)
    next_before: str | None = None  # "Load more": the page after this one
    agents: list[Any] = field(default_factory=list)  # the humans the Assignee filter offers

    @property
    def qs(self) -> str:
        """The list's query string (view, search, filters), for links that keep it."""
        pairs = [("view", self.view if self.view != "open" else ""), ("q", self.q), *self.filters.pairs()]
        params = {k: v for k, v in pairs if v}
        return ("?" + urlencode(params)) if params else ""

    @property
    def filtered(self) -> bool:
        return bool(self.q or any(v for _, v in self.filters.pairs()))


def _before(value: str | None) -> tuple[datetime, str] | None:
    at, _, last_id = (value or "").partition("|")
    try:
        return (datetime.fromisoformat(at), last_id[:64]) if last_id else None
    except ValueError:
        return None


async def _listing(ctx: Ctx, view: str) -> Listing:
    params = ctx.request.query_params
    q = (params.get("q") or ctx.field("q")).strip()[:200]
    try:  # a live refresh asks for as many rows as the page shows ("Load more" included)
        limit = min(max(int(params.get("count") or 0), convs.LIST_LIMIT), 10 * convs.LIST_LIMIT)
    except ValueError:
        limit = convs.LIST_LIMIT
    filters = convs.Filters.of(params.get("handled_by"), params.get("assignee"), params.get("tag"))
    rows = await ctx.state.runner.read(
        convs.list_conversations, ctx.workspace_id, view, ctx.agent_id, limit + 1,
        words=search.terms(q), before=_before(params.get("before")), filters=filters,
    )
    agents = await ctx.state.runner.read(convs.agents_by_id, ctx.workspace_id)
    humans = sorted((a for a in agents.values() if a.kind == "human"), key=lambda a: a.name.lower())
    listing = Listing(rows[:limit], view, q, filters, agents=humans)
    if len(rows) > limit:
        last = rows[limit - 1].conversation
        listing.next_before = f"{last.updated_at.isoformat()}|{last.id}"
    return listing


def _transcript_values(ctx: Ctx, transcript: convs.Transcript) -> dict[str, Any]:
    links = ctx.state.files.links
    return {
        "t": transcript,
        "actor_label": convs.actor_label,
        "me_agent_id": ctx.agent_id,
        # Stored file parts have no link: each page view signs fresh ones, as the API does.
        "parts_of": lambda m: links.present_parts(m.message_parts),
    }


@console_page()
async def inbox(ctx: Ctx) -> Response:
    view = _view(ctx)
    listing = await _listing(ctx, view)
    return render(ctx.request, "inbox.html", ctx=ctx, view=view, views=convs.VIEWS, listing=listing,
                  rows=listing.rows, current=None)


@console_page()
async def conversation(ctx: Ctx) -> Response:
    view = _view(ctx)
    conversation_id = ctx.request.path_params["conversation_id"]

    def load(s: Session) -> tuple[convs.Transcript, customer.Panel]:
        transcript = convs.load_transcript(s, ctx.workspace_id, conversation_id)
        return transcript, customer.load_panel(s, transcript.user, transcript.conversation)

    transcript, panel = await ctx.state.runner.read(load)
    if transcript.last_seq:
        # Reading the conversation is what marks it read for the team (and tells the widget).
        await ctx.state.runner.write(
            conversations.mark_read, ctx.workspace_id, conversation_id, "agent", transcript.last_seq,
            partition=conversation_id,
        )
    listing = await _listing(ctx, view)
    return render(
        ctx.request, "inbox.html", ctx=ctx, view=view, views=convs.VIEWS, listing=listing, rows=listing.rows,
        current=transcript.conversation.id, client_message_id=f"console-{secrets.token_urlsafe(12)}", panel=panel,
        **_transcript_values(ctx, transcript),
    )


@console_page()
async def list_fragment(ctx: Ctx) -> Response:
    view = _view(ctx)
    listing = await _listing(ctx, view)
    return render_fragment(
        "_conversation_list.html", listing=listing, rows=listing.rows, view=view,
        current=ctx.request.query_params.get("current"),
    )


@console_page()
async def messages_fragment(ctx: Ctx) -> Response:
    """Messages after ``?after=SEQ``: what console.js appends when an event says there are more."""
    try:
        after = max(0, int(ctx.request.query_params.get("after", "0")))
    except ValueError:
        after = 0
    conversation_id = ctx.request.path_params["conversation_id"]
    transcript = await ctx.state.runner.read(convs.load_transcript, ctx.workspace_id, conversation_id, after)
    if transcript.last_seq:
        await ctx.state.runner.write(
            conversations.mark_read, ctx.workspace_id, conversation_id, "agent", transcript.last_seq,
            partition=conversation_id,
        )
    return render_fragment("_messages.html", **_transcript_values(ctx, transcript))


@console_page()
async def header_fragment(ctx: Ctx) -> Response:
    conversation_id = ctx.request.path_params["conversation_id"]

    def load(s: Session) -> convs.Transcript:
        return convs.load_transcript(s, ctx.workspace_id, conversation_id, after=2**62)

    transcript = await ctx.state.runner.read(load)
    return render_fragment(
        "_conversation_header.html", csrf_token=ctx.csrf, view=_view(ctx), **_transcript_values(ctx, transcript)
    )


def _wants_json(ctx: Ctx) -> bool:
    return ctx.request.headers.get("x-requested-with") == "fetch"


@console_page()
async def reply(ctx: Ctx) -> Response:
    conversation_id = ctx.request.path_params["conversation_id"]
    text = ctx.field("text").strip()
    file_ids = list(dict.fromkeys(ctx.fields("file_id")))  # uploaded from the reply box (console/files.py)
    # "Add note" (``as=note``): the reply box's text becomes a private note, for the team alone.
    note = ctx.field("as") == "note"
    problem = None
    if not text and not file_ids:
        problem = "Write a note first." if note else "Write a reply first."
    elif len(text) > MAX_REPLY:
        problem = f"A reply is at most {MAX_REPLY} characters."
    elif len(file_ids) > files.MAX_FILES_PER_REPLY:
        problem = f"A reply carries at most {files.MAX_FILES_PER_REPLY} files."
    if ctx.agent_id is None:
        problem = "Your console account has no agent profile, so it cannot reply."
    if problem:
        if _wants_json(ctx):
            return JSONResponse({"error": {"field": "text", "message": problem}}, status_code=422)
        return redirect(ctx, _url(conversation_id, _view(ctx)), problem)
    # The files' parts come from a read, and the whole reply is judged before the write is queued.
    file_parts = await ctx.state.runner.read(files.file_parts, ctx.workspace_id, file_ids) if file_ids else []
    try:
        body = MessageIn(
            actor=ActorIn(type="agent", id=ctx.agent_id),
            message_parts=([{"text": {"content": text}}] if text else []) + file_parts,  # type: ignore[arg-type]
            client_message_id=ctx.field("client_message_id") or None,
            private=note,
        )
    except ValidationError as exc:
        raise errors.from_validation_error(exc) from None
    message, _ = await ctx.state.runner.write(
        conversations.post_message, ctx.workspace_id, conversation_id, body, partition=conversation_id, quick=True
    )
    if _wants_json(ctx):
        return JSONResponse({"id": message.id, "seq": message.seq})
    return redirect(ctx, _url(conversation_id, _view(ctx)))


async def _patch(ctx: Ctx, fields: dict[str, Any], notice: str, then: str | None = None) -> Response:
    """The API's ``PATCH`` of the conversation; then back to it (or to ``then``, a console
    path). With console.js (``X-Requested-With: fetch``) the answer is ``{notice, ok, next}``
    and the page changes in place: no reload, so a draft reply stays where it is."""
    conversation_id = ctx.request.path_params["conversation_id"]
    ok = True
    try:
        # Validated before the write is queued (a posted id can be any length); whether the
        # agent exists is the write's to say.
        patch = ConversationPatch.model_validate(fields)
        await ctx.state.runner.write(
            conversations.update_conversation, ctx.workspace_id, conversation_id, patch, partition=conversation_id
        )
    except ValidationError as exc:
        notice, ok, then = errors.from_validation_error(exc).message, False, None
    except errors.Unprocessable as exc:
        said = [str(d.get("message", "")) for d in (exc.details or []) if isinstance(d, dict)]
        notice, ok, then = (said[0][:1].upper() + said[0][1:] + ".") if said and said[0] else exc.message, False, None
    if _wants_json(ctx):
        return JSONResponse({"notice": notice, "ok": ok, "next": then}, status_code=200 if ok else 422)
    return redirect(ctx, then or _url(conversation_id, _view(ctx)), notice)


@console_page()
async def assign(ctx: Ctx) -> Response:
    choice = ctx.field("assignee_id")
    assignee = ctx.agent_id if choice == "me" else (choice or None)
    notice = "Conversation assigned." if assignee else "Conversation unassigned."
    return await _patch(ctx, {"assignee_id": assignee}, notice)


async def _next_after(ctx: Ctx, conversation_id: str, view: str) -> str:
    """Where "Resolve and next" goes: the conversation below this one in the list (above it,
    at the end of the list), or the list itself when no other is left."""
    listing = await _listing(ctx, view)
    ids = [r.conversation.id for r in listing.rows]
    if conversation_id in ids:
        i = ids.index(conversation_id)
        ids = ids[i + 1:] + ids[:i][::-1]
    others = [i for i in ids if i != conversation_id]
    return _url(others[0] if others else None, view)


@console_page()
async def set_status(ctx: Ctx) -> Response:
    resolve = ctx.field("status") == "resolved"
    notice = "Conversation resolved." if resolve else "Conversation reopened."
    then = None
    if resolve and ctx.field("then") == "next":  # "Resolve and next"
        then = await _next_after(ctx, ctx.request.path_params["conversation_id"], _view(ctx))
    return await _patch(ctx, {"status": "resolved" if resolve else "open"}, notice, then)


@console_page()
async def return_to_bot(ctx: Ctx) -> Response:
    """"Return to bot": control goes back to the bot and the human assignee lets go (the API's
    ``POST …/handover`` with ``to: bot``, reason ``returned_by_agent``)."""
    conversation_id = ctx.request.path_params["conversation_id"]
    body = HandoverIn(to="bot", reason="returned_by_agent")
    await ctx.state.runner.write(
        conversations.hand_over, ctx.workspace_id, conversation_id, body, partition=conversation_id
    )
    notice = "The bot has this conversation again."
    if _wants_json(ctx):
        return JSONResponse({"notice": notice, "ok": True, "next": None})
    return redirect(ctx, _url(conversation_id, _view(ctx)), notice)


@console_page()
async def set_availability(ctx: Ctx) -> Response:
    """The header's "Available" toggle: the agent's status (``PATCH /agents/{id}``'s ``status``);
    only available humans are handed conversations."""
    if ctx.agent_id is None:
        raise errors.Forbidden("Your console account has no agent profile.")
    status = "online" if ctx.field("status") == "online" else "away"
    await ctx.state.runner.write(people.update_agent, ctx.workspace_id, ctx.agent_id, {"status": status})
    if _wants_json(ctx):
        return JSONResponse({"status": status})
    back = ctx.field("next")
    target = back if back.startswith("/console/") and not back.startswith("//") else "/console/inbox"
    notice = "You are available." if status == "online" else "You are away: nothing new is routed to you."
    return redirect(ctx, target, notice)


@console_page()
async def notice(ctx: Ctx) -> Response:
    """What a desktop notification says about a conversation (console.js): the customer's name
    and their newest message's text. 404 outside the workspace."""
    conversation_id = ctx.request.path_params["conversation_id"]
    found = await ctx.state.runner.read(convs.notice, ctx.workspace_id, conversation_id)
    return JSONResponse(found, headers={"cache-control": "no-store"})
