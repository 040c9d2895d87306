"""The REST layer: declarative endpoints become Starlette routes and the OpenAPI document.

An ``Endpoint`` names its body, query and response models; the same models validate the
request and describe it in ``/api/v1/openapi.json``. Every failure leaves as the one
error shape of ``errors.py``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from app import errors
from app.data import audit
from app.ids import utcnow
from app.proxies import client_address
from app.settings import Settings
from app.state import AppState
from app.store.runner import Tx
from app.store.tables import IdempotencyRecord
from app.tokens import Principal

log = logging.getLogger("backchannel.api")
PREFIX = "/api/v1"
# Every verb, TRACE and CONNECT included, reaches the dispatcher, so each 405 names what is allowed.
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"]
# Deeper JSON is refused before anything reads it: a 422, never a recursion error further on
# (orjson cannot write past 254 levels, so a deep `properties` was stored, then a 500).
MAX_JSON_DEPTH = 32
# Idempotency records replay for a day, then are pruned (a few at each idempotent write).
IDEMPOTENCY_TTL = timedelta(days=1)
IDEMPOTENCY_PRUNE_BATCH = 100
# Response fields shown once and never stored: an idempotent replay leaves them out.
SECRET_FIELDS = frozenset({"token", "secret"})


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(exc: errors.ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


@dataclass
class Call:
    """What a handler gets: the caller, the open session (and write transaction), inputs."""

    principal: Principal
    session: Session
    params: dict[str, str]
    body: Any = None
    query: Any = None
    tx: Tx | None = None
    settings: Settings | None = None  # for handlers that sign or verify with the secret key
    ip: str | None = None  # the client's address (app/proxies.py), for the audit log

    @property
    def workspace_id(self) -> str:
        return self.principal.workspace_id

    @property
    def write(self) -> Tx:
        assert self.tx is not None, "write handlers run inside a transaction"
        return self.tx


@dataclass
class Endpoint:
    method: str
    path: str
    handler: Callable[[Call], Any]
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: Any = None  # a model, ("page", model), or None for 204
    status: int = 200
    scope: str = "read"
    errors: tuple[int, ...] = ()
    description: str = ""
    # Checks of the validated body that need no database, so they never run in the writer:
    # ``check(body, settings)`` raises an ``ApiError`` (a 422), answered only once the caller
    # is known to be authenticated, like a failure of the body's model.
    check: Callable[[Any, Settings], None] | None = None
    # A body that is not JSON (an upload, app/files): streamed by ``receive(request, state,
    # workspace_id) -> (fingerprint, body)`` once the caller is authenticated, and handed to
    # ``discard(state, body)`` when no row came of it (a failed write, an idempotent replay).
    # ``form`` is its multipart/form-data schema in the OpenAPI document.
    receive: Callable[[Request, Any, str], Awaitable[tuple[bytes, Any]]] | None = None
    discard: Callable[[Any, Any], Awaitable[None]] | None = None
    form: dict[str, Any] | None = None
    # An admin action (SPEC §13): ``(action, target type)`` recorded in the audit log by a
    # successful call, in the write's own transaction (a read's, such as an export, in a write
    # committed before the answer). The target is the path's id, or the created resource's.
    audit: tuple[str, str] | None = None
    # The conversation whose next message ``seq`` the write takes first, if it does, from the
    # path's params and the body: ``bumps(params, body)``. Writer batches on PostgreSQL take those
    # together, in one round trip (``Runner.write``'s ``bumps``).
    bumps: Callable[[dict[str, str], Any], str | None] | None = None
    # A short write (a message: a few rows): it may run on the event loop (``Runner.write``'s
    # ``quick``). Not for a write that may loop over many rows (an erasure, an import).
    quick: bool = False

    @property
    def writes(self) -> bool:
        return self.method != "GET"


@dataclass
class Result:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    # Work outside the database once the write has committed, before the answer (an
    # erasure's file bytes): ``after(state)``. A write may run more than once; this runs once.
    after: Callable[[AppState], Awaitable[None]] | None = None


class Api:
    """Turns endpoints into routes; each route authenticates, validates and runs its handler."""

    def __init__(self, endpoints: list[Endpoint]) -> None:
        self.endpoints = endpoints

    def routes(self) -> list[Route]:
        by_path: dict[str, dict[str, Endpoint]] = defaultdict(dict)
        for ep in self.endpoints:
            by_path[ep.path][ep.method] = ep
        routes: list[Route] = []
        for path, methods in by_path.items():
            # Every verb reaches the dispatcher, which answers 405 in the one error shape.
            routes.append(Route(PREFIX + path, self._dispatcher(methods), methods=ALL_METHODS))
        routes.append(Route(PREFIX + "/{rest:path}", _unknown_route, methods=ALL_METHODS))
        return routes

    def _dispatcher(self, methods: dict[str, Endpoint]) -> Callable[[Request], Any]:
        async def dispatch(request: Request) -> Response:
            method = "GET" if request.method == "HEAD" else request.method
            ep = methods.get(method)
            if ep is None:
                allowed = [*methods, "HEAD"] if "GET" in methods else list(methods)
                raise errors.MethodNotAllowed(
                    f"{request.method} is not allowed here.", headers={"Allow": ", ".join(allowed)}
                )
            return await run_endpoint(ep, request)

        return dispatch


class ApiApp:
    """The API's routes, served by the edge (``HttpEdge``) without Starlette's router and
    exception middleware: a request under ``/api/v1/`` is matched here, runs its endpoint, and
    any ``ApiError`` becomes the one error shape, as the app's exception handlers would make it.

    Why: the router tries each route in turn (a message was the 10th of 110), and the two
    exception layers wrap the request and each of its ``send`` calls: a message paid about
    4 % of its CPU for them. Routes are looked up by the path's first and last segments and
    their count, in the order given, so a match is the router's first match. A path no route
    here names (only the catch-all would take it) goes to the app's router, as does
    everything outside the prefix: a route added there later still answers. The routes stay
    in the router too (the OpenAPI document, ``url_for``). Anything that fails here other
    than an ``ApiError`` reaches the edge, which logs it and answers 500.
    """

    def __init__(self, routes: list[Route]) -> None:
        # (first segment, segment count, last segment) → the routes that may match such a path,
        # in the order given; (…, None) holds those whose last segment is a parameter. Only the
        # catch-all has a ``:path`` parameter (more than one segment): it is the router's.
        self._candidates: dict[tuple[str, int, str | None], list[Route]] = {}
        shapes = [(r, _shape(r.path)) for r in routes]
        for _, shape in shapes:
            if shape is None:
                continue
            first, count, last = shape
            for key in {(first, count, last), (first, count, None)}:
                self._candidates[key] = [
                    r for r, sh in shapes if sh is not None and sh[:2] == key[:2] and sh[2] in (key[2], None)
                ]

    def handler(self, scope: Scope, route_path: str) -> ASGIApp | None:
        """The app that answers this request (its route set in ``scope``), or None: the router's."""
        if not route_path.startswith(PREFIX + "/"):
            return None
        segments = route_path[len(PREFIX) + 1 :].split("/")
        candidates = self._candidates.get((segments[0], len(segments), segments[-1]))
        if candidates is None:
            candidates = self._candidates.get((segments[0], len(segments), None), [])
        for route in candidates:
            match, child_scope = route.matches(scope)
            if match is not Match.NONE:  # every API route takes every method: a match is FULL
                scope["route"] = route
                scope.update(child_scope)
                return functools.partial(self._run, route.endpoint)
        return None

    @staticmethod
    async def _run(
        endpoint: Callable[[Request], Awaitable[Response]], scope: Scope, receive: Receive, send: Send
    ) -> None:
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except errors.ApiError as exc:
            response = error_response(exc)
        except HTTPException as exc:
            response = http_error_response(exc)
        await response(scope, receive, send)


