"""The Inbox's filters beside its tabs (SPEC §11): handled by, assignee and tag, with the search."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.console.support import console_client, make_console_user


def names(html: str) -> set[str]:
    return set(re.findall(r'<span class="conv-name">([^<]+)</span>', html))


def test_filters_by_handled_by_assignee_and_tag(app_server: Any, app_tenant: Any, app_api: httpx.Client) -> None:
    email = make_console_user(app_server, app_tenant, name="Grace Hopper")
    grace = next(a for a in app_api.get("/api/v1/agents").json()["data"] if a["name"] == "Grace Hopper")
    bob = app_api.post("/api/v1/agents", json={"name": "Bob", "kind": "human"}).json()
    convs = {}
    for name in ("Bot Only", "Graces", "Bobs", "Waiting Wendy"):
        user = app_api.post("/api/v1/users", json={"name": name}).json()
        convs[name] = app_api.post("/api/v1/conversations", json={"user_id": user["id"]}).json()["id"]
    app_api.post(f"/api/v1/conversations/{convs['Graces']}/handover", json={"to": "human", "agent_id": grace["id"]})
    app_api.post(f"/api/v1/conversations/{convs['Bobs']}/handover", json={"to": "human", "agent_id": bob["id"]})
    app_api.patch(f"/api/v1/agents/{grace['id']}", json={"status": "away"})
    app_api.patch(f"/api/v1/agents/{bob['id']}", json={"status": "away"})
    app_api.post(f"/api/v1/conversations/{convs['Waiting Wendy']}/handover", json={"to": "human"})
    app_api.patch(f"/api/v1/conversations/{convs['Bobs']}", json={"tags": ["vip"]})
    console = console_client(app_server, email)

    def listed(**params: str) -> set[str]:
        r = console.get("/console/inbox/list", params=params)
        assert r.status_code == 200, r.text
        return names(r.text)

    assert listed() == {"Bot Only", "Graces", "Bobs", "Waiting Wendy"}
    assert listed(handled_by="bot") == {"Bot Only"}
    assert listed(handled_by="human") == {"Graces", "Bobs", "Waiting Wendy"}
    assert listed(assignee="me") == {"Graces"}
    assert listed(assignee=bob["id"]) == {"Bobs"}
    assert listed(assignee="none", handled_by="human") == {"Waiting Wendy"}
    assert listed(tag="vip") == {"Bobs"}
    assert listed(tag="vip", handled_by="bot") == set()
    assert listed(handled_by="nonsense") == {"Bot Only", "Graces", "Bobs", "Waiting Wendy"}  # ignored
    assert listed(tag="x' OR 1=1 --") == {"Bot Only", "Graces", "Bobs", "Waiting Wendy"}  # not a tag: ignored
    assert listed(q="wendy", handled_by="human") == {"Waiting Wendy"}
    page = console.get("/console/inbox", params={"handled_by": "human", "tag": "vip"}).text
    assert names(page) == {"Bobs"} and "Clear filters" in page
    # Links keep the filters, so the list stays filtered while a conversation is open.
    assert f"/console/inbox/{convs['Bobs']}?handled_by=human&amp;tag=vip" in page
