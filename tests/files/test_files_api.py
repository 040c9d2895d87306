"""``POST/GET /api/v1/files`` and the signed download links."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx

from app.files.links import FileLinks
from tests.conftest import TEST_ENV, LiveServer, Tenant
from tests.factories import assert_error
from tests.files.samples import HTML, pdf, png, upload

SECRET = TEST_ENV["BACKCHANNEL_SECRET_KEY"]


def test_upload_reads_the_type_from_the_bytes_and_read_gives_a_fresh_link(server: LiveServer, api: httpx.Client) -> None:
    r = upload(api, png(), "receipt.png", "text/html")  # the client's word is ignored
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["id"].startswith("fil_")
    assert (body["name"], body["content_type"], body["size"]) == ("receipt.png", "image/png", len(png()))
    assert body["url"].startswith(server.url + f"/files/{body['id']}?")
    expires = parse_qs(urlsplit(body["url"]).query)["expires"][0]
    assert int(expires) - time.time() >= 3600  # valid for at least an hour
    assert body["expires_at"].endswith("Z") and body["created_at"].endswith("Z")

    again = api.get(f"/api/v1/files/{body['id']}")
    assert again.status_code == 200
    assert {k: v for k, v in again.json().items() if k not in ("url", "expires_at")} == {
        k: v for k, v in body.items() if k not in ("url", "expires_at")
    }
    got = httpx.get(again.json()["url"])
    assert got.status_code == 200
    assert got.content == png()
    assert got.headers["content-type"] == "image/png"
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-security-policy"] == "sandbox"
    assert got.headers["content-disposition"].startswith("inline;")


def test_another_workspaces_file_is_404(server: LiveServer, api: httpx.Client) -> None:
    mine = upload(api, pdf(), "statement.pdf").json()
    other = server.new_tenant("Other")
    with server.client(other) as theirs:
        assert_error(theirs.get(f"/api/v1/files/{mine['id']}"), 404, "not_found")
        assert_error(theirs.get("/api/v1/files/fil_doesnotexist"), 404, "not_found")


def test_a_bad_or_expired_link_is_403(server: LiveServer, api: httpx.Client) -> None:
    body = upload(api, pdf(), "statement.pdf").json()
    links = FileLinks(SECRET, server.url)
    expired, _ = links.url(body["id"], now=time.time() - 3 * 3600)
    assert httpx.get(expired).status_code == 403
    tampered = body["url"].replace("signature=", "signature=A")
    assert httpx.get(tampered).status_code == 403
    assert httpx.get(server.url + f"/files/{body['id']}").status_code == 403
    # another file's signature does not open this one
    second = upload(api, pdf(), "second.pdf").json()
    swapped = body["url"].split("?")[0] + "?" + urlsplit(second["url"]).query
    assert httpx.get(swapped).status_code == 403
    assert httpx.get(body["url"]).status_code == 200
    # a link signed with another key (another server's secret) is refused too
    forged, _ = FileLinks("another-secret-key-0123456789-abcdefgh", server.url).url(body["id"])
    assert httpx.get(forged).status_code == 403


def test_html_is_sent_as_an_attachment_in_a_sandbox_whatever_the_client_says(api: httpx.Client) -> None:
    body = upload(api, HTML, "invoice.png", "image/png").json()
    assert body["content_type"] == "text/plain"  # sniffed from the bytes: not an image
    got = httpx.get(body["url"])
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("text/plain")
    assert got.headers["content-disposition"].startswith("attachment;")
    assert got.headers["content-security-policy"] == "sandbox"
    assert got.headers["x-content-type-options"] == "nosniff"


def test_a_lying_client_type_never_wins(api: httpx.Client) -> None:
    body = upload(api, pdf(), "photo.jpg", "image/jpeg").json()
    assert body["content_type"] == "application/pdf"
    assert httpx.get(body["url"]).headers["content-type"] == "application/pdf"


def test_empty_or_missing_files_are_422_and_bodies_that_are_not_forms_400(api: httpx.Client) -> None:
    assert_error(upload(api, b"", "empty.txt"), 422, "validation_failed")
    r = api.post("/api/v1/files", files={"other": ("a.txt", b"hello", "text/plain")})
    assert_error(r, 422, "validation_failed")
    assert r.json()["error"]["details"][0]["field"] == "file"
    r = api.post("/api/v1/files", json={"file": "aGVsbG8="})  # JSON where a form belongs
    assert assert_error(r, 422, "validation_failed")["details"][0]["field"] == "file"
    r = api.post("/api/v1/files", content=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(r, 400, "invalid_json")
    r = api.post("/api/v1/files", content=b"file=abc", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_error(r, 400, "bad_request")
    r = api.post(
        "/api/v1/files",
        content=b"--xx\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nabc",
        headers={"Content-Type": "multipart/form-data; boundary=xx"},
    )
    assert_error(r, 400, "bad_request")


def test_uploads_need_a_write_token_before_any_byte_is_read(server: LiveServer, tenant: Tenant) -> None:
    r = httpx.post(server.url + "/api/v1/files", files={"file": ("a.pdf", pdf(), "application/pdf")})
    assert_error(r, 401)
    reader = server.token_for(tenant.workspace_id, ["read"])
    r = httpx.post(
        server.url + "/api/v1/files",
        files={"file": ("a.pdf", pdf(), "application/pdf")},
        headers={"Authorization": f"Bearer {reader}"},
    )
    assert_error(r, 403)
    assert not list((server.workdir / "files").glob(f"{tenant.workspace_id}/*"))


def test_an_idempotent_upload_replays_and_keeps_one_file(server: LiveServer, api: httpx.Client, tenant: Tenant) -> None:
    first = upload(api, pdf(), "a.pdf", headers={"Idempotency-Key": "up-1"})
    second = upload(api, pdf(), "a.pdf", headers={"Idempotency-Key": "up-1"})
    assert first.status_code == second.status_code == 201
    assert second.headers.get("idempotent-replayed") == "true"
    assert second.json()["id"] == first.json()["id"]
    assert len(list((server.workdir / "files" / tenant.workspace_id).iterdir())) == 1
