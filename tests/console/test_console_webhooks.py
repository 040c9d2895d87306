"""Settings > Webhooks over plain HTTP (in process): the events choice, errors in one submit,
the new secret shown at creation, and the delivery log's filters, pages, payloads and health."""

from __future__ import annotations

import re

import httpx
from sqlalchemy import update

from app.console.webhooks import EVENTS_BOTH, EVENTS_NONE
from app.store.runner import Tx
from app.store.tables import WebhookDelivery, WebhookEndpoint
from app.webhooks.endpoints import send_test_event
from tests.conftest import InProcessServer, Tenant
from tests.console.support import console_client, make_console_user, page_csrf

PATH = "/console/settings/webhooks"
HOOK = "https://hooks.example.com/backchannel"


def _endpoints(api: httpx.Client) -> list[dict[str, object]]:
    return api.get("/api/v1/webhook-endpoints").json()["data"]  # type: ignore[no-any-return]


def test_all_events_and_single_events_are_one_clear_choice(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    c = console_client(app_server, make_console_user(app_server, app_tenant))
    csrf = page_csrf(c, PATH)
    # "All events" with a single event ticked too: refused, never saved as all events.
    r = c.post(PATH, data={"csrf_token": csrf, "url": HOOK, "events_mode": "all", "events": ["message.created"]})
    assert r.status_code == 422
    assert EVENTS_BOTH.replace("“", "&#8220;") in r.text or "also ticked single events" in r.text
    # "Only the events I tick" with none ticked: refused too.
    r = c.post(PATH, data={"csrf_token": csrf, "url": HOOK, "events_mode": "some"})
    assert r.status_code == 422 and "Tick at least one event" in r.text
    assert _endpoints(app_api) == []

    r = c.post(
        PATH,
        data={
            "csrf_token": csrf,
            "url": HOOK,
            "events_mode": "some",
            "events": ["message.created", "conversation.created"],
        },
    )
    assert r.status_code == 303
    (endpoint,) = _endpoints(app_api)
    assert endpoint["events"] == ["message.created", "conversation.created"]
    page = c.get(f"{PATH}/{endpoint['id']}").text
    # The saved choice comes back as it was made: "Only the events I tick", the two ticked.
    assert re.search(r'value="some"\s+checked', page)
    assert re.search(r'value="message.created"\s+checked', page)
    assert not re.search(r'value="message.updated"\s+checked', page)


def test_every_field_is_checked_in_one_submit_in_plain_words(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    c = console_client(app_server, make_console_user(app_server, app_tenant))
    csrf = page_csrf(c, PATH)
    r = c.post(
        PATH,
        data={"csrf_token": csrf, "url": "ftp://hooks.example.com", "description": "x" * 501, "events_mode": "some"},
    )
    assert r.status_code == 422
    for field in ("url", "description", "events"):
        assert f'id="f-{field}-error"' in r.text or f'id="add-{field}-error"' in r.text, field
    assert EVENTS_NONE.split(",")[0] in r.text
    assert "Value error" not in r.text and "Assertion failed" not in r.text
    assert _endpoints(app_api) == []


def test_the_new_secret_is_shown_at_creation_once(app_server: InProcessServer, app_tenant: Tenant) -> None:
    c = console_client(app_server, make_console_user(app_server, app_tenant))
    r = c.post(PATH, data={"csrf_token": page_csrf(c, PATH), "url": HOOK, "events_mode": "all"})
    assert r.status_code == 303 and r.headers["location"] == PATH  # back on the list, "Add endpoint" at hand
    assert "whsec_" not in r.headers.get("set-cookie", "")
    first = c.get(PATH).text
    assert len(re.findall(r"whsec_[A-Za-z0-9+/=]+", first)) == 1 and "Reveal secret" in first
    again = c.get(PATH).text  # a reload, or anyone later: only "Reveal secret"
    assert "whsec_" not in again and "Reveal secret" in again
    # The cookie names one endpoint and is signed: a forged one shows nothing.
    c.post(PATH, data={"csrf_token": page_csrf(c, PATH), "url": HOOK + "/2", "events_mode": "all"})
    c.cookies.set("bc_console_new_secret", "forged", path=PATH)
    assert "whsec_" not in c.get(PATH).text


def _queue_tests(tx: Tx, workspace_id: str, endpoint_id: str, count: int, failed: int) -> None:
    """``count`` test deliveries, the oldest ``failed`` of them failed; the endpoint then
    disabled (in the same transaction) so the dispatcher leaves them as they are."""
    ids = [send_test_event(tx, workspace_id, endpoint_id).id for _ in range(count)]
    tx.session.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(ids[:failed])).values(status="failed"))  # type: ignore[attr-defined]
    tx.session.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id).values(enabled=False))  # type: ignore[arg-type]


def test_the_delivery_log_pages_filters_and_shows_what_was_sent(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    endpoint = app_api.post("/api/v1/webhook-endpoints", json={"url": HOOK}).json()
    app_server.in_tx(_queue_tests, app_tenant.workspace_id, endpoint["id"], 55, 3)
    c = console_client(app_server, make_console_user(app_server, app_tenant))
    page_url = f"{PATH}/{endpoint['id']}"

    first = c.get(page_url).text
    assert first.count("<tr>") - 1 == 50  # a page of the log (the header row aside)
    assert first.index("Settings</h2>") < first.index("Delivery log</h2>")  # settings above the log
    assert "Payload sent" in first and "A test event from Backchannel." in first
    assert 'data-testid="endpoint-health"' in first and "Disabled: nothing is sent." in first
    older = re.search(r'href="([^"]+before=[^"]+)">Older deliveries', first)
    assert older
    second = c.get(older.group(1).replace("&amp;", "&")).text
    assert second.count("<tr>") - 1 == 5 and "Older deliveries" not in second

    failed = c.get(page_url, params={"failed": "1"}).text
    assert failed.count("<tr>") - 1 == 3 and failed.count("badge-fail") == 3
    assert c.get(page_url, params={"event": "message.created"}).text.count("<tr>") == 0
    assert c.get(page_url, params={"event": "webhook.test", "failed": "1"}).text.count("<tr>") - 1 == 3
    # A cursor that is not the log's own shows the first page, not an error.
    assert c.get(page_url, params={"before": "not-a-cursor"}).status_code == 200


def test_a_failing_endpoint_says_since_when(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    endpoint = app_api.post("/api/v1/webhook-endpoints", json={"url": HOOK}).json()

    def failing(tx: Tx) -> None:
        send_test_event(tx, app_tenant.workspace_id, endpoint["id"])
        tx.session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint["id"])  # type: ignore[arg-type]
            .values(failing_since=WebhookEndpoint.created_at)
        )

    app_server.in_tx(failing)
    c = console_client(app_server, make_console_user(app_server, app_tenant))
    page = c.get(f"{PATH}/{endpoint['id']}").text
    assert re.search(r"Failing since <time[^>]*>[^<]+</time>; 1 delivery waiting", page)
