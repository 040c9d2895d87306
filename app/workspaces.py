"""Workspaces (tenants) and their widget settings."""

from __future__ import annotations

import secrets

from sqlmodel import Session, select

from app import errors, events
from app.api.schemas import WidgetSettingsPatch, WorkspacePatch
from app.ids import new_id, utcnow
from app.people import default_bot
from app.store.runner import Tx
from app.store.tables import Workspace


def create_workspace(tx: Tx, name: str) -> Workspace:
    workspace = Workspace(
        id=new_id("wsp"),
        name=name,
        widget_key=f"wk_{secrets.token_urlsafe(18)}",
        identity_secret=f"ids_{secrets.token_urlsafe(32)}",
        created_at=utcnow(),
    )
    tx.session.add(workspace)
    tx.session.flush()
    default_bot(tx, workspace.id)
    return workspace


def get_workspace(s: Session, workspace_id: str) -> Workspace:
    workspace = s.get(Workspace, workspace_id)
    if workspace is None:
        raise errors.NotFound("No such workspace.")
    return workspace


def workspace_by_widget_key(s: Session, widget_key: str) -> Workspace | None:
    return s.exec(select(Workspace).where(Workspace.widget_key == widget_key)).first()


def widget_settings_json(w: Workspace) -> dict[str, object]:
    return {
        "widget_key": w.widget_key,
        "allowed_origins": w.allowed_origins,
        "theme_color": w.theme_color,
        "greeting": w.greeting,
        "identity_verification": w.identity_verification,
        "locale": w.locale,
        "away_message": w.away_message,
        "business_hours": w.business_hours,
        "ratings_enabled": w.ratings_enabled,
    }


# Settings where null means something (follow the browser; always open), so a PATCH may set null.
NULLABLE_SETTINGS = frozenset({"locale", "business_hours"})


def widget_public_settings(w: Workspace) -> dict[str, object]:
    """What the widget shows, before and during a session: never origins or identity settings."""
    return {
        "name": w.name,
        "theme_color": w.theme_color,
        "greeting": w.greeting,
        "locale": w.locale,
        "away_message": w.away_message,
        "business_hours": w.business_hours,
        "ratings_enabled": w.ratings_enabled,
    }


def update_widget_settings(tx: Tx, workspace_id: str, patch: WidgetSettingsPatch) -> Workspace:
    workspace = get_workspace(tx.session, workspace_id)
    for key, value in patch.model_dump(exclude_unset=True).items():
        if value is not None or key in NULLABLE_SETTINGS:
            setattr(workspace, key, value)
    tx.session.add(workspace)
    tx.publish({"type": events.WIDGET_SETTINGS, "workspace_id": workspace_id, "data": widget_settings_json(workspace)})
    return workspace


def rotate_identity_secret(tx: Tx, workspace_id: str) -> Workspace:
    workspace = get_workspace(tx.session, workspace_id)
    workspace.identity_secret = f"ids_{secrets.token_urlsafe(32)}"
    tx.session.add(workspace)
    return workspace


def workspace_json(w: Workspace) -> dict[str, object]:
    return {"id": w.id, "name": w.name, "retention_days": w.retention_days}


def update_workspace(tx: Tx, workspace_id: str, patch: WorkspacePatch) -> tuple[Workspace, dict[str, object]]:
    """Rename the workspace or set its retention; returns it and what changed (old, new)."""
    workspace = get_workspace(tx.session, workspace_id)
    changed: dict[str, object] = {}
    for key, value in patch.model_dump(exclude_unset=True).items():
        if key == "name" and value is None:
            continue  # a name cannot be removed
        if getattr(workspace, key) != value:
            changed[key] = value
            setattr(workspace, key, value)
    tx.session.add(workspace)
    return workspace, changed
