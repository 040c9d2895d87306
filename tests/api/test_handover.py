"""Who has control of a conversation (SPEC §11): ``handled_by``, ``POST …/handover``, routing to
an available human or a waiting queue, the bot refused while a human has it, control back to the
bot on resolve, and the hand-over when the bot cannot be reached. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from app.ids import utcnow
from app.settings import Settings
from app.store.migrate import upgrade
from app.store.runner import Tx
from tests.factories import assert_error, make_conversation, post_text
from tests.receivers import Receiver, eventually


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, app_server_factory: Any) -> Any:
    if request.param == "sqlite":
        return app_server_factory()
    url = request.getfixturevalue("postgres_database")
    upgrade(Settings(env="test", database_url=url))
    return app_server_factory(database_url=url)


@pytest.fixture
def api(server: Any) -> Iterator[httpx.Client]:
    with server.client(server.new_tenant()) as client:
        yield client


def human(api: httpx.Client, name: str) -> dict[str, Any]:
    r = api.post("/api/v1/agents", json={"name": name, "kind": "human"})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def handover(api: httpx.Client, conversation_id: str, **body: Any) -> httpx.Response:
    return api.post(f"/api/v1/conversations/{conversation_id}/handover", json=body)


def as_agent(api: httpx.Client, conversation_id: str, agent_id: str, text: str, **fields: Any) -> httpx.Response:
    return post_text(api, conversation_id, text, actor={"type": "agent", "id": agent_id}, **fields)


def handovers(rx: Receiver) -> list[tuple[str, str, str, str]]:
    return [
        (r.json["data"]["conversation"]["id"], r.json["data"]["from"], r.json["data"]["to"], r.json["data"]["reason"])
        for r in rx.received()
        if r.json["type"] == "conversation.handover"
    ]


def test_handover_to_a_human_and_back_fires_events_and_keeps_the_bot_quiet(api: httpx.Client) -> None:
    with Receiver() as rx:
        r = api.post("/api/v1/webhook-endpoints", json={"url": rx.url, "events": ["conversation.handover"]})
        assert r.status_code == 201, r.text
        ann = human(api, "Ann")
        conv = make_conversation(api)
        assert (conv["handled_by"], conv["assignee_kind"], conv["assignee_id"]) == ("bot", None, None)
        assert post_text(api, conv["id"], "Hello from the bot").status_code == 201

        r = handover(api, conv["id"], to="human", reason="customer_asked")
        assert r.status_code == 200, r.text
        assert (r.json()["handled_by"], r.json()["assignee_id"], r.json()["assignee_kind"]) == ("human", ann["id"], "human")

        # The bot cannot talk over the agent; a private note it may add.
        refused = post_text(api, conv["id"], "Me again!")
        assert_error(refused, 409, "handled_by_human")
        note = post_text(api, conv["id"], "Customer verified their card.", private=True)
        assert note.status_code == 201 and note.json()["private"] is True

        r = handover(api, conv["id"], to="bot")
        assert r.status_code == 200
        assert (r.json()["handled_by"], r.json()["assignee_id"], r.json()["assignee_kind"]) == ("bot", None, None)
        assert post_text(api, conv["id"], "Back to me").status_code == 201
        rx.wait_for(lambda got: len([g for g in got if g.json["type"] == "conversation.handover"]) == 2)
        assert handovers(rx) == [(conv["id"], "bot", "human", "customer_asked"), (conv["id"], "human", "bot", "api")]
        last = rx.received()[-1].json["data"]["conversation"]
        assert last["handled_by"] == "bot" and last["id"] == conv["id"]


def test_routing_picks_the_available_human_with_the_fewest_open_conversations(server: Any, api: httpx.Client) -> None:
    ann, bob, cleo = human(api, "Ann"), human(api, "Bob"), human(api, "Cleo")
    for _ in range(2):
        c = make_conversation(api)
        assert handover(api, c["id"], to="human", agent_id=ann["id"]).json()["assignee_id"] == ann["id"]
    c = make_conversation(api)
    handover(api, c["id"], to="human", agent_id=bob["id"])
    resolved = make_conversation(api)  # resolved conversations do not count
    handover(api, resolved["id"], to="human", agent_id=cleo["id"])
    handover(api, resolved["id"], to="human", agent_id=cleo["id"])  # again: no change
    for _ in range(3):
        extra = make_conversation(api)
        handover(api, extra["id"], to="human", agent_id=cleo["id"])
        api.patch(f"/api/v1/conversations/{extra['id']}", json={"status": "resolved"})
    # Cleo has 1 open (the first), Bob 1, Ann 2: Bob and Cleo tie, the longer-standing wins.
    r = handover(api, make_conversation(api)["id"], to="human")
    assert r.json()["assignee_id"] == bob["id"], r.json()
    # Bob goes away: Cleo now.
    r = api.get(f"/api/v1/agents/{bob['id']}")
    assert r.json()["status"] == "online"
    server.in_tx(lambda tx: tx.db.run("UPDATE agent SET status = ? WHERE id = ?", ("away", bob["id"])))
    assert api.get(f"/api/v1/agents/{bob['id']}").json()["status"] == "away"
    r = handover(api, make_conversation(api)["id"], to="human")
    assert r.json()["assignee_id"] == cleo["id"]
    # An agent whose consoles have all been closed for a while is away without anyone saying so.
    stale = utcnow() - timedelta(minutes=30)

    def close_consoles(tx: Tx) -> None:
        tx.db.run("UPDATE agent SET last_seen_at = ? WHERE id IN (?, ?)", (tx.dialect.ts(stale), ann["id"], cleo["id"]))

    server.in_tx(close_consoles)
    assert api.get(f"/api/v1/agents/{cleo['id']}").json()["status"] == "away"
    # Nobody is available: the conversation waits for a human, unassigned.
    waiting = handover(api, make_conversation(api)["id"], to="human")
    assert (waiting.json()["handled_by"], waiting.json()["assignee_id"]) == ("human", None)
    listed = api.get("/api/v1/conversations", params={"handled_by": "human", "status": "open"}).json()["data"]
    assert waiting.json()["id"] in {c["id"] for c in listed}
    assert all(c["handled_by"] == "human" for c in listed)
    bots = api.get("/api/v1/conversations", params={"handled_by": "bot"}).json()["data"]
    assert bots and all(c["handled_by"] == "bot" for c in bots)


def test_a_human_reply_takes_control_and_resolving_gives_it_back(api: httpx.Client) -> None:
    with Receiver() as rx:
        api.post("/api/v1/webhook-endpoints", json={"url": rx.url, "events": ["conversation.handover"]})
        ann = human(api, "Ann")
        conv = make_conversation(api)
        assert post_text(api, conv["id"], "hi", actor={"type": "user"}).status_code == 201
        # A private note by the agent takes nothing over.
        assert as_agent(api, conv["id"], ann["id"], "checking", private=True).status_code == 201
        assert api.get(f"/api/v1/conversations/{conv['id']}").json()["handled_by"] == "bot"
        assert as_agent(api, conv["id"], ann["id"], "Ann here, how can I help?").status_code == 201
        got = api.get(f"/api/v1/conversations/{conv['id']}").json()
        assert (got["handled_by"], got["assignee_id"], got["assignee_kind"]) == ("human", ann["id"], "human")
        assert_error(post_text(api, conv["id"], "bot"), 409, "handled_by_human")

        r = api.patch(f"/api/v1/conversations/{conv['id']}", json={"status": "resolved"})
        # Control goes back to the bot; the assignee stays as the record of who handled it.
        assert (r.json()["handled_by"], r.json()["status"], r.json()["assignee_id"]) == ("bot", "resolved", ann["id"])
        assert post_text(api, conv["id"], "Anything else?").status_code == 201
        # The customer writes again: reopened, with the bot in control and nobody assigned.
        post_text(api, conv["id"], "yes, one more thing", actor={"type": "user"})
        got = api.get(f"/api/v1/conversations/{conv['id']}").json()
        assert (got["status"], got["handled_by"], got["assignee_id"]) == ("open", "bot", None)
        rx.wait_for(lambda got: len(handovers(rx)) == 2)
        assert [h[1:] for h in handovers(rx)] == [("bot", "human", "agent_replied"), ("human", "bot", "resolved")]


def test_assigning_a_human_gives_them_control_and_a_bot_takes_it_back(api: httpx.Client) -> None:
    ann = human(api, "Ann")
    bot = api.post("/api/v1/agents", json={"name": "Freddy", "kind": "bot"}).json()
    conv = make_conversation(api)
    r = api.patch(f"/api/v1/conversations/{conv['id']}", json={"assignee_id": ann["id"]})
    assert (r.json()["handled_by"], r.json()["assignee_kind"]) == ("human", "human")
    r = api.patch(f"/api/v1/conversations/{conv['id']}", json={"assignee_id": bot["id"]})
    assert (r.json()["handled_by"], r.json()["assignee_kind"], r.json()["assignee_id"]) == ("bot", "bot", bot["id"])
    # Handing to humans without naming one: the bot lets go, Ann is picked.
    r = handover(api, conv["id"], to="human")
    assert (r.json()["handled_by"], r.json()["assignee_id"]) == ("human", ann["id"])


def test_handover_refuses_what_cannot_work(server: Any, api: httpx.Client) -> None:
    conv = make_conversation(api)
    bot = api.post("/api/v1/agents", json={"name": "Freddy", "kind": "bot"}).json()
    assert_error(handover(api, conv["id"], to="human", agent_id=bot["id"]), 422)
    assert_error(handover(api, conv["id"], to="human", agent_id="agt_nope"), 422)
    assert_error(handover(api, conv["id"], to="bot", agent_id=bot["id"]), 422)
    assert_error(handover(api, conv["id"], to="robot"), 422)
    assert_error(handover(api, conv["id"], to="human", reason=""), 422)
    assert_error(handover(api, "cnv_missing", to="human"), 404)
    with server.client(server.new_tenant("Other")) as other:
        theirs = human(other, "Zed")
        assert_error(handover(api, conv["id"], to="human", agent_id=theirs["id"]), 422)
        assert_error(handover(other, conv["id"], to="human"), 404)
    # A user cannot write a private note.
    assert_error(post_text(api, conv["id"], "secret", actor={"type": "user"}, private=True), 422)
    assert api.get(f"/api/v1/conversations/{conv['id']}").json()["handled_by"] == "bot"


def test_a_customer_message_no_bot_can_take_goes_to_a_human(api: httpx.Client) -> None:
    """Every enabled endpoint subscribed to message.created fails its first attempt: the
    conversation is handed to a human with reason bot_unavailable."""
    ann = human(api, "Ann")
    with Receiver(lambda req: (503, {}, b"down")) as dead, Receiver() as audit:
        api.post("/api/v1/webhook-endpoints", json={"url": dead.url, "events": ["message.created"]})
        api.post("/api/v1/webhook-endpoints", json={"url": audit.url, "events": ["conversation.handover"]})
        conv = make_conversation(api)
        post_text(api, conv["id"], "Is anyone there?", actor={"type": "user"})
        got = eventually(
            lambda: (c := api.get(f"/api/v1/conversations/{conv['id']}").json())["handled_by"] == "human" and c
        )
        assert got["assignee_id"] == ann["id"]
        audit.wait_for(lambda got: len(handovers(audit)) == 1)
        assert handovers(audit)[0][1:] == ("bot", "human", "bot_unavailable")
        # The bot's own message is no customer's: its failure hands nothing over.
        other = make_conversation(api)
        post_text(api, other["id"], "A bot's greeting")
        dead.wait_for(lambda got: sum(r.json["data"]["conversation"]["id"] == other["id"] for r in got) >= 2)
        assert api.get(f"/api/v1/conversations/{other['id']}").json()["handled_by"] == "bot"


def test_one_working_bot_endpoint_is_enough(api: httpx.Client) -> None:
    human(api, "Ann")
    with Receiver(lambda req: (500, {}, b"")) as dead, Receiver() as alive:
        api.post("/api/v1/webhook-endpoints", json={"url": dead.url, "events": ["message.created"]})
        api.post("/api/v1/webhook-endpoints", json={"url": alive.url, "events": ["*"]})
        conv = make_conversation(api)
        post_text(api, conv["id"], "Hello?", actor={"type": "user"})
        alive.wait_for(lambda got: any(r.json["type"] == "message.created" for r in got))
        dead.wait_for(lambda got: len(got) >= 2)  # failed, and retried: the first attempt is long recorded
        assert api.get(f"/api/v1/conversations/{conv['id']}").json()["handled_by"] == "bot"


def test_without_a_human_agent_the_bot_keeps_it(api: httpx.Client) -> None:
    with Receiver(lambda req: (500, {}, b"")) as dead:
        api.post("/api/v1/webhook-endpoints", json={"url": dead.url, "events": ["message.created"]})
        conv = make_conversation(api)
        post_text(api, conv["id"], "Hello?", actor={"type": "user"})
        dead.wait_for(lambda got: len(got) >= 2)
        assert api.get(f"/api/v1/conversations/{conv['id']}").json()["handled_by"] == "bot"
