"""API tokens: random, shown once, stored as a SHA-256 hash, scoped, revocable."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlmodel import Session, col, select, update

from app import errors
from app.ids import new_id, new_token, sha256_hex, utcnow
from app.store import sql as rows
from app.store.engine import get_in_workspace
from app.store.runner import Tx
from app.store.tables import ApiToken

SCOPES = ("read", "write", "admin")
TOKEN_PREFIX = "bch"
LAST_USED_RESOLUTION = 60.0  # seconds: last_used_at is exact to the minute, not a write per call


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token of one workspace, with its scopes."""

    workspace_id: str
    token_id: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if "admin" in self.scopes or scope in self.scopes:
            return
        raise errors.Forbidden(f"This token lacks the '{scope}' scope.", details={"required_scope": scope})


def check_scopes(scopes: list[str]) -> None:
    """422 for a scope that does not exist: callers run it before queueing the write."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise errors.Unprocessable(
            "Invalid field: scopes", details=[{"field": "scopes", "message": f"unknown scopes {unknown}"}]
        )


def create_token(tx: Tx, workspace_id: str, name: str, scopes: list[str]) -> tuple[ApiToken, str]:
    check_scopes(scopes)  # kept here too: every caller (CLI, tests, seed) gets the same guard
    secret = new_token(TOKEN_PREFIX)
    token = ApiToken(
        id=new_id("tok"),
        workspace_id=workspace_id,
        name=name,
        prefix=secret[:10],
        token_hash=sha256_hex(secret),
        scopes=sorted(set(scopes), key=SCOPES.index),
        created_at=utcnow(),
    )
    tx.session.add(token)
    return token, secret


def list_tokens(s: Session, workspace_id: str) -> list[ApiToken]:
    return list(s.exec(select(ApiToken).where(ApiToken.workspace_id == workspace_id).order_by(col(ApiToken.id).desc())))


def revoke_token(tx: Tx, workspace_id: str, token_id: str) -> ApiToken:
    token = get_in_workspace(tx.session, ApiToken, token_id, workspace_id, "token")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        tx.session.add(token)
    return token


class TokenAuthenticator:
    """Looks a bearer token up by hash on every call (so revocation is immediate), and
    records ``last_used_at`` at most once a minute per token per process."""

    def __init__(self) -> None:
        self._touched: dict[str, float] = {}

    @staticmethod
    def bearer_secret(header: str | None) -> str:
        """The secret an ``Authorization`` header carries; 401 without one (no store needed)."""
        secret = header[7:].strip() if header and header.lower().startswith("bearer ") else ""
        if not secret:
            raise errors.Unauthorized("Send 'Authorization: Bearer <token>'.")
        return secret

    @classmethod
    def bearer_hash(cls, header: str | None) -> str:
        """The hash of the bearer secret (what the store keeps); 401 without one."""
        return sha256_hex(cls.bearer_secret(header))

    def authenticate(self, s: Session, token_hash: str, *, record_use: bool = True) -> tuple[Principal, bool]:
        """The caller whose bearer secret hashes to ``token_hash`` (``bearer_hash``), and whether
        ``last_used_at`` is due a ``touch``. ``record_use=False`` (a request refused for its
        inputs, which writes nothing) never makes it due."""
        # Every API call runs this: one prepared statement, no ORM instance.
        token = rows.token_by_hash(rows.db(s), token_hash)
        if token is None or token[3]:
            raise errors.Unauthorized("This API token is not valid or has been revoked.", code="invalid_token")
        token_id, workspace_id, scopes, _ = token
        now = time.monotonic()
        stale = record_use and now - self._touched.get(token_id, -1e9) >= LAST_USED_RESOLUTION
        if stale:
            self._touched[token_id] = now
        return Principal(workspace_id, token_id, frozenset(scopes)), stale

    @staticmethod
    def touch(tx: Tx, token_id: str) -> None:
        tx.session.exec(update(ApiToken).where(col(ApiToken.id) == token_id).values(last_used_at=utcnow()))
