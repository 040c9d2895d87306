"""``/api/v1/widget-settings``: how the widget looks and who may embed it."""

from __future__ import annotations

from typing import Any

from app import workspaces
from app.api.framework import Call, Endpoint
from app.api.schemas import WidgetSettingsOut, WidgetSettingsPatch


def read(call: Call) -> dict[str, Any]:
    return workspaces.widget_settings_json(workspaces.get_workspace(call.session, call.workspace_id))


def patch(call: Call) -> dict[str, Any]:
    workspace = workspaces.update_widget_settings(call.write, call.workspace_id, call.body)
    return workspaces.widget_settings_json(workspace)


ENDPOINTS = [
    Endpoint("GET", "/widget-settings", read, "Get widget settings", "Widget", response=WidgetSettingsOut),
    Endpoint(
        "PATCH",
        "/widget-settings",
        patch,
        "Change widget settings",
        "Widget",
        body=WidgetSettingsPatch,
        response=WidgetSettingsOut,
        scope="admin",
        errors=(403, 422),
        audit=("widget_settings.updated", "workspace"),
    ),
]
