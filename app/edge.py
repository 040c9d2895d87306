"""The HTTP edge: one ASGI wrapper around every request and WebSocket handshake.

In order, for each connection: settle who the client is (``app.proxies``: behind a trusted
proxy, the scope's ``client`` and ``scheme`` become the customer's); give it a request id
(a sane incoming ``X-Request-Id`` is kept, else one is made; echoed in the response); add
the security headers every response gets; catch what the app did not (the log gets the
error's type, place and the request id — never its message, which can hold request values
or SQL parameters — and the client the one error shape); record its latency for
``/metrics``; and write one access line: method, path (never the query string: hosted-form
links carry their token there), status, duration, request id, client.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING

from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.ids import request_id as new_request_id
from app.instruments import observe_request
from app.logs import innermost_place
from app.proxies import TrustedProxies

if TYPE_CHECKING:
    from app.api.framework import ApiApp

log = logging.getLogger("backchannel")
access_log = logging.getLogger("backchannel.access")

_SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"strict-origin-when-cross-origin")]
_API_HEADERS = [*_SECURITY_HEADERS, (b"cache-control", b"no-store")]
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")
INTERNAL_ERROR = {"error": {"code": "internal", "message": "Something went wrong on our side.", "details": None}}


def request_id_of(scope: Scope) -> str:
    """The request id the edge settled for this request (``-`` outside the edge)."""
    return str(scope.get("state", {}).get("request_id", "-"))


def internal_error_response(path: str) -> Response:
    if path.startswith("/api/"):
        return JSONResponse(INTERNAL_ERROR, status_code=500)
    return PlainTextResponse("Internal Server Error", status_code=500)


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            if _SANE_REQUEST_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return new_request_id()


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "-"


class HttpEdge:
    def __init__(
        self,
        app: ASGIApp,
        proxies: TrustedProxies,
        sockets: Mapping[str, ASGIApp] | None = None,
        api: ApiApp | None = None,
    ) -> None:
        self.app = app
        self.proxies = proxies
        # The REST API, served from here rather than through the router (``ApiApp``).
        self.api = api
        # WebSocket paths served straight from here: a socket open for hours then keeps no
        # suspended frame of the router and exception middleware (~4 KiB of the ~20 an idle
        # widget socket costs; docs/performance.md).
        self.sockets = sockets or {}

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain function handing back an awaitable: a widget socket (which lives for hours)
        # keeps no suspended frame of this middleware, only a small send wrapper.
        if scope["type"] == "lifespan":
            return self.app(scope, receive, send)
        scope = self.proxies.resolve_scope(scope)
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        root, path = scope.get("root_path", ""), scope["path"]
        route_path = path[len(root) :] if root and path.startswith(root) else path
        if scope["type"] == "websocket":
            app = self.sockets.get(route_path, self.app)
            return app(scope, receive, _HandshakeLog(scope, send, request_id))
        api = self.api.handler(scope, route_path) if self.api is not None else None
        return self._http(self.app if api is None else api, scope, receive, send, request_id)

    async def _http(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        started = time.perf_counter()
        status = 0
        defaults = _API_HEADERS if scope["path"].startswith("/api/") else _SECURITY_HEADERS
        rid_header = (b"x-request-id", request_id.encode())

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                names = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in defaults if k not in names]
                headers.append(rid_header)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        except Exception as exc:
            # Not re-raised: uvicorn would log it in full (message, SQL parameters, values).
            log.error(
                "unhandled %s in %s %s at %s (request id %s)",
                type(exc).__name__,
                scope["method"],
                scope["path"],
                innermost_place(exc),
                request_id,
                extra={"request_id": request_id, "error": type(exc).__name__},
            )
            if not status:
                await internal_error_response(scope["path"])(scope, receive, send_wrapper)
            status = status or 500
        finally:
            elapsed = time.perf_counter() - started
            if status:
                route = scope.get("route")
                observe_request(scope["method"], getattr(route, "path", None) or "unmatched", status, elapsed)
            if access_log.isEnabledFor(logging.INFO):
                method, path, ms, client = scope["method"], scope["path"], elapsed * 1000, _client(scope)
                access_log.info(
                    "%s %s %s %.1fms request_id=%s client=%s",
                    method,
                    path,
                    status,
                    ms,
                    request_id,
                    client,
                    extra={
                        "method": method,
                        "path": path,
                        "status": status,
                        "duration_ms": round(ms, 2),
                        "request_id": request_id,
                        "client": client,
                    },
                )


class _HandshakeLog:
    """Wraps a WebSocket's ``send`` to write one access line for its handshake: accepted
    (101) or refused (the close code, or the HTTP status of a denial response)."""

    __slots__ = ("scope", "send", "request_id", "started")

    def __init__(self, scope: Scope, send: Send, request_id: str) -> None:
        self.scope, self.send, self.request_id = scope, send, request_id
        self.started: float | None = time.perf_counter()

    async def __call__(self, message: Message) -> None:
        if self.started is not None:
            kind = message["type"]
            if kind == "websocket.accept":
                headers = list(message.get("headers") or ())
                message = {**message, "headers": [*headers, (b"x-request-id", self.request_id.encode())]}
                self._log(101, "accepted")
            elif kind == "websocket.close":
                self._log(403, f"refused (close {message.get('code', 1000)})")
            elif kind == "websocket.http.response.start":
                self._log(int(message["status"]), "refused")
        await self.send(message)

    def _log(self, status: int, outcome: str) -> None:
        assert self.started is not None
        ms = (time.perf_counter() - self.started) * 1000
        self.started = None
        if access_log.isEnabledFor(logging.INFO):
            path, client = self.scope["path"], _client(self.scope)
            access_log.info(
                "WS %s %s %s %.1fms request_id=%s client=%s",
                path,
                status,
                outcome,
                ms,
                self.request_id,
                client,
                extra={
                    "method": "WS",
                    "path": path,
                    "status": status,
                    "outcome": outcome,
                    "duration_ms": round(ms, 2),
                    "request_id": self.request_id,
                    "client": client,
                },
            )
