"""The real app with routes that fail the way a bug would, carrying a sentinel value in their
exception messages (a SQL parameter, a request value), and an edge that fails on a request
sending ``X-Crash-Edge``, run under uvicorn exactly as ``backchannel serve`` runs it.
``tests/test_logging.py`` proves the sentinel never reaches the log. Run: ``python -m tests.crashing_app PORT``.
"""

from __future__ import annotations

import sys

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from app import edge
from app.main import create_app as create_real_app
from app.store.runner import Tx

SENTINEL = "sentinel-7f3a9c-do-not-log"


async def crash_in_sql(request: Request) -> Response:
    def write(tx: Tx) -> None:
        # A NOT NULL violation: the IntegrityError's message lists the statement's parameters.
        tx.session.execute(text("INSERT INTO workspace (id, name) VALUES (:value, NULL)"), {"value": SENTINEL})

    await request.app.state.bc.runner.write(write)
    return Response("unreachable")


async def crash_on_a_value(request: Request) -> Response:
    raise ValueError(f"could not handle {request.query_params.get('card')!r}")


async def crash_in_a_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    raise KeyError(SENTINEL)


_request_id = edge._request_id


def _request_id_or_crash(scope: dict) -> str:  # type: ignore[type-arg]
    """The edge itself failing, before it answers (a request sending ``X-Crash-Edge``)."""
    if any(name == b"x-crash-edge" for name, _ in scope["headers"]):
        raise RuntimeError(f"the edge could not handle {SENTINEL}")
    return _request_id(scope)


def create_app() -> Starlette:
    edge._request_id = _request_id_or_crash
    app = create_real_app()
    app.router.routes[:0] = [
        Route("/api/v1/crash", crash_in_sql, methods=["POST"]),
        Route("/crash", crash_on_a_value),
        WebSocketRoute("/crash-ws", crash_in_a_socket),
    ]
    return app


if __name__ == "__main__":
    import uvicorn

    from app.logs import configure_logging, uvicorn_options
    from app.settings import Settings

    settings = Settings()
    configure_logging(settings)
    uvicorn.run(
        "tests.crashing_app:create_app",
        factory=True,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        **uvicorn_options(settings),
    )
