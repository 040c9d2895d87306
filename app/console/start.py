"""Get started: the first-login checklist for admins (install the snippet, connect a bot,
invite the team, set the allowed origins), each item checked off from what is stored."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, func, select
from starlette.responses import Response

from app.console.auth import Ctx
from app.console.pages import console_page
from app.console.render import render
from app.console.widget import embed_snippet
from app.store.tables import ApiToken, ConsoleUser, Conversation, WebhookEndpoint, Workspace


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    done: bool
    href: str
    action: str


@dataclass(frozen=True)
class Progress:
    chatted: bool  # a customer has written: the snippet is on a page
    bot: bool  # an enabled webhook endpoint, or an API token in use
    team: int  # console users of the workspace
    origins: bool


def progress(s: Session, workspace_id: str) -> Progress:
    def exists(query: object) -> bool:
        return s.exec(query).first() is not None  # type: ignore[call-overload, no-any-return]

    chatted = exists(select(Conversation.id).where(Conversation.workspace_id == workspace_id).limit(1))
    bot = exists(
        select(WebhookEndpoint.id).where(WebhookEndpoint.workspace_id == workspace_id, WebhookEndpoint.enabled == True)  # noqa: E712
        .limit(1)
    ) or exists(
        select(ApiToken.id).where(ApiToken.workspace_id == workspace_id, ApiToken.last_used_at != None)  # noqa: E711
        .limit(1)
    )
    team = s.exec(select(func.count()).select_from(ConsoleUser).where(ConsoleUser.workspace_id == workspace_id)).one()
    workspace = s.get(Workspace, workspace_id)
    return Progress(chatted, bot, int(team), bool(workspace and workspace.allowed_origins))


def steps(p: Progress) -> list[Step]:
    return [
        Step("snippet", "Install the chat on your site", p.chatted, "/console/settings/widget",
             "Copy the embed snippet"),
        Step("bot", "Connect your bot", p.bot, "/console/settings/webhooks",
             "Add a webhook endpoint"),
        Step("team", "Invite your team", p.team > 1, "/console/settings/team", "Invite a teammate"),
        Step("origins", "Choose the sites that may show the chat", p.origins, "/console/settings/widget",
             "Set allowed origins"),
    ]


@console_page(admin=True)
async def start_page(ctx: Ctx) -> Response:
    found = await ctx.state.runner.read(progress, ctx.workspace_id)
    items = steps(found)
    return render(
        ctx.request, "start.html", ctx=ctx, steps=items, done=sum(1 for i in items if i.done),
        snippet=embed_snippet(ctx),
    )
