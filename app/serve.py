"""What ``scripts/serve`` runs: migrate, (set up the demo), print where to go, serve."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from app.migrate import upgrade
from app.settings import Settings


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/serve", description="Run Backchannel (with the AG Bank demo).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--no-demo", action="store_true", help="start an empty server, without the demo")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    public_url = os.environ.get("BACKCHANNEL_PUBLIC_URL") or f"http://{_display_host(args.host)}:{args.port}"
    os.environ["BACKCHANNEL_PUBLIC_URL"] = public_url
    settings = Settings()
    print(f"==> applying migrations to {settings.database_url}", flush=True)
    upgrade(settings)
    if args.no_demo:
        _print_empty_server_help(public_url)
        from app.cli import main as cli_main

        return cli_main(["serve", "--host", args.host, "--port", str(args.port)])
    from app.demo import run_demo

    return run_demo(settings, host=args.host, port=args.port, public_url=public_url)


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
