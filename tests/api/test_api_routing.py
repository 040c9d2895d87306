"""The API served from the edge (``ApiApp``) picks exactly the route Starlette's router would,
and leaves to the router every path that only its catch-all (or a route added to it) takes."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.routing import Match, Route

from app.api.framework import ApiApp
from app.main import create_app
from app.settings import Settings

app = create_app(Settings(env="test", database_url="sqlite:///unused.db"))  # nothing connects until started
API = next(m.kwargs["api"] for m in app.user_middleware if "api" in m.kwargs)


def scope_for(path: str, method: str = "GET") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}


def routers_choice(path: str) -> Route:
    scope = scope_for(path)
    return next(r for r in app.router.routes if isinstance(r, Route) and r.matches(scope)[0] is not Match.NONE)


API_PATHS = sorted({re.sub(r"\{[^}]+\}", "x1", r.path) for r in app.router.routes
                    if isinstance(r, Route) and r.path.startswith("/api/v1/") and ":path}" not in r.path})  # fmt: skip


@pytest.mark.parametrize("path", API_PATHS)
def test_each_api_path_gets_the_route_the_router_would_give_it(path: str) -> None:
    scope = scope_for(path)
    assert API.handler(scope, path) is not None
    assert scope["route"] is routers_choice(path)
    assert scope["path_params"] == routers_choice(path).matches(scope_for(path))[1]["path_params"]


@pytest.mark.parametrize(
    "path",
    ["/api/v1/", "/api/v1/nothing", "/api/v1/users/", "/api/v1/conversations/x1/nothing", "/api/v1/users/x1/export/x"],
)
def test_a_path_only_the_catch_all_takes_is_left_to_the_router(path: str) -> None:
    assert API.handler(scope_for(path), path) is None
    assert routers_choice(path).path == "/api/v1/{rest:path}"


def test_paths_outside_the_api_are_left_to_the_router() -> None:
    assert API.handler(scope_for("/widget.js"), "/widget.js") is None
    assert API.handler(scope_for("/api/v2/users"), "/api/v2/users") is None


def test_a_literal_last_segment_and_a_parameter_in_its_place_keep_their_order() -> None:
    """``/things/{id}`` listed before ``/things/new``: the router gives ``new`` to the first."""

    async def ok(request: Any) -> Any:  # never called
        raise AssertionError

    first, second = Route("/api/v1/things/{id}", ok), Route("/api/v1/things/new", ok)
    api = ApiApp([first, second])
    scope = scope_for("/api/v1/things/new")
    assert api.handler(scope, "/api/v1/things/new") is not None and scope["route"] is first
    api = ApiApp([second, first])
    scope = scope_for("/api/v1/things/new")
    assert api.handler(scope, "/api/v1/things/new") is not None and scope["route"] is second
    scope = scope_for("/api/v1/things/7")
    assert api.handler(scope, "/api/v1/things/7") is not None and scope["route"] is first
