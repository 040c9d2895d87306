"""Delivery rules against real loopback receivers: retries keep the webhook-id, Retry-After,
redirects, 410, auto-disable, manual retry, slow endpoints, pruning, and ``kill -9``."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from app.settings import Settings
from app.store.migrate import upgrade
from tests.conftest import LiveServer, Tenant
from tests.receivers import Received, Receiver, eventually
from tests.webhooks.test_webhooks import EP, add_endpoint, deliveries


def answers(*script: tuple[int, dict[str, str]]) -> Any:
    """Answer the n-th request with ``script[n]``, then 200 for ever."""
    count = [0]
    lock = threading.Lock()

    def respond(req: Received) -> tuple[int, dict[str, str], bytes]:
        with lock:
            n = count[0]
            count[0] += 1
        status, headers = script[n] if n < len(script) else (200, {})
        return status, headers, f"answer {status}".encode()

    return respond


def detail(api: httpx.Client, delivery_id: str) -> dict[str, Any]:
    return api.get(f"/api/v1/webhook-deliveries/{delivery_id}").json()  # type: ignore[no-any-return]


def only_delivery(api: httpx.Client, endpoint_id: str, status: str) -> dict[str, Any]:
    (d,) = eventually(lambda: [d for d in deliveries(api, endpoint_id) if d["status"] == status])
    return d  # type: ignore[no-any-return]


def test_a_failed_delivery_is_retried_with_the_same_id_and_fresh_signatures(
    server: LiveServer, api: httpx.Client
) -> None:
    with Receiver(answers((500, {}), (500, {}))) as rx:
        ep = add_endpoint(api, rx.url)
        api.post("/api/v1/users", json={"name": "Ada"})
        got = rx.wait_count(3)
    assert len({r.webhook_id for r in got}) == 1
    for r in got:
        Webhook(ep["secret"]).verify(r.body, r.headers)
    d = only_delivery(api, ep["id"], "succeeded")
    assert d["attempts"] == 3 and d["event_id"] == got[0].webhook_id
    log = detail(api, d["id"])["attempt_log"]
    assert [a["status_code"] for a in log] == [500, 500, 200]
    assert log[0]["response_excerpt"] == "answer 500" and log[0]["error"] == "HTTP 500"


def test_retry_after_is_honoured(server: LiveServer, api: httpx.Client) -> None:
    # The test schedule retries after 0.3 s; Retry-After asks for 2 s.
    with Receiver(answers((503, {"Retry-After": "2"}), (429, {"Retry-After": "1"}))) as rx:
        ep = add_endpoint(api, rx.url)
        api.post(f"{EP}/{ep['id']}/test")
        first, second, third = rx.wait_count(3)
    assert second.at - first.at >= 1.9
    assert third.at - second.at >= 0.9
    assert only_delivery(api, ep["id"], "succeeded")["attempts"] == 3


def test_redirects_are_not_followed(server: LiveServer, api: httpx.Client) -> None:
    with Receiver(answers((302, {"Location": "/elsewhere"}), (307, {"Location": "/elsewhere"}))) as rx:
        ep = add_endpoint(api, rx.url)
        api.post(f"{EP}/{ep['id']}/test")
        got = rx.wait_count(3)
    assert [r.path for r in got] == ["/hook"] * 3  # never /elsewhere
    d = only_delivery(api, ep["id"], "succeeded")
    first = detail(api, d["id"])["attempt_log"][0]
    assert first["status_code"] == 302 and "not followed" in first["error"]


def test_410_gone_disables_the_endpoint_until_re_enabled(server: LiveServer, api: httpx.Client) -> None:
    with Receiver(answers((410, {}))) as rx:
        ep = add_endpoint(api, rx.url)
        api.post("/api/v1/users", json={"name": "one"})
        rx.wait_count(1)
        disabled = eventually(lambda: (e := api.get(f"{EP}/{ep['id']}").json())["enabled"] is False and e)
        assert "410" in disabled["disabled_reason"]
        assert only_delivery(api, ep["id"], "failed")["attempts"] == 1

        api.post("/api/v1/users", json={"name": "while disabled"})
        assert len(deliveries(api, ep["id"])) == 1  # nothing queued for a disabled endpoint
        assert api.post(f"{EP}/{ep['id']}/test").status_code == 409

        assert api.patch(f"{EP}/{ep['id']}", json={"enabled": True}).json()["enabled"] is True
        api.post("/api/v1/users", json={"name": "after"})
        got = rx.wait_count(2)
    assert got[1].json["data"]["user"]["name"] == "after"
    assert len(rx.received()) == 2


def test_an_endpoint_failing_for_the_disable_window_is_disabled(server_factory: Any) -> None:
    srv = server_factory(env={"BACKCHANNEL_WEBHOOK_DISABLE_AFTER_SECONDS": "1.5",
                              "BACKCHANNEL_WEBHOOK_RETRY_SCHEDULE": "[0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4]"})
    tenant: Tenant = srv.new_tenant()
    with Receiver(lambda req: (500, {}, b"down")) as rx, srv.client(tenant) as api:
        ep = add_endpoint(api, rx.url)
        api.post("/api/v1/users", json={"name": "Ada"})
        disabled = eventually(lambda: (e := api.get(f"{EP}/{ep['id']}").json())["enabled"] is False and e)
        assert "failed for" in disabled["disabled_reason"]
        attempts = len(rx.received())
        assert attempts >= 2  # it kept trying until the window closed
        assert only_delivery(api, ep["id"], "failed")["attempts"] == attempts


def test_a_delivery_can_be_retried_by_hand(server_factory: Any) -> None:
    srv = server_factory(env={"BACKCHANNEL_WEBHOOK_RETRY_SCHEDULE": "[]"})  # no automatic retries
    tenant: Tenant = srv.new_tenant()
    with Receiver(answers((500, {}))) as rx, srv.client(tenant) as api:
        ep = add_endpoint(api, rx.url)
        api.post("/api/v1/users", json={"name": "Ada"})
        failed = only_delivery(api, ep["id"], "failed")
        assert "gave up after 1 attempts" in failed["last_error"]
        r = api.post(f"/api/v1/webhook-deliveries/{failed['id']}/retry")
        assert r.status_code == 202 and r.json()["status"] == "pending"
        first, second = rx.wait_count(2)
        assert first.webhook_id == second.webhook_id
        done = only_delivery(api, ep["id"], "succeeded")
        assert done["attempts"] == 2
        # A succeeded delivery can be sent again too (e.g. the receiver lost it).
        assert api.post(f"/api/v1/webhook-deliveries/{done['id']}/retry").status_code == 202
        assert rx.wait_count(3)[2].webhook_id == first.webhook_id
        assert api.post("/api/v1/webhook-deliveries/dlv_nope/retry").status_code == 404


def test_a_slow_endpoint_does_not_delay_a_fast_one(server: LiveServer, api: httpx.Client) -> None:
    release = threading.Event()

    def stuck(req: Received) -> tuple[int, dict[str, str], bytes]:
        release.wait(30)
        return 200, {}, b"finally"

    with Receiver(stuck) as slow, Receiver() as fast:
        add_endpoint(api, slow.url)
        add_endpoint(api, fast.url)
        for i in range(5):
            api.post("/api/v1/users", json={"name": f"u{i}"})
        got = fast.wait_count(5)
        assert sorted(r.json["data"]["user"]["name"] for r in got) == [f"u{i}" for i in range(5)]
        # all five are in flight to the stuck one at once (up to WEBHOOK_ENDPOINT_CONCURRENCY)
        slow.wait_count(5, timeout=5)
        assert slow.succeeded() == []
        release.set()
        eventually(lambda: len(slow.succeeded()) == 5)
    assert sorted(r.json["data"]["user"]["name"] for r in slow.received()) == [f"u{i}" for i in range(5)]
    assert len(slow.received()) == 5


def test_kill_9_loses_nothing(server: LiveServer, tenant: Tenant) -> None:
    """Deliveries in flight, leased and pending when the process dies are all sent after restart."""
    release = threading.Event()
    healthy = threading.Event()

    def respond(req: Received) -> tuple[int, dict[str, str], bytes]:
        if not healthy.is_set():
            release.wait(30)  # hang: the delivery is in flight when the server dies
            return 503, {}, b"too late"
        return 200, {}, b"ok"

    with Receiver(respond) as rx:
        with server.client(tenant) as api:
            add_endpoint(api, rx.url)
            users = [api.post("/api/v1/users", json={"name": f"u{i}"}).json()["id"] for i in range(15)]
            rx.wait_count(1)  # the first is in flight, 9 more leased behind it, 5 pending
        server.kill()
        healthy.set()
        release.set()
        server.start()
        with server.client(tenant) as api:
            users.append(api.post("/api/v1/users", json={"name": "after restart"}).json()["id"])
            expected = set(users)
            delivered = eventually(
                lambda: (ids := {r.json["data"]["user"]["id"] for r in rx.succeeded()}) >= expected and ids,
                timeout=30,
            )
    assert len(delivered) == 16
    by_user: dict[str, set[str]] = {}
    for r in rx.received():
        by_user.setdefault(r.json["data"]["user"]["id"], set()).add(r.webhook_id)
    assert all(len(ids) == 1 for ids in by_user.values())  # a resend keeps its webhook-id


def test_old_delivery_logs_are_pruned(server_factory: Any) -> None:
    srv = server_factory(env={"BACKCHANNEL_WEBHOOK_LOG_RETENTION_DAYS": "0.00003"})  # ~2.6 s
    tenant: Tenant = srv.new_tenant()
    with Receiver() as rx, srv.client(tenant) as api:
        ep = add_endpoint(api, rx.url)
        api.post(f"{EP}/{ep['id']}/test")
        d = only_delivery(api, ep["id"], "succeeded")
        assert len(detail(api, d["id"])["attempt_log"]) == 1
        eventually(lambda: deliveries(api, ep["id"]) == [], timeout=20)
        assert api.get(f"/api/v1/webhook-deliveries/{d['id']}").status_code == 404


@pytest.mark.postgres
def test_two_instances_share_the_outbox_on_postgres(server_factory: Any, postgres_database: str) -> None:
    """Both processes dispatch from one PostgreSQL database (FOR UPDATE SKIP LOCKED): every
    event goes out, and none twice."""
    upgrade(Settings(database_url=postgres_database, env="test"))
    first = server_factory(database_url=postgres_database)
    second = server_factory(database_url=postgres_database)
    tenant: Tenant = first.new_tenant()
    with Receiver() as rx, first.client(tenant) as a, second.client(tenant) as b:
        add_endpoint(a, rx.url)
        add_endpoint(b, rx.url + "/second")
        users = [(a if i % 2 else b).post("/api/v1/users", json={"name": f"u{i}"}).json()["id"] for i in range(20)]
        got = rx.wait_count(40)
        assert sorted(r.json["data"]["user"]["id"] for r in got) == sorted(users * 2)
        assert len({(r.path, r.webhook_id) for r in got}) == 40  # no delivery sent twice
        assert {r.path for r in got} == {"/hook", "/hook/second"}