def _shape(route_path: str) -> tuple[str, int, str | None] | None:
    """``/api/v1/conversations/{id}/messages`` → ``("conversations", 3, "messages")``: the
    literal first segment, how many there are, and the last where it is literal. None for a
    route that starts with a parameter or spans segments (the catch-all)."""
    segments = route_path[len(PREFIX) + 1 :].split("/")
    if "{" in segments[0] or ":path}" in route_path:
        return None
    return segments[0], len(segments), None if "{" in segments[-1] else segments[-1]


def http_error_response(exc: HTTPException) -> JSONResponse:
    """Starlette's own HTTP errors (a 404, a 405) in the one error shape."""
    codes: dict[int, type[errors.ApiError]] = {404: errors.NotFound, 405: errors.MethodNotAllowed,
                                               413: errors.PayloadTooLarge}  # fmt: skip
    cls = codes.get(exc.status_code, errors.BadRequest)
    # Keep Starlette's headers: a 405 must say which methods are allowed (RFC 9110 §15.5.6).
    return error_response(cls(str(exc.detail) if exc.detail else None, headers=dict(exc.headers or {})))


async def _unknown_route(request: Request) -> Response:
    raise errors.NotFound(f"No API route {request.method} {request.url.path}.", code="route_not_found")


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise errors.PayloadTooLarge(details={"max_bytes": limit})
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise errors.PayloadTooLarge(details={"max_bytes": limit})
        chunks.append(chunk)
    return b"".join(chunks)


