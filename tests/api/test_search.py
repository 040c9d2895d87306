"""Full-text search over conversations (SPEC §11): ``GET /conversations?q=`` finds message text
and the customer's name and email, in the database's own index, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.settings import Settings
from app.store import search
from app.store.dialect import dialect_of
from app.store.migrate import upgrade
from app.store.runner import Tx
from tests.factories import assert_error, make_conversation, make_user, post_text


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, app_server_factory: Any) -> Any:
    if request.param == "sqlite":
        return app_server_factory()
    url = request.getfixturevalue("postgres_database")
    upgrade(Settings(env="test", database_url=url))
    return app_server_factory(database_url=url)


@pytest.fixture
def api(server: Any) -> Any:
    with server.client(server.new_tenant()) as client:
        yield client


def found(api: httpx.Client, q: str, **params: Any) -> set[str]:
    r = api.get("/api/v1/conversations", params={"q": q, **params})
    assert r.status_code == 200, r.text
    return {c["id"] for c in r.json()["data"]}


def test_search_finds_message_text_and_the_customers_name_and_email(server: Any, api: httpx.Client) -> None:
    ada = make_user(api, name="Ada Lovelace", email="ada@analytical.example")
    bob = make_user(api, name="Bob Builder")
    refund = make_conversation(api, ada["id"])
    post_text(api, refund["id"], "Hi, I need a REFUND for order 4711 please", actor={"type": "user"})
    post_text(api, refund["id"], "Sure — the refund is on its way.")
    card = make_conversation(api, bob["id"])
    post_text(api, card["id"], "My café card was blocked at the crème brûlée stand", actor={"type": "user"})
    other = make_conversation(api, ada["id"])  # Ada's second conversation: found by her name
    post_text(api, other["id"], "Where is my parcel?", actor={"type": "user"})

    assert found(api, "refund") == {refund["id"]}
    assert found(api, "refun") == {refund["id"]}  # a prefix, as one types
    assert found(api, "order 4711") == {refund["id"]}  # every word
    assert found(api, "order 4712") == set()
    assert found(api, "cafe") == {card["id"]}  # accents do not matter
    assert found(api, "CRÈME brulee") == {card["id"]}
    assert found(api, "lovelace") == {refund["id"], other["id"]}
    assert found(api, "analytical.example") == {refund["id"], other["id"]}  # the email
    assert found(api, "ada@analytical") == {refund["id"], other["id"]}
    assert found(api, "parcel", status="open") == {other["id"]}
    assert found(api, "parcel", status="resolved") == set()
    assert found(api, "zebra") == set()
    assert_error(api.get("/api/v1/conversations", params={"q": "!!!"}), 422)
    # A private note is the team's, and searchable by the team.
    post_text(api, card["id"], "chargeback opened", private=True)
    assert found(api, "chargeback") == {card["id"]}
    # A renamed customer is found by the new name, no longer by the old.
    assert api.patch(f"/api/v1/users/{bob['id']}", json={"name": "Robert Builder"}).status_code == 200
    assert found(api, "robert") == {card["id"]}
    assert found(api, "bob") == set()
    # Paging through results keeps the filter.
    first = api.get("/api/v1/conversations", params={"q": "ada", "limit": 1}).json()
    rest = api.get("/api/v1/conversations", params={"q": "ada", "limit": 1, "cursor": first["next_cursor"]}).json()
    assert {c["id"] for c in first["data"] + rest["data"]} == {refund["id"], other["id"]}
    assert rest["next_cursor"] is None

    # Another workspace finds nothing of this one's, and the other way round.
    with server.client(server.new_tenant("Other")) as other_api:
        theirs = make_conversation(other_api)
        post_text(other_api, theirs["id"], "refund for me too", actor={"type": "user"})
        assert found(other_api, "refund") == {theirs["id"]}
        assert found(other_api, "lovelace") == set()
    assert found(api, "refund") == {refund["id"]}


def test_deleting_a_customer_deletes_their_entries(server: Any, api: httpx.Client) -> None:
    """The delete path erasure uses (app/store/search.py): entries go with their rows, and on
    SQLite ``purge`` leaves no word of them in the FTS index's storage."""
    eve = make_user(api, name="Eve Zanzibar")
    conv = make_conversation(api, eve["id"])
    post_text(api, conv["id"], "xylophonequartz secret words", actor={"type": "user"})
    assert found(api, "xylophonequartz") == {conv["id"]}

    def erase(tx: Tx) -> None:
        h = tx.db
        h.run("DELETE FROM message WHERE conversation_id = ?", (conv["id"],))
        h.run("DELETE FROM conversation WHERE id = ?", (conv["id"],))
        h.run('DELETE FROM "user" WHERE id = ?', (eve["id"],))
        search.purge(h)

    server.in_tx(erase)
    left = server.in_tx(lambda tx: tx.db.run("SELECT COUNT(*) FROM search_entry WHERE user_id = ?", (eve["id"],)))
    assert left == [(0,)]
    assert found(api, "xylophonequartz") == set() and found(api, "zanzibar") == set()
    if dialect_of(server.settings()).sqlite:  # FTS5's own storage holds no word of it any more
        blocks = server.in_tx(lambda tx: tx.db.run(f"SELECT block FROM {search.FTS_TABLE}_data"))
        assert blocks and not any(b"xylophonequartz" in bytes(b or b"") for (b,) in blocks)


def test_the_search_text_is_the_same_words_for_both_engines() -> None:
    assert search.search_text("Crème BRÛLÉE, ada@x.example — 4111-1111!") == "creme brulee ada x example 4111 1111"
    # Plain ASCII takes a shorter way to the same words.
    assert search.search_text("Hello, World_42! It's\tDONE") == "hello world 42 it s done"
    assert search.terms("  refun* OR (x) ") == ["refun", "or", "x"]
    assert search.message_text([{"text": {"content": "Hello"}}, {"file": {"name": "Invoice-7.pdf"}}]) == (
        "hello invoice 7 pdf"
    )


def test_erasing_a_user_through_the_api_leaves_no_word_in_the_index(server: Any, api: httpx.Client) -> None:
    zoe = make_user(api, name="Zoe Quokkasson", email="zoe@quokka.example")
    conv = make_conversation(api, zoe["id"])
    post_text(api, conv["id"], "marsupialmarmalade is my password hint", actor={"type": "user"})
    keep = make_conversation(api)
    post_text(api, keep["id"], "marsupial questions", actor={"type": "user"})
    assert found(api, "marsupialmarmalade") == {conv["id"]} and found(api, "quokkasson") == {conv["id"]}
    assert api.delete(f"/api/v1/users/{zoe['id']}").status_code == 204
    assert found(api, "marsupialmarmalade") == set() and found(api, "quokka") == set()
    assert found(api, "marsupial") == {keep["id"]}  # everyone else is still found
    if dialect_of(server.settings()).sqlite:
        blocks = server.in_tx(lambda tx: tx.db.run(f"SELECT block FROM {search.FTS_TABLE}_data"))
        assert not any(w in bytes(b or b"") for (b,) in blocks for w in (b"marsupialmarmalade", b"quokkasson"))
