"""``create_app(settings)``: the whole server, composed explicitly. Nothing connects at import."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from app import VERSION, errors, heap
from app.api import (
    agents,
    audit_log,
    canned_responses,
    conversations,
    event_feed,
    files,
    reports,
    tokens,
    users,
    webview_contexts,
    widget_settings,
    workspace,
)
from app.api import webhooks as webhook_routes
from app.api.framework import Api, ApiApp, Endpoint, JSONResponse, error_response, http_error_response
from app.api.openapi import build_openapi, render_docs
from app.api.typescript import declarations
from app.assets import STATIC_DIR, TEMPLATES_DIR
from app.console import routes as console_pages
from app.console.hub import ConsoleHub
from app.conversations import customer_message_to_a_bot, hand_over_if_bot_unavailable
from app.data.retention import DataJob, run_data_job
from app.demo import routes as demo_pages
from app.edge import HttpEdge, internal_error_response
from app.files import routes as file_pages
from app.files.service import Files
from app.instruments import start_socket_gauges
from app.logs import innermost_place
from app.mail.replies import OfflineReplies, run_offline_replies
from app.metrics import metrics
from app.proxies import TrustedProxies
from app.ratelimit import make_rate_limiter
from app.realtime import session as widget_session
from app.realtime.broker import make_broker
from app.realtime.closecodes import CloseCode
from app.realtime.hub import Hub
from app.realtime.identity import TokenSigner
from app.settings import Settings
from app.state import AppState
from app.store.engine import make_engines, make_inline_engine
from app.store.runner import Runner
from app.webhooks.deliveries import Job
from app.webhooks.dispatcher import Dispatcher, run_dispatcher
from app.webhooks.sender import Sender, make_sender
from app.webviews import routes as webview_pages

log = logging.getLogger("backchannel")


def api_endpoints() -> list[Endpoint]:
    return [
        *users.ENDPOINTS,
        *agents.ENDPOINTS,
        *conversations.ENDPOINTS,
        *canned_responses.ENDPOINTS,
        *tokens.ENDPOINTS,
        *widget_settings.ENDPOINTS,
        *webview_contexts.ENDPOINTS,
        *webhook_routes.ENDPOINTS,
        *files.ENDPOINTS,
        *reports.ENDPOINTS,
        *workspace.ENDPOINTS,
        *event_feed.ENDPOINTS,
        *audit_log.ENDPOINTS,
    ]


class BackchannelApp(Starlette):
    """Starlette with the edge (``app.edge.HttpEdge``, the one user middleware) outermost.

    Starlette would put its ``ServerErrorMiddleware`` around the edge; but the edge answers
    every error of what it wraps itself (logged by type and place, never by message), so
    that layer only added a frame and a send wrapper to every request (docs/performance.md,
    section 15). What the edge itself could fail on before it answers is caught here."""

    def build_middleware_stack(self) -> ASGIApp:
        handlers = {key: h for key, h in self.exception_handlers.items() if key not in (500, Exception)}
        app: ASGIApp = ExceptionMiddleware(self.router, handlers=handlers, debug=self.debug)
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        return app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        try:
            await self.middleware_stack(scope, receive, send)
        except Exception as exc:
            if scope["type"] != "http":
                raise
            # Type and place only, never the message (it can carry request data, web-view
            # forms, SQL values). Not re-raised: the server would log it in full.
            log.error("unhandled %s on %s %s at %s", type(exc).__name__, scope["method"], scope["path"],
                      innermost_place(exc))  # fmt: skip
            await internal_error_response(scope["path"])(scope, receive, send)


def create_app(settings: Settings | None = None, *, webhook_sender: Sender | None = None) -> Starlette:
    """The app. ``webhook_sender`` replaces the SSRF-guarded outbound sender of webhook deliveries
    and the web-view form relay (a test may pass its own; the caller then closes it)."""
    settings = settings or Settings()
    endpoints = api_endpoints()
    openapi = build_openapi(endpoints, VERSION)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            app.state.bc = await start_services(settings, stack, webhook_sender=webhook_sender)
            stack.enter_context(heap.tuned_for_serving())  # what startup made is never walked again
            yield

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(openapi)

    docs_html = render_docs(openapi, TEMPLATES_DIR)

    async def docs(request: Request) -> Response:
        return HTMLResponse(docs_html)

    typescript = declarations(openapi)

    async def typescript_types(request: Request) -> Response:
        # Public, like /widget.js beside it: tools may fetch it from anywhere.
        return Response(typescript, media_type="application/typescript; charset=utf-8",
                        headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "public, max-age=300"})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        state: AppState = request.app.state.bc
        checks = {"database": await _db_ok(state), "broker": await state.broker.ping()}
        ok = all(checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)

    api_routes = [Route("/api/v1/openapi.json", openapi_json, methods=["GET"]), *Api(endpoints).routes()]
    routes: list[BaseRoute] = [
        *api_routes,
        Route("/docs", docs, methods=["GET"]),
        Route("/backchannel.d.ts", typescript_types, methods=["GET", "HEAD"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        # Non-API surfaces, each module exporting ROUTES: widget, files, web views, console, demo.
        *widget_session.ROUTES,
        *file_pages.ROUTES,
        *webview_pages.ROUTES,
        *console_pages.ROUTES,
        *demo_pages.ROUTES,
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = BackchannelApp(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(HttpEdge, proxies=TrustedProxies(settings.trusted_proxies), sockets=widget_session.SOCKETS,
                       api=ApiApp(api_routes))  # fmt: skip
        ],
        exception_handlers={
            errors.ApiError: _api_error,
            HTTPException: _http_error,
        },
    )
    app.state.settings = settings
    app.state.openapi = openapi
    return app


async def start_services(
    settings: Settings,
    stack: contextlib.AsyncExitStack,
    *,
    webhook_sender: Sender | None = None,
) -> AppState:
    """Build and start what the app holds; ``stack`` stops it all, in reverse, at shutdown."""
    engine, read_engine = make_engines(settings)
    stack.callback(engine.dispose)
    if read_engine is not engine:
        stack.callback(read_engine.dispose)
    broker = make_broker(settings.broker_url)
    inline_engine = make_inline_engine(settings)
    if inline_engine is not None:
        stack.callback(inline_engine.dispose)
    runner = Runner(engine, read_engine, broker, writers=settings.database_writers, inline_engine=inline_engine)
    if webhook_sender is None:
        webhook_sender = make_sender(settings)
        stack.push_async_callback(webhook_sender.aclose)
    hub = Hub(runner, settings)
    stack.push_async_callback(hub.close_all, CloseCode.RESTARTING)
    console = ConsoleHub()
    stack.callback(console.close_all)
    file_store = Files(settings)
    stack.push_async_callback(file_store.aclose)
    state = AppState(
        settings=settings,
        engine=engine,
        read_engine=read_engine,
        broker=broker,
        runner=runner,
        limiter=make_rate_limiter(settings.broker_url),
        signer=TokenSigner(settings.secret_key.get_secret_value()),
        hub=hub,
        console=console,
        webhook_sender=webhook_sender,
        dispatcher=Dispatcher(runner, settings, webhook_sender, on_first_failure=_bot_unavailable(runner)),
        files=file_store,
        data_job=DataJob(runner, engine, file_store, settings),
        mail=OfflineReplies(runner, settings, hub.connected_users) if settings.smtp_url else None,
        listeners=[hub.on_event, console.on_event],
    )
    await broker.start(state.on_event)
    await run_dispatcher(state.dispatcher, stack)
    await run_data_job(state.data_job, stack)
    if state.mail is not None:
        await run_offline_replies(state.mail, stack)
    await start_socket_gauges(hub, console, stack)
    # Pushed last, so run first at shutdown: no event arrives while the sockets close.
    stack.push_async_callback(state.limiter.aclose)
    stack.push_async_callback(broker.stop)
    return state


def _bot_unavailable(runner: Runner) -> Callable[[Job], Awaitable[bool]]:
    """SPEC §11: a customer's message that no subscribed endpoint could take at its first
    attempt hands a bot-handled conversation to a human (``bot_unavailable``)."""

    async def after_first_failure(job: Job) -> bool:
        conversation_id = customer_message_to_a_bot(job.body)
        if conversation_id is None:
            return False
        return bool(
            await runner.write(
                hand_over_if_bot_unavailable, conversation_id, job.event_id, partition=conversation_id
            )
        )

    return after_first_failure


async def _db_ok(state: AppState) -> bool:
    def ping(session: Any) -> bool:
        session.exec(text("SELECT 1"))
        return True

    try:
        return await state.runner.read(ping)
    except Exception:
        return False


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.ApiError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/"):
        return http_error_response(exc)
    return PlainTextResponse(str(exc.detail), status_code=exc.status_code, headers=exc.headers)
