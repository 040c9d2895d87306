"""``/api/v1/agents``: bots and human agents who speak in conversations."""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select

from app import people
from app.api.framework import Call, Endpoint
from app.api.pagination import ListQuery, decode_cursor, page
from app.api.schemas import AgentIn, AgentOut, AgentPatch
from app.shapes import agent_json
from app.store.tables import Agent


def create(call: Call) -> dict[str, Any]:
    body: AgentIn = call.body
    return agent_json(people.create_agent(call.write, call.workspace_id, body.name, body.kind, body.avatar_url))


def list_(call: Call) -> dict[str, Any]:
    q: ListQuery = call.query
    query = select(Agent).where(Agent.workspace_id == call.workspace_id)
    if q.cursor:
        (last_id,) = decode_cursor(q.cursor, 1)
        query = query.where(col(Agent.id) > str(last_id))
    rows = list(call.session.exec(query.order_by(col(Agent.id)).limit(q.limit + 1)))
    return page(rows, q.limit, agent_json, lambda a: (a.id,))


def read(call: Call) -> dict[str, Any]:
    return agent_json(people.get_agent(call.session, call.workspace_id, call.params["agent_id"]))


def patch(call: Call) -> dict[str, Any]:
    body: AgentPatch = call.body
    changes = body.model_dump(include=body.model_fields_set)
    return agent_json(people.update_agent(call.write, call.workspace_id, call.params["agent_id"], changes))


ENDPOINTS = [
    Endpoint(
        "POST",
        "/agents",
        create,
        "Create a bot or human agent",
        "Agents",
        body=AgentIn,
        response=AgentOut,
        status=201,
        scope="write",
        errors=(422,),
        audit=("agent.created", "agent"),
    ),
    Endpoint(
        "GET", "/agents", list_, "List agents (oldest first)", "Agents", query=ListQuery, response=("page", AgentOut)
    ),
    Endpoint("GET", "/agents/{agent_id}", read, "Get an agent", "Agents", response=AgentOut, errors=(404,)),
    Endpoint(
        "PATCH", "/agents/{agent_id}", patch, "Rename an agent, change its avatar or its availability", "Agents",
        body=AgentPatch, response=AgentOut, scope="write", errors=(404, 422),
        description="The workspace's default bot (the one that speaks for a bot message without "
        "`actor.id`) is in `GET /agents` too: rename it and give it an avatar here. Open widgets "
        "show the new name with the next message.",
    ),
]
