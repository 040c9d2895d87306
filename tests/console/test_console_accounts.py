"""A console account's email is unique across the server (issue 15, point 4; SPEC §8)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from app import errors
from app.accounts import create_console_user, new_console_user
from app.cli import main as cli
from app.settings import Settings
from app.store.engine import make_engine
from app.store.migrate import DuplicateConsoleEmails, upgrade
from tests.conftest import InProcessServer, Tenant
from tests.console.support import console_client, make_console_user, page_csrf


def test_another_workspace_cannot_take_an_email_and_lock_its_owner_out(
    app_server: InProcessServer, app_tenant: Tenant, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    owner = make_console_user(app_server, app_tenant, "alice@example.com")
    rival = app_server.new_tenant("Rival")
    rival_admin = console_client(app_server, make_console_user(app_server, rival, "mallory@example.com"))

    # Settings > Team in the other workspace: any case, any padding, refused with a clear error.
    csrf = page_csrf(rival_admin, "/console/settings/team")
    r = rival_admin.post("/console/settings/team", data={
        "name": "Alice", "email": "  ALICE@Example.com ", "password": "another password 123", "role": "admin",
        "csrf_token": csrf})
    assert r.status_code == 409
    assert "already has a console account on this server" in r.text

    # The CLI too (a non-zero exit and the reason, no traceback).
    monkeypatch.setenv("BACKCHANNEL_DATABASE_URL", app_server.database_url)
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("another password 123\n"))
    code = cli(["admins", "create", "--workspace", rival.workspace_id, "--email", "Alice@example.com", "--password-stdin"])
    assert code == 1
    assert "already has a console account on this server" in capsys.readouterr().err

    # And the action every path goes through, for the same workspace or any other.
    for workspace_id in (app_tenant.workspace_id, rival.workspace_id):
        with pytest.raises(errors.Conflict):
            account = new_console_user("alice@EXAMPLE.com", "x" * 12)
            app_server.in_tx(lambda tx, ws=workspace_id, a=account: create_console_user(tx, ws, a))

    # Alice still logs in, into her own workspace.
    alice = console_client(app_server, owner.upper())
    assert alice.get("/console/settings/team").status_code == 200
    assert "Rival" not in alice.get("/console/inbox").text
    with pytest.raises(AssertionError):
        console_client(app_server, owner, password="another password 123")


def _insert_console_user(conn: sa.Connection, workspace_id: str, email: str) -> str:
    user_id = f"cu_{uuid.uuid4().hex[:10]}"
    conn.execute(
        sa.text(
            "INSERT INTO console_user (id, workspace_id, email, name, role, password_hash, session_version, created_at)"
            " VALUES (:id, :ws, :email, 'x', 'admin', 'x', 0, CURRENT_TIMESTAMP)"
        ),
        {"id": user_id, "ws": workspace_id, "email": email},
    )
    return user_id


def _insert_workspace(conn: sa.Connection, name: str) -> str:
    workspace_id = f"ws_{uuid.uuid4().hex[:10]}"
    conn.execute(
        sa.text(
            "INSERT INTO workspace (id, name, widget_key, identity_secret, allowed_origins, theme_color, greeting,"
            " identity_verification, created_at) VALUES (:id, :name, :key, 'x', '[]', '#1f5eff', '', false,"
            " CURRENT_TIMESTAMP)"
        ),
        {"id": workspace_id, "name": name, "key": f"wk_{uuid.uuid4().hex[:10]}"},
    )
    return workspace_id


def check_the_migration_reports_duplicates_then_applies(database_url: str) -> None:
    settings = Settings(database_url=database_url, env="test")
    upgrade(settings, "0002")
    engine = make_engine(settings, for_writes=False)
    try:
        with engine.begin() as conn:
            a, b, c = (_insert_workspace(conn, n) for n in ("A", "B", "C"))
            first = _insert_console_user(conn, a, "ada@example.com")
            second = _insert_console_user(conn, b, " Ada@Example.COM")
            _insert_console_user(conn, c, "Grace@Example.com")

        with pytest.raises(DuplicateConsoleEmails) as refused:
            upgrade(settings)
        message = str(refused.value)
        assert "ada@example.com" in message and a in message and b in message and first in message
        assert "grace" not in message.lower() and "Nothing was changed" in message
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0002"

        with engine.begin() as conn:  # the operator resolves it
            conn.execute(sa.text("DELETE FROM console_user WHERE id = :id"), {"id": second})
        upgrade(settings, "0003")  # the migration under test (later ones have their own tests)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0003"
            emails = sorted(conn.execute(sa.text("SELECT email FROM console_user")).scalars())
        assert emails == ["ada@example.com", "grace@example.com"]  # stored lowercased now
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            _insert_console_user(conn, c, "ada@example.com")
    finally:
        engine.dispose()


def test_the_migration_reports_duplicate_emails_and_their_workspaces_sqlite(tmp_path: Path) -> None:
    check_the_migration_reports_duplicates_then_applies(f"sqlite:///{tmp_path}/upgrade.db")


@pytest.mark.postgres
def test_the_migration_reports_duplicate_emails_and_their_workspaces_postgres(postgres_database: str) -> None:
    check_the_migration_reports_duplicates_then_applies(postgres_database)


def test_backchannel_migrate_says_which_emails_clash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    settings = Settings(database_url=url, env="test")
    upgrade(settings, "0002")
    engine = make_engine(settings, for_writes=False)
    with engine.begin() as conn:
        for name in ("A", "B"):
            _insert_console_user(conn, _insert_workspace(conn, name), "boss@example.com")
    engine.dispose()
    monkeypatch.setenv("BACKCHANNEL_DATABASE_URL", url)
    assert cli(["migrate"]) != 0
    err = capsys.readouterr().err
    assert "boss@example.com" in err and "unique across the server" in err and "Traceback" not in err


def test_the_demo_finds_its_workspace_again_when_its_state_file_is_gone(tmp_path: Path) -> None:
    from app.accounts import authenticate
    from app.demo.seed import ADMIN_EMAIL, prepare
    from app.store.engine import session_scope

    settings = Settings(database_url=f"sqlite:///{tmp_path}/demo.db", env="test")
    upgrade(settings)
    state = tmp_path / "demo-state.json"
    first = prepare(settings, "http://127.0.0.1:8001", state)
    state.unlink()  # lost, the database kept: before, a second "AG Bank" with the same admin email
    second = prepare(settings, "http://127.0.0.1:8002", state)
    assert (second.workspace_id, second.endpoint_id, second.webhook_secret) == (
        first.workspace_id, first.endpoint_id, first.webhook_secret)
    engine = make_engine(settings, for_writes=False)
    try:
        with session_scope(engine) as s:
            assert s.execute(sa.text("SELECT count(*) FROM workspace")).scalar() == 1
            assert s.execute(sa.text("SELECT url FROM webhook_endpoint")).scalars().all() == [
                "http://127.0.0.1:8002/webhooks"]
            user = authenticate(s, ADMIN_EMAIL, second.admin_password)
            assert user is not None and user.workspace_id == first.workspace_id
    finally:
        engine.dispose()
