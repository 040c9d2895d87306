"""``backchannel`` command line: serve, migrate, workspaces, tokens, admins (all with ``--json``)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlmodel import Session, select

from app import errors
from app.actions import Tx
from app.db import make_engine, session_scope
from app.settings import Settings

T = TypeVar("T")


def _in_tx(settings: Settings, fn: Callable[..., T], *args: Any) -> T:
    engine = make_engine(settings)
    try:
        with session_scope(engine) as session:
            return fn(Tx(session), *args)
    finally:
        engine.dispose()


def _read(settings: Settings, fn: Callable[..., T], *args: Any) -> T:
    engine = make_engine(settings, for_writes=False)
    try:
        with Session(engine) as session:
            return fn(session, *args)
    finally:
        engine.dispose()


def _emit(args: argparse.Namespace, data: Any, human: str) -> None:
    print(json.dumps(data, indent=None) if args.json else human)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from app.logs import configure_logging, uvicorn_options
    from app.migrate import upgrade
    from app.multiprocess import metrics_dir

    configure_logging(settings)

    if args.workers > 1 and settings.broker_url.startswith("memory://"):
        raise ValueError(
            "--workers > 1 needs a shared broker: set BACKCHANNEL_BROKER_URL=redis://… "
            "(memory:// reaches only one process, so sockets would miss other workers' events)"
        )
    upgrade(settings)
    if args.demo:
        from app.demo import run_demo

        return run_demo(settings, host=args.host, port=args.port, public_url=settings.public_url)
    with metrics_dir(args.workers):
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers if args.workers > 1 else None,
            **uvicorn_options(settings),  # logging, forwarded headers, WebSocket limits (app.logs)
        )
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from app.migrate import current_head, upgrade

    upgrade(settings)
    _emit(args, {"status": "ok", "revision": current_head()}, f"Database is at revision {current_head()}.")
    return 0


def cmd_workspaces_create(args: argparse.Namespace, settings: Settings) -> int:
    from app.workspaces import create_workspace

    ws = _in_tx(settings, create_workspace, args.name)
    data = {"id": ws.id, "name": ws.name, "widget_key": ws.widget_key}
    _emit(
        args,
        data,
        f"Workspace {ws.name!r} created.\n  id:         {ws.id}\n  widget key: {ws.widget_key}\n"
        f"Next: backchannel tokens create --workspace {ws.id} --name my-bot",
    )
    return 0


def cmd_workspaces_list(args: argparse.Namespace, settings: Settings) -> int:
    from app.models import Workspace

    rows = _read(settings, lambda s: list(s.exec(select(Workspace).order_by(Workspace.created_at))))
    data = [{"id": w.id, "name": w.name, "widget_key": w.widget_key} for w in rows]
    _emit(args, data, "\n".join(f"{w['id']}  {w['widget_key']}  {w['name']}" for w in data) or "No workspaces.")
    return 0


def _scopes(values: Sequence[str] | None) -> list[str]:
    if not values:
        return ["read", "write", "admin"]
    return [s for v in values for s in v.replace(",", " ").split() if s]


def cmd_tokens_create(args: argparse.Namespace, settings: Settings) -> int:
    from app.tokens import create_token
    from app.workspaces import get_workspace

    def create(tx: Tx) -> Any:
        get_workspace(tx.session, args.workspace)
        return create_token(tx, args.workspace, args.name, _scopes(args.scopes))

    token, secret = _in_tx(settings, create)
    data = {"id": token.id, "name": token.name, "token": secret, "scopes": token.scopes}
    _emit(
        args,
        data,
        f"Token {token.name!r} ({', '.join(token.scopes)}) created. It is shown only this once:\n\n  {secret}\n",
    )
    return 0


def cmd_tokens_list(args: argparse.Namespace, settings: Settings) -> int:
    from app.serializers import token_json
    from app.tokens import list_tokens

    rows = [token_json(t) for t in _read(settings, list_tokens, args.workspace)]
    lines = [
        f"{t['id']}  {t['prefix']}…  {','.join(t['scopes'])}  last used {t['last_used_at'] or 'never'}"
        + ("  (revoked)" if t["revoked_at"] else "")
        + f"  {t['name']}"
        for t in rows
    ]
    _emit(args, rows, "\n".join(lines) or "No tokens.")
    return 0


def cmd_tokens_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from app.serializers import token_json
    from app.tokens import revoke_token

    token = _in_tx(settings, revoke_token, args.workspace, args.token_id)
    _emit(args, token_json(token), f"Token {token.id} revoked.")
    return 0


def cmd_admins_create(args: argparse.Namespace, settings: Settings) -> int:
    from app.accounts import create_console_user
    from app.workspaces import get_workspace

    if args.password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise errors.Unprocessable("The passwords differ.")

    def create(tx: Tx) -> Any:
        get_workspace(tx.session, args.workspace)
        return create_console_user(tx, args.workspace, args.email, password, name=args.name, role=args.role)

    user = _in_tx(settings, create)
    data = {"id": user.id, "email": user.email, "role": user.role, "workspace_id": user.workspace_id}
    _emit(args, data, f"{user.role.capitalize()} {user.email} created; log in at {settings.public_url}/console")
    return 0


def build_parser() -> argparse.ArgumentParser:
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", help="machine-readable JSON output")
    parser = argparse.ArgumentParser(
        prog="backchannel", description="Backchannel: conversations, widget, webhooks, web views.", parents=[json_flag]
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the server", parents=[json_flag])
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--demo", action="store_true", help="set up the AG Bank demo workspace first")
    serve.set_defaults(fn=cmd_serve)

    sub.add_parser("migrate", help="apply database migrations", parents=[json_flag]).set_defaults(fn=cmd_migrate)

    ws = sub.add_parser("workspaces", help="manage workspaces").add_subparsers(dest="sub", required=True)
    create = ws.add_parser("create", help="create a workspace", parents=[json_flag])
    create.add_argument("name")
    create.set_defaults(fn=cmd_workspaces_create)
    ws.add_parser("list", help="list workspaces", parents=[json_flag]).set_defaults(fn=cmd_workspaces_list)

    tokens = sub.add_parser("tokens", help="manage API tokens").add_subparsers(dest="sub", required=True)
    tcreate = tokens.add_parser("create", help="create an API token (shown once)", parents=[json_flag])
    tcreate.add_argument("--workspace", required=True, metavar="ID")
    tcreate.add_argument("--name", required=True)
    tcreate.add_argument("--scopes", nargs="+", metavar="SCOPE", help="read, write, admin (default: all three)")
    tcreate.set_defaults(fn=cmd_tokens_create)
    tlist = tokens.add_parser("list", help="list a workspace's tokens", parents=[json_flag])
    tlist.add_argument("--workspace", required=True, metavar="ID")
    tlist.set_defaults(fn=cmd_tokens_list)
    trevoke = tokens.add_parser("revoke", help="revoke a token", parents=[json_flag])
    trevoke.add_argument("token_id", metavar="TOKEN_ID")
    trevoke.add_argument("--workspace", required=True, metavar="ID")
    trevoke.set_defaults(fn=cmd_tokens_revoke)

    admins = sub.add_parser("admins", help="manage console users").add_subparsers(dest="sub", required=True)
    acreate = admins.add_parser(
        "create", help="create a console admin (password from stdin or prompt)", parents=[json_flag]
    )
    acreate.add_argument("--workspace", required=True, metavar="ID")
    acreate.add_argument("--email", required=True)
    acreate.add_argument("--name", default=None)
    acreate.add_argument("--role", choices=["admin", "agent"], default="admin")
    acreate.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    acreate.set_defaults(fn=cmd_admins_create)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings()
        return int(args.fn(args, settings))
    except errors.ApiError as exc:
        if getattr(args, "json", False):
            print(json.dumps(exc.body()), file=sys.stderr)
        else:
            print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
