"""``/api/v1/api-tokens``: manage API tokens (needs the ``admin`` scope)."""

from __future__ import annotations

from typing import Any

from app import tokens
from app.api.framework import Call, Endpoint
from app.api.pagination import ListQuery
from app.api.schemas import TokenCreated, TokenIn, TokenOut
from app.shapes import token_json


def create(call: Call) -> dict[str, Any]:
    body: TokenIn = call.body
    token, secret = tokens.create_token(call.write, call.workspace_id, body.name, list(body.scopes))
    return {**token_json(token), "token": secret}


def list_(call: Call) -> dict[str, Any]:
    q: ListQuery = call.query
    rows = tokens.list_tokens(call.session, call.workspace_id)[: q.limit]
    return {"data": [token_json(t) for t in rows], "next_cursor": None}


def revoke(call: Call) -> None:
    tokens.revoke_token(call.write, call.workspace_id, call.params["token_id"])


ENDPOINTS = [
    Endpoint(
        "GET",
        "/api-tokens",
        list_,
        "List API tokens (never their secrets)",
        "API tokens",
        query=ListQuery,
        response=("page", TokenOut),
        scope="admin",
        errors=(403,),
    ),
    Endpoint(
        "POST",
        "/api-tokens",
        create,
        "Generate an API token (the secret is shown once)",
        "API tokens",
        body=TokenIn,
        response=TokenCreated,
        status=201,
        scope="admin",
        errors=(403, 422),
        audit=("api_token.created", "api_token"),
    ),
    Endpoint(
        "DELETE",
        "/api-tokens/{token_id}",
        revoke,
        "Revoke an API token",
        "API tokens",
        response=None,
        status=204,
        scope="admin",
        errors=(403, 404),
        audit=("api_token.revoked", "api_token"),
    ),
]
