"""What ``scripts/serve`` runs (migrate, set up the demo, print where to go, serve), and the
checks every way of serving shares: ``scripts/serve`` and ``backchannel serve`` alike.

Anything that stops the server from starting is said in one line starting ``error:``, with a
non-zero exit, before anything slow happens.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import logging
import os
import socket
import sys
import time
from collections.abc import Sequence

from pydantic import ValidationError
from sqlalchemy.engine import make_url

from app.logs import configure_logging, uvicorn_options
from app.multiprocess import metrics_dir
from app.settings import DEV_SECRET_KEY, Settings, settings_problem


class CannotServe(ValueError):
    """A reason the server must not (or cannot) start; the CLI prints it as ``error: …``."""


def check_serve_options(settings: Settings, *, host: str, workers: int) -> None:
    if workers > 1 and settings.broker_url.startswith("memory://"):
        raise CannotServe(
            f"{workers} worker processes (--workers or WEB_CONCURRENCY) need a shared broker: set "
            "BACKCHANNEL_BROKER_URL=redis://… (memory:// reaches only one process, so sockets would miss "
            "other workers' events)"
        )
    if uses_dev_secret(settings) and not is_loopback(host):
        raise CannotServe(
            f"refusing to listen on {host} with the public development secret key: anyone could forge "
            "visitor tokens, web-view links and console sessions. Set BACKCHANNEL_SECRET_KEY, e.g. "
            "export BACKCHANNEL_SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
        )


def workers_from_env() -> int:
    """``--workers`` defaults to ``WEB_CONCURRENCY`` (as uvicorn's and gunicorn's do), else 1."""
    raw = os.environ.get("WEB_CONCURRENCY", "").strip()
    if not raw:
        return 1
    try:
        return positive_int(raw)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(f"WEB_CONCURRENCY={raw!r}: {exc}") from None


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def with_public_url(settings: Settings, host: str, port: int) -> Settings:
    """Settings whose PUBLIC_URL is where this server listens, unless one was configured.

    Web-view links, the embed snippet and the demo bot's API calls are built from it: left at
    its default (port 8000), ``serve --port 9000`` would hand out links to the wrong port. The
    environment carries it to the worker processes and the demo, which read settings again."""
    if "public_url" in settings.model_fields_set:
        return settings
    url = f"http://{_display_host(host)}:{port}"
    os.environ["BACKCHANNEL_PUBLIC_URL"] = url
    return settings.model_copy(update={"public_url": url})


def uses_dev_secret(settings: Settings) -> bool:
    return settings.secret_key.get_secret_value() == DEV_SECRET_KEY


def warn_if_dev_secret(settings: Settings) -> None:
    """Loudly, in the server's own log format (text or JSON), on every start with the dev key."""
    if uses_dev_secret(settings):
        logging.getLogger("backchannel").warning(
            "BACKCHANNEL_SECRET_KEY is not set, so this server signs with the public development key. "
            "Fine on this machine (it listens on loopback only); set a random key before anyone else can reach it."
        )


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback one (127.0.0.0/8, ::1)."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def port_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on ``host:port``, or None; checked the way uvicorn binds."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"cannot listen on {host}:{port}: the port is in use (is another Backchannel running?); "
                    "stop it, or choose another port with --port"
                )
            if exc.errno == errno.EACCES:
                return f"cannot listen on {host}:{port}: permission denied (ports below 1024 need root)"
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def raise_open_files_limit() -> tuple[int, int]:
    """Lift the open-files soft limit to the hard one (what ``ulimit -n`` shows is often the soft
    1,024); every open widget socket is an open file. Worker processes inherit it. Raising the
    hard limit is the operator's (docs/deploy.md "Many open sockets"). Returns (before, now)."""
    try:
        import resource
    except ImportError:  # not a Unix
        return 0, 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or hard == resource.RLIM_INFINITY or soft >= hard:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft, soft
    return soft, hard


def run_server(settings: Settings, *, host: str, port: int, workers: int) -> int:
    """Serve ``app.main:create_app`` with uvicorn until stopped (``backchannel serve``)."""
    import uvicorn  # late: see LIGHT_MAIN in tests/test_imports.py

    warn_if_dev_secret(settings)
    before, now = raise_open_files_limit()
    if now != before:
        logging.getLogger("backchannel").info("open-files limit raised from %d to %d (ulimit -n)", before, now)
    with metrics_dir(workers):
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=host,
            port=port,
            # Always explicit: given None, uvicorn would read WEB_CONCURRENCY behind the serve checks.
            workers=workers,
            **uvicorn_options(settings),  # logging, forwarded headers, WebSocket limits (app.logs)
        )
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/serve", description="Run Backchannel (with the AG Bank demo).")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    parser.add_argument("--no-demo", action="store_true", help="start an empty server, without the demo")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return _serve(args)
    except ValidationError as exc:
        print(f"error: {settings_problem(exc)}", file=sys.stderr, flush=True)
        return 2
    except ValueError as exc:  # CannotServe
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2


def _serve(args: argparse.Namespace) -> int:
    from app.demo.seed import demo_problem, run_demo  # late: see LIGHT_MAIN in tests/test_imports.py
    from app.store.migrate import current_head, upgrade

    settings = Settings()
    workers = workers_from_env()
    check_serve_options(settings, host=args.host, workers=workers)
    settings = with_public_url(settings, args.host, args.port)
    public_url = settings.public_url
    problem = port_problem(args.host, args.port)
    if problem:
        raise CannotServe(problem)
    if not args.no_demo:
        problem = demo_problem()
        if problem:
            raise CannotServe(problem)
    started = time.monotonic()
    shown = make_url(settings.sqlalchemy_url).render_as_string(hide_password=True)
    print(f"==> applying database migrations to {shown}", flush=True)
    upgrade(settings)
    print(f"    at revision {current_head()} ({time.monotonic() - started:.1f} s)", flush=True)
    if args.no_demo:
        _print_empty_server_help(public_url)
        configure_logging(settings)
        return run_server(settings, host=args.host, port=args.port, workers=workers)
    return run_demo(settings, host=args.host, port=args.port, public_url=public_url, workers=workers)


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _print_empty_server_help(url: str) -> None:
    bc = os.path.join(os.path.dirname(sys.executable), "backchannel")
    print(
        f"""
Backchannel is starting at {url}  (API reference: {url}/docs)

Create a workspace, an API token and a console admin (in another terminal, same folder):
  {bc} workspaces create "My company"
  {bc} tokens create --workspace <workspace id> --name my-bot
  {bc} admins create --workspace <workspace id> --email you@example.com
Then: curl -H "Authorization: Bearer <token>" {url}/api/v1/conversations
""",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
