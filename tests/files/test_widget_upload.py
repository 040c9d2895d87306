"""``POST /widget/v1/files``: the widget's upload, with the session token as a bearer token."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import LiveServer, Tenant
from tests.factories import assert_error
from tests.files.samples import pdf, png

ORIGIN = "http://shop.test"


def widget_session(server: LiveServer, tenant: Tenant) -> dict[str, Any]:
    r = httpx.post(server.url + "/widget/v1/session", json={"widget_key": tenant.widget_key}, headers={"Origin": ORIGIN})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def widget_upload(server: LiveServer, token: str | None, content: bytes, name: str = "receipt.png",
                  origin: str = ORIGIN) -> httpx.Response:  # fmt: skip
    headers = {"Origin": origin}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(server.url + "/widget/v1/files", files={"file": (name, content, "image/png")}, headers=headers)


def test_a_visitor_uploads_with_their_session_token_and_the_page_can_read_the_answer(
    server: LiveServer, tenant: Tenant
) -> None:
    s = widget_session(server, tenant)
    pre = httpx.options(
        server.url + "/widget/v1/files",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization"},
    )  # fmt: skip
    assert pre.status_code == 204
    assert "authorization" in pre.headers["access-control-allow-headers"]
    assert pre.headers["access-control-allow-origin"] == ORIGIN
    r = widget_upload(server, s["session_token"], png())
    assert r.status_code == 201, r.text
    assert r.headers["access-control-allow-origin"] == ORIGIN
    body = r.json()
    assert (body["name"], body["content_type"], body["size"]) == ("receipt.png", "image/png", len(png()))
    assert httpx.get(body["url"]).content == png()
    # refusals are readable by the page too, so the widget can say why
    bad = widget_upload(server, "not-a-token", png())
    assert_error(bad, 401)
    assert bad.headers["access-control-allow-origin"] == ORIGIN
    assert_error(widget_upload(server, None, png()), 401)
    assert_error(widget_upload(server, s["session_token"], b""), 422)


def test_a_site_outside_allowed_origins_cannot_upload(server: LiveServer, tenant: Tenant, api: httpx.Client) -> None:
    s = widget_session(server, tenant)
    assert api.patch("/api/v1/widget-settings", json={"allowed_origins": [ORIGIN]}).status_code == 200
    assert widget_upload(server, s["session_token"], png()).status_code == 201
    assert_error(widget_upload(server, s["session_token"], png(), origin="https://evil.test"), 403, "origin_not_allowed")


def test_per_visitor_upload_limits_count_files_and_bytes(server_factory: Any) -> None:
    server: LiveServer = server_factory(
        env={"BACKCHANNEL_WIDGET_UPLOADS_PER_HOUR": "3", "BACKCHANNEL_WIDGET_UPLOAD_BYTES_PER_HOUR": "10000"}
    )
    tenant = server.new_tenant()
    one, two = widget_session(server, tenant), widget_session(server, tenant)
    for _ in range(3):
        assert widget_upload(server, one["session_token"], png()).status_code == 201
    refused = widget_upload(server, one["session_token"], png())
    assert_error(refused, 429, "rate_limited")
    assert int(refused.headers["retry-after"]) > 0
    assert refused.headers["access-control-allow-origin"] == ORIGIN
    # another visitor has their own allowance; bytes count too
    assert widget_upload(server, two["session_token"], pdf() * 100).status_code == 201  # ~7 KB
    assert_error(widget_upload(server, two["session_token"], pdf() * 100, "b.pdf"), 429, "rate_limited")
    stored = list((server.workdir / "files" / tenant.workspace_id).iterdir())
    assert len(stored) == 4  # nothing kept past a limit
