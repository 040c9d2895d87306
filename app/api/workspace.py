"""``/api/v1/workspace``: the token's workspace: its name and how long it keeps data."""

from __future__ import annotations

from typing import Any

from app import workspaces
from app.api.framework import Call, Endpoint, Result
from app.api.schemas import WorkspaceOut, WorkspacePatch
from app.state import AppState


def read(call: Call) -> dict[str, Any]:
    return workspaces.workspace_json(workspaces.get_workspace(call.session, call.workspace_id))


def patch(call: Call) -> Result:
    workspace, changed = workspaces.update_workspace(call.write, call.workspace_id, call.body)

    async def wake_retention(state: AppState) -> None:
        state.data_job.wake()  # a shorter retention takes effect now, not at the next round

    return Result(
        200, workspaces.workspace_json(workspace), after=wake_retention if "retention_days" in changed else None
    )


ENDPOINTS = [
    Endpoint("GET", "/workspace", read, "Get the workspace (name, retention)", "Workspace", response=WorkspaceOut),
    Endpoint(
        "PATCH",
        "/workspace",
        patch,
        "Rename the workspace or set retention_days",
        "Workspace",
        body=WorkspacePatch,
        response=WorkspaceOut,
        scope="admin",
        errors=(403, 422),
        audit=("workspace.updated", "workspace"),
        description="`retention_days`: resolved conversations unchanged for longer are erased by a background job "
        "(as `DELETE /users/{id}` erases), in small batches; null keeps them for ever. See docs/data.md.",
    ),
]
