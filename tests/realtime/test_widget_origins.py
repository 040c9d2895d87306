"""``allowed_origins`` entries are origins, nothing more (issue 15.14; SPEC §7).

They are written into the hosted form's ``Content-Security-Policy: frame-ancestors`` and
compared with the ``Origin`` header, so an entry such as ``https://a.com; script-src *``
would have added a directive to the header. The API refuses such an entry with a 422 naming
it, the console with a plain error, and an entry stored before validation existed never
reaches the header.
"""

from __future__ import annotations

import httpx
import pytest

from app.realtime.identity import normalize_origin, origin_allowed
from app.store.tables import Workspace
from tests.conftest import InProcessServer, Tenant
from tests.console.support import console_client, make_console_user, page_csrf
from tests.factories import assert_error
from tests.webviews.support import add_endpoint, card_form, open_in_store, post_webview_message

NOT_ORIGINS = [
    "https://shop.example.com; script-src 'unsafe-inline'",
    "https://shop.example.com script-src",
    "https://shop.example.com,https://evil.example",
    "https://*.example.com",
    "*",
    "'self'",
    "https://shop.example.com/path",
    "https://shop.example.com?x=1",
    "https://shop.example.com#top",
    "https://user:pw@shop.example.com",
    "https://shop.example.com\n",
    "ftp://shop.example.com",
    "javascript://shop.example.com",
    "data:text/html,hi",
    "shop.example.com",
    "https://",
    "https://shop.example.com:0",
    "https://shop.example.com:70000",
    "https://shop_example.com",
    "https://shop..example.com",
    "https://[not-ipv6]",
    "https://300.1.1.1",
    "null",
]


@pytest.mark.parametrize("entry", NOT_ORIGINS)
def test_what_is_not_an_origin_is_refused(entry: str) -> None:
    with pytest.raises(ValueError):
        normalize_origin(entry)


def test_origins_are_normalized_as_browsers_send_them() -> None:
    assert normalize_origin("HTTPS://Shop.Example.com/") == "https://shop.example.com"
    assert normalize_origin("https://shop.example.com:443") == "https://shop.example.com"
    assert normalize_origin("http://localhost:5173") == "http://localhost:5173"
    assert normalize_origin("http://127.0.0.1:8000") == "http://127.0.0.1:8000"
    assert normalize_origin("https://[::1]:3000") == "https://[::1]:3000"
    assert normalize_origin("https://bücher.example") == "https://xn--bcher-kva.example"
    assert origin_allowed(["https://shop.example.com"], "https://shop.example.com:443")


def test_the_api_refuses_an_entry_that_is_not_an_origin_with_422_naming_it(app_api: httpx.Client) -> None:
    app_api.patch("/api/v1/widget-settings", json={"allowed_origins": ["https://shop.example.com"]}).raise_for_status()
    for entry in NOT_ORIGINS:
        r = app_api.patch("/api/v1/widget-settings", json={"allowed_origins": ["https://ok.example", entry]})
        error = assert_error(r, 422)
        assert error["details"][0]["field"] == "allowed_origins.1", (entry, error)
        assert repr(entry[:100]) in error["details"][0]["message"], (entry, error)
    assert app_api.get("/api/v1/widget-settings").json()["allowed_origins"] == ["https://shop.example.com"]
    r = app_api.patch(
        "/api/v1/widget-settings", json={"allowed_origins": ["HTTPS://Shop.Example.com:443/", "http://[::1]:8080"]}
    )
    assert r.status_code == 200, r.text
    assert r.json()["allowed_origins"] == ["https://shop.example.com", "http://[::1]:8080"]


def test_an_entry_stored_before_validation_never_reaches_the_csp(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    add_endpoint(app_server, app_tenant.workspace_id, "https://bot.example.com/webhooks")
    scene = post_webview_message(
        app_api,
        [{"web_view": {"label": "Card", "form": card_form("https://bot.example.com/webhooks/card"), "height": "full"}}],
    )

    def store(origins: list[str]) -> None:
        def write(tx: object) -> None:
            workspace = tx.session.get(Workspace, app_tenant.workspace_id)  # type: ignore[attr-defined]
            workspace.allowed_origins = origins
            tx.session.add(workspace)  # type: ignore[attr-defined]

        app_server.in_tx(write)

    store(["https://shop.example.com; script-src 'unsafe-inline'", "https://ok.example"])
    csp = app_server.get(open_in_store(app_server, app_tenant, scene)["url"]).headers["content-security-policy"]
    assert "unsafe-inline" not in csp and csp.count(";") == 7, csp
    assert csp.endswith("frame-ancestors 'self' https://ok.example"), csp
    # Nothing valid left: framed by this app_server only, never by everyone.
    store(["https://*; frame-ancestors *"])
    csp = app_server.get(open_in_store(app_server, app_tenant, scene)["url"]).headers["content-security-policy"]
    assert csp.endswith("frame-ancestors 'self'"), csp


def test_the_console_refuses_an_entry_that_is_not_an_origin_with_a_plain_error(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    client = console_client(app_server, make_console_user(app_server, app_tenant))
    form = {
        "csrf_token": page_csrf(client, "/console/settings/widget"),
        "allowed_origins": "https://shop.example.com\nhttps://evil.example; script-src *",
        "theme_color": "#1f5eff",
        "greeting": "Hi",
    }
    r = client.post("/console/settings/widget", data=form)
    assert r.status_code == 422
    assert (
        'id="f-allowed_origins-error"' in r.text
        and "Line 2, “https://evil.example; script-src *”, is not an origin" in r.text
    )
    assert "Traceback" not in r.text and "Value error" not in r.text
    assert app_api.get("/api/v1/widget-settings").json()["allowed_origins"] == []
    form["allowed_origins"] = "https://shop.example.com/\nHTTP://LOCALHOST:5173"
    assert client.post("/console/settings/widget", data=form).status_code == 303
    assert app_api.get("/api/v1/widget-settings").json()["allowed_origins"] == [
        "https://shop.example.com",
        "http://localhost:5173",
    ]
