"""``/api/v1/agents``: bots and human agents who speak in conversations."""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select

from app import actions
from app.api import Call, Endpoint
from app.models import Agent
from app.pagination import ListQuery, decode_cursor, page
from app.schemas import AgentIn, AgentOut
from app.serializers import agent_json


def create(call: Call) -> dict[str, Any]:
    body: AgentIn = call.body
    return agent_json(actions.create_agent(call.write, call.workspace_id, body.name, body.kind, body.avatar_url))


def list_(call: Call) -> dict[str, Any]:
    q: ListQuery = call.query
    query = select(Agent).where(Agent.workspace_id == call.workspace_id)
    if q.cursor:
        (last_id,) = decode_cursor(q.cursor, 1)
        query = query.where(col(Agent.id) > str(last_id))
    rows = list(call.session.exec(query.order_by(col(Agent.id)).limit(q.limit + 1)))
    return page(rows, q.limit, agent_json, lambda a: (a.id,))


def read(call: Call) -> dict[str, Any]:
    return agent_json(actions.get_agent(call.session, call.workspace_id, call.params["agent_id"]))


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
    ),
    Endpoint(
        "GET", "/agents", list_, "List agents (oldest first)", "Agents", query=ListQuery, response=("page", AgentOut)
    ),
    Endpoint("GET", "/agents/{agent_id}", read, "Get an agent", "Agents", response=AgentOut, errors=(404,)),
]
