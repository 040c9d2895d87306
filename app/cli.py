"""``backchannel`` command line: serve, migrate, workspaces, tokens, admins (``--json`` before or after each)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlmodel import Session, col, select

from app import VERSION, errors
from app.data import audit
from app.logs import configure_logging
from app.serve import (
    CannotServe,
    check_serve_options,
    positive_int,
    run_server,
    with_public_url,
    workers_from_env,
)
from app.settings import Settings, settings_problem
from app.shapes import token_json
from app.store.engine import make_engine, session_scope
from app.store.runner import Tx
from app.store.tables import Workspace
from app.tokens import create_token, list_tokens, revoke_token
from app.workspaces import create_workspace, get_workspace

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
    from app.demo.seed import demo_problem, run_demo  # late: see LIGHT_MAIN in tests/test_imports.py
    from app.store.migrate import upgrade

    check_serve_options(settings, host=args.host, workers=args.workers)
    settings = with_public_url(settings, args.host, args.port)
    if args.demo and (problem := demo_problem()):
        raise CannotServe(problem)
    configure_logging(settings)
    if not args.no_migrate:
        upgrade(settings)
    if args.demo:
        return run_demo(settings, host=args.host, port=args.port, public_url=settings.public_url, workers=args.workers)
    return run_server(settings, host=args.host, port=args.port, workers=args.workers)


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from app.store.migrate import current_head, upgrade  # late: alembic (LIGHT_MAIN, tests/test_imports.py)

    upgrade(settings)
    _emit(args, {"status": "ok", "revision": current_head()}, f"Database is at revision {current_head()}.")
    return 0


def cmd_workspaces_create(args: argparse.Namespace, settings: Settings) -> int:
    def create(tx: Tx) -> Any:
        ws = create_workspace(tx, args.name)
        audit.record(tx, ws.id, audit.CLI, "workspace.created", "workspace", ws.id)
        return ws

    ws = _in_tx(settings, create)
    data = {"id": ws.id, "name": ws.name, "widget_key": ws.widget_key}
    _emit(
        args,
        data,
        f"Workspace {ws.name!r} created.\n  id:         {ws.id}\n  widget key: {ws.widget_key}\n"
        f"Next: backchannel tokens create --workspace {ws.id} --name my-bot",
    )
    return 0


def cmd_workspaces_list(args: argparse.Namespace, settings: Settings) -> int:
    rows = _read(settings, lambda s: list(s.exec(select(Workspace).order_by(col(Workspace.created_at)))))
    data = [{"id": w.id, "name": w.name, "widget_key": w.widget_key} for w in rows]
    _emit(args, data, "\n".join(f"{w['id']}  {w['widget_key']}  {w['name']}" for w in data) or "No workspaces.")
    return 0


def _scopes(values: Sequence[str] | None) -> list[str]:
    if not values:
        return ["read", "write", "admin"]
    return [s for v in values for s in v.replace(",", " ").split() if s]


def cmd_tokens_create(args: argparse.Namespace, settings: Settings) -> int:
    def create(tx: Tx) -> Any:
        get_workspace(tx.session, args.workspace)
        token, secret = create_token(tx, args.workspace, args.name, _scopes(args.scopes))
        audit.record(tx, args.workspace, audit.CLI, "api_token.created", "api_token", token.id)
        return token, secret

    token, secret = _in_tx(settings, create)
    data = {"id": token.id, "name": token.name, "token": secret, "scopes": token.scopes}
    _emit(
        args,
        data,
        f"Token {token.name!r} ({', '.join(token.scopes)}) created. It is shown only this once:\n\n  {secret}\n",
    )
    return 0


def cmd_tokens_list(args: argparse.Namespace, settings: Settings) -> int:
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
    def revoke(tx: Tx) -> Any:
        token = revoke_token(tx, args.workspace, args.token_id)
        audit.record(tx, args.workspace, audit.CLI, "api_token.revoked", "api_token", token.id)
        return token

    token = _in_tx(settings, revoke)
    _emit(args, token_json(token), f"Token {token.id} revoked.")
    return 0


def cmd_admins_create(args: argparse.Namespace, settings: Settings) -> int:
    from app.accounts import create_console_user, new_console_user  # late: argon2 (LIGHT_MAIN)

    if args.password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise errors.Unprocessable("The passwords differ.")

    account = new_console_user(args.email, password, name=args.name, role=args.role)

    def create(tx: Tx) -> Any:
        get_workspace(tx.session, args.workspace)
        user = create_console_user(tx, args.workspace, account)
        audit.record(tx, args.workspace, audit.CLI, "console_user.created", "console_user", user.id)
        return user

    user = _in_tx(settings, create)
    data = {"id": user.id, "email": user.email, "role": user.role, "workspace_id": user.workspace_id}
    _emit(args, data, f"{user.role.capitalize()} {user.email} created; log in at {settings.public_url}/console")
    return 0


def cmd_listen(args: argparse.Namespace, settings: Settings) -> int:
    from app.listen import Listener, ListenError  # late: httpx and signing (LIGHT_MAIN)
    from app.webhooks.schemas import EVENT_TYPES, decode_secret

    if not args.api_url or not args.token:
        raise ValueError("listen needs --api-url and --token (or BACKCHANNEL_API_URL and BACKCHANNEL_TOKEN)")
    wanted = [e for v in args.events or [] for e in v.replace(",", " ").split() if e]
    unknown = [e for e in wanted if e not in EVENT_TYPES]
    if unknown:
        raise ValueError(f"unknown event type(s): {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}")
    if args.secret:
        decode_secret(args.secret)
    listener = Listener(args.api_url, args.token, args.forward_to, events=wanted, as_json=args.json,
                        **({"secret": args.secret} if args.secret else {}))
    try:
        return listener.run()
    except ListenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _version() -> str:
    try:
        return version("backchannel")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return VERSION


def build_parser() -> argparse.ArgumentParser:
    # --json is accepted before the command (``backchannel --json tokens list``) and after it
    # (``backchannel tokens list --json``). The sub-commands' copy defaults to SUPPRESS, so that
    # it does not overwrite a --json given before the command with False.
    json_help = "print machine-readable JSON instead of text"
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=json_help)
    parser = argparse.ArgumentParser(
        prog="backchannel",
        description="Backchannel: conversations, widget, webhooks, web views. "
        "Settings come from BACKCHANNEL_* environment variables (and ./.env).",
    )
    parser.add_argument("--json", action="store_true", default=False, help=json_help)
    parser.add_argument("--version", action="version", version=f"backchannel {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="apply migrations, then run the server", parents=[json_flag])
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    serve.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="N",
        help="server processes on this host (default: $WEB_CONCURRENCY, else 1); "
        "more than one needs BACKCHANNEL_BROKER_URL=redis://…",
    )
    serve.add_argument("--demo", action="store_true", help="set up the AG Bank demo and run its bot beside the server")
    serve.add_argument(
        "--no-migrate",
        action="store_true",
        help="do not apply migrations first (replicas, when `backchannel migrate` runs once per release)",
    )
    serve.set_defaults(fn=cmd_serve)

    migrate = sub.add_parser(
        "migrate", help="apply database migrations (under a lock: replicas may run it together)", parents=[json_flag]
    )
    migrate.set_defaults(fn=cmd_migrate)

    ws = sub.add_parser("workspaces", help="manage workspaces", parents=[json_flag]).add_subparsers(
        dest="sub", required=True, metavar="ACTION"
    )
    create = ws.add_parser("create", help="create a workspace (prints its id and widget key)", parents=[json_flag])
    create.add_argument("name", help="the workspace's name, e.g. your company's")
    create.set_defaults(fn=cmd_workspaces_create)
    ws.add_parser("list", help="list workspaces", parents=[json_flag]).set_defaults(fn=cmd_workspaces_list)

    tokens = sub.add_parser("tokens", help="manage API tokens", parents=[json_flag]).add_subparsers(
        dest="sub", required=True, metavar="ACTION"
    )
    tcreate = tokens.add_parser("create", help="create an API token (shown once)", parents=[json_flag])
    tcreate.add_argument("--workspace", required=True, metavar="ID", help="the workspace's id (wsp_…)")
    tcreate.add_argument("--name", required=True, help="what the token is for, e.g. my-bot")
    tcreate.add_argument(
        "--scopes", nargs="+", metavar="SCOPE", help="read, write, admin (space or comma separated; default: all three)"
    )
    tcreate.set_defaults(fn=cmd_tokens_create)
    tlist = tokens.add_parser("list", help="list a workspace's tokens (never their secrets)", parents=[json_flag])
    tlist.add_argument("--workspace", required=True, metavar="ID", help="the workspace's id (wsp_…)")
    tlist.set_defaults(fn=cmd_tokens_list)
    trevoke = tokens.add_parser("revoke", help="revoke a token", parents=[json_flag])
    trevoke.add_argument("token_id", metavar="TOKEN_ID", help="the token's id (tok_…), as `tokens list` shows it")
    trevoke.add_argument("--workspace", required=True, metavar="ID", help="the workspace's id (wsp_…)")
    trevoke.set_defaults(fn=cmd_tokens_revoke)

    listen = sub.add_parser(
        "listen", parents=[json_flag],
        help="forward a Backchannel's events to a URL on this machine, signed (develop a bot without a public URL)",
        description="Reads the token's workspace events from a running Backchannel and POSTs each to "
        "--forward-to as a webhook delivery: same body, Standard Webhooks headers, signed with the "
        "secret it prints. Resumes after a dropped connection without losing events.",
    )
    listen.add_argument("--api-url", default=os.environ.get("BACKCHANNEL_API_URL"), metavar="URL",
                        help="the server, e.g. https://chat.example.com (default: $BACKCHANNEL_API_URL)")
    listen.add_argument("--token", default=os.environ.get("BACKCHANNEL_TOKEN"), metavar="TOKEN",
                        help="an API token (bch_…) of the workspace, scope read (default: $BACKCHANNEL_TOKEN)")
    listen.add_argument("--forward-to", required=True, metavar="URL",
                        help="where your bot listens, e.g. http://localhost:3000/webhooks")
    listen.add_argument("--events", nargs="+", metavar="TYPE",
                        help="only these event types (space or comma separated; default: all)")
    listen.add_argument("--secret", default=os.environ.get("BACKCHANNEL_LISTEN_SECRET"), metavar="WHSEC",
                        help="sign with this whsec_… secret instead of a new one (default: "
                        "$BACKCHANNEL_LISTEN_SECRET, else a new secret each run)")
    listen.set_defaults(fn=cmd_listen)

    admins = sub.add_parser("admins", help="manage console users", parents=[json_flag]).add_subparsers(
        dest="sub", required=True, metavar="ACTION"
    )
    acreate = admins.add_parser(
        "create", help="create a console admin (password from stdin or prompt)", parents=[json_flag]
    )
    acreate.add_argument("--workspace", required=True, metavar="ID", help="the workspace's id (wsp_…)")
    acreate.add_argument("--email", required=True, help="the login email (unique on this server)")
    acreate.add_argument("--name", default=None, help="the name agents and customers see (default: none)")
    acreate.add_argument(
        "--role", choices=["admin", "agent"], default="admin", help="admin (Settings too) or agent (Inbox only)"
    )
    acreate.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin (also when stdin is not a TTY)"
    )
    acreate.set_defaults(fn=cmd_admins_create)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "workers", 0) is None:
            args.workers = workers_from_env()
        settings = Settings()
        return int(args.fn(args, settings))
    except errors.ApiError as exc:
        if getattr(args, "json", False):
            print(json.dumps(exc.body()), file=sys.stderr)
        else:
            print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except ValidationError as exc:
        print(f"error: {settings_problem(exc)}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OperationalError, ProgrammingError) as exc:
        # Most often a database that was never migrated ("no such table"): one line, no traceback
        # (the statement's parameters would be in it).
        print(
            f"error: the database did not answer as expected ({type(exc.orig).__name__}); "
            "is it reachable, and has `backchannel migrate` been run?",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
