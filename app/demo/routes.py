"""``/demo``: AG Bank's home page, a host page that embeds the widget like any customer site."""

from __future__ import annotations

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from app.assets import TEMPLATES_DIR
from app.settings import Settings

_env: Environment | None = None


def _template_env(templates_dir: str) -> Environment:
    global _env
    if _env is None:
        _env = Environment(loader=FileSystemLoader(templates_dir), autoescape=select_autoescape(["html"]))
    return _env


async def demo_page(request: Request) -> Response:
    settings: Settings = request.app.state.bc.settings
    if not settings.demo_widget_key:
        return HTMLResponse(
            "<!doctype html><title>No demo</title><p>The AG Bank demo is not running here. "
            "Start it with <code>scripts/serve</code>.</p>",
            status_code=404,
        )
    html = _template_env(str(TEMPLATES_DIR)).get_template("demo.html").render(widget_key=settings.demo_widget_key)
    return HTMLResponse(html)


ROUTES = [Route("/demo", demo_page, methods=["GET"])]