def nesting_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether decoded JSON nests objects/arrays deeper than ``limit`` (iterative: no recursion)."""
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def json_too_deep(raw: bytes | str, data: Any) -> bool:
    """``nesting_exceeds`` for JSON just decoded from ``raw``; most texts have too few
    brackets to nest that deep, and are let through without a walk."""
    if isinstance(raw, str):
        raw = raw.encode()
    return raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and nesting_exceeds(data)


def too_deep() -> errors.ApiError:
    return errors.Unprocessable(
        f"The body nests objects and arrays deeper than {MAX_JSON_DEPTH} levels.",
        code="json_too_deep",
        details=[{"field": "body", "message": f"at most {MAX_JSON_DEPTH} levels of objects and arrays"}],
    )


def loads_json(raw: bytes) -> Any:
    """Decode a request body: a 400 when it is not JSON, a 422 when it nests too deep."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in exc.msg:  # orjson's own limit (1024) comes before ours
            raise too_deep() from None
        raise errors.BadRequest(f"The body is not valid JSON: {exc.msg}.", code="invalid_json") from None
    if json_too_deep(raw, data):
        raise too_deep()
    return data


def parse_json_body(raw: bytes, model: type[BaseModel]) -> BaseModel:
    data: Any = loads_json(raw) if raw.strip() else {}
    if not isinstance(data, dict):
        raise errors.Unprocessable(
            "The body must be a JSON object.", details=[{"field": "body", "message": "expected an object"}]
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise errors.from_validation_error(exc) from None


def parse_query(request: Request, model: type[BaseModel]) -> BaseModel:
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise errors.from_validation_error(exc, prefix=("query",)) from None


def parse_inputs(ep: Endpoint, request: Request, raw: bytes, settings: Settings) -> tuple[Any, Any]:
    """The endpoint's validated body and query, and its own checks that need no database.

    Pure work on the request alone: ``run_endpoint`` does it on the event loop before any
    store work is queued, so a refused input never costs the writer (or a reader) anything.
    """
    # The body is read as JSON whatever the Content-Type says (curl -d sends a form type).
    body = parse_json_body(raw, ep.body) if ep.body is not None else None
    query = parse_query(request, ep.query) if ep.query is not None else None
    if ep.check is not None:
        ep.check(body, settings)
    return body, query


async def run_endpoint(ep: Endpoint, request: Request) -> Response:
    state: AppState = request.app.state.bc
    # No bearer secret at all: 401 at once, with nothing counted and nothing queued.
    token_hash = state.authenticator.bearer_hash(request.headers.get("authorization"))
    # The per-token limit is settled here, on the event loop, before any database work is
    # queued: keyed by the token's hash (what the store keeps), so no lookup is needed first.
    await state.limiter.consume_or_raise(f"token:{token_hash}", state.settings.api_rate_per_minute, 60)

    def authed(s: Session, *, record_use: bool = True) -> tuple[Principal, bool]:
        principal, stale = state.authenticator.authenticate(s, token_hash, record_use=record_use)
        principal.require(ep.scope)
        return principal, stale

    if ep.receive is not None:
        # A streamed body (an upload) is read only for a caller already known and allowed:
        # nobody else gets to fill the store.
        caller, _ = await state.runner.read(lambda s: authed(s, record_use=False))
        raw, received = await ep.receive(request, state, caller.workspace_id)
        try:
            return await _run(ep, request, state, authed, raw, received)
        except BaseException:
            await _discard(ep, state, received)
            raise
    raw = await read_body(request, state.settings.max_body_bytes) if ep.writes else b""
    return await _run(ep, request, state, authed, raw, None)


async def _run(ep: Endpoint, request: Request, state: AppState, authed: Callable[..., tuple[Principal, bool]],
               raw: bytes, received: Any) -> Response:  # fmt: skip
    params = dict(request.path_params)
    idem_key = request.headers.get("idempotency-key") if ep.method == "POST" else None
    if idem_key is not None and not (1 <= len(idem_key) <= 255):
        raise errors.BadRequest("Idempotency-Key must be 1 to 255 characters.", code="invalid_idempotency_key")
    fingerprint = hashlib.sha256(f"{ep.method} {request.url.path}\n".encode() + raw).hexdigest() if idem_key else ""

    # Inputs are judged here, on the event loop, never in the writer: a flood of bad bodies
    # must not hold up (or be batched with) anyone's good writes. Who is calling still comes
    # first: an unauthenticated or wrong-scope caller gets its 401/403, never a 422 that
    # describes the body, so a refusal is answered only after a read (not a write) says who
    # this is. A refused request records no use of its token.
    try:
        body, query = (received, None) if ep.receive is not None else parse_inputs(ep, request, raw, state.settings)
    except errors.ApiError as refused:
        await state.runner.read(lambda s: authed(s, record_use=False))
        raise refused from None

    ip = client_address(request)
    if not ep.writes:

        def read(s: Session) -> tuple[Result, Principal, bool]:
            principal, stale = authed(s)
            call = Call(principal, s, params, body, query, settings=state.settings, ip=ip)
            return _as_result(ep, ep.handler(call)), principal, stale

        result, principal, stale = await state.runner.read(read)
        if ep.audit is not None and result.status < 400:
            # Nothing read for an admin action leaves before its audit entry is committed.
            def audit_read(tx: Tx) -> None:
                if stale:
                    state.authenticator.touch(tx, principal.token_id)
                _audit(tx, ep, principal, params, result, ip)

            await state.runner.write(audit_read)
        elif stale:
            # last_used_at is best effort: a locked database must not fail a read that worked.
            with contextlib.suppress(errors.Unavailable):
                await state.runner.write(state.authenticator.touch, principal.token_id)
    else:

        def write(tx: Tx) -> Result:
            # Checks that need the store stay here, in the transaction: the token (so a
            # revocation counts at once), the scope, idempotency, and the handler's own.
            principal, stale = authed(tx.session)
            if stale:
                state.authenticator.touch(tx, principal.token_id)
            if idem_key is not None:
                record = tx.session.get(IdempotencyRecord, (principal.workspace_id, idem_key))
                if record is not None and record.created_at > utcnow() - IDEMPOTENCY_TTL:
                    return _replay(record, fingerprint)
                if record is not None:  # expired: the key is free again
                    tx.session.delete(record)
                    tx.session.flush()
            res = _as_result(
                ep, ep.handler(Call(principal, tx.session, params, body, query, tx, settings=state.settings, ip=ip))
            )
            if ep.audit is not None and res.status < 400:
                _audit(tx, ep, principal, params, res, ip)
            if idem_key is not None and res.status < 500:
                tx.session.add(
                    IdempotencyRecord(
                        workspace_id=principal.workspace_id,
                        key=idem_key,
                        fingerprint=fingerprint,
                        status_code=res.status,
                        response_body=orjson.dumps(_without_secrets(res.body)).decode(),
                    )
                )
                tx.session.flush()
                prune_idempotency_records(tx.session)
            return res

        # Writes to one conversation share a writer lane (PostgreSQL runs several).
        partition = params.get("conversation_id")
        # A replayed idempotent request takes no seq: only a first one is said to.
        bumps = None
        if ep.bumps is not None and idem_key is None and state.runner.bumps_ahead:
            bumps = ep.bumps(params, body)
        try:
            result = await state.runner.write(write, partition=partition, bumps=bumps, quick=ep.quick)
        except IntegrityError:
            if idem_key is None:
                raise
            # A concurrent request with the same key won the race: replay its answer.
            result = await state.runner.write(write, partition=partition)
        if "Idempotent-Replayed" in result.headers:
            await _discard(ep, state, received)  # the first upload's file is the answer
        if result.after is not None:
            await result.after(state)
    if result.status == 204:
        return Response(status_code=204, headers=result.headers)
    return JSONResponse(result.body, status_code=result.status, headers=result.headers)


def _audit(tx: Tx, ep: Endpoint, principal: Principal, params: dict[str, str], res: Result, ip: str) -> None:
    assert ep.audit is not None
    action, target_type = ep.audit
    target_id = next((v for k, v in params.items() if k.endswith("_id")), None)
    if target_type == "workspace":
        target_id = principal.workspace_id
    elif target_id is None and isinstance(res.body, dict):
        target_id = res.body.get("id")
    actor = audit.token_actor(tx.session, principal.token_id, ip)
    audit.record(tx, principal.workspace_id, actor, action, target_type, target_id)


async def _discard(ep: Endpoint, state: AppState, received: Any) -> None:
    if ep.discard is not None and received is not None:
        await ep.discard(state, received)


def _as_result(ep: Endpoint, value: Any) -> Result:
    if isinstance(value, Result):
        return value
    if value is None:
        return Result(204, None)
    return Result(ep.status, value)


def _without_secrets(body: Any) -> Any:
    """The response as an idempotency record keeps it: never a token or secret (SPEC §3)."""
    if isinstance(body, dict):
        return {k: v for k, v in body.items() if k not in SECRET_FIELDS}
    return body


def prune_idempotency_records(s: Session, batch: int = IDEMPOTENCY_PRUNE_BATCH) -> int:
    """Delete up to ``batch`` records older than ``IDEMPOTENCY_TTL`` (any workspace's)."""
    cutoff = utcnow() - IDEMPOTENCY_TTL
    old = s.exec(
        select(IdempotencyRecord.workspace_id, IdempotencyRecord.key)
        .where(col(IdempotencyRecord.created_at) < cutoff)
        .limit(batch)
    ).all()
    for workspace_id, key in old:
        s.execute(
            delete(IdempotencyRecord).where(
                col(IdempotencyRecord.workspace_id) == workspace_id, col(IdempotencyRecord.key) == key
            )
        )
    return len(old)


def _replay(record: IdempotencyRecord, fingerprint: str) -> Result:
    if record.fingerprint != fingerprint:
        raise errors.Conflict("This Idempotency-Key was used with a different request.", code="idempotency_key_reused")
    body = orjson.loads(record.response_body) if record.response_body else None
    return Result(record.status_code, body, {"Idempotent-Replayed": "true"})
