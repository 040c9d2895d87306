"""The fault scenario of bench/faults.py, in a short form, on each set-up (issue 16).

Real uvicorn processes killed with SIGKILL mid-burst; 16 careful writers retrying with their
``client_message_id``; a webhook receiver answering 500 to a tenth of first attempts; widgets
following each conversation through the kills, and widgets resuming more than 200 messages
behind after the last write. Every invariant is checked by ``bench.faults.check``:

- every acknowledged message is stored exactly once, and ``seq`` is gap-free;
- no 5xx outside a kill window (with a surviving instance: none at all);
- every ``message.created`` is delivered, under one ``webhook-id`` per message, within
  ``delivery_bound`` seconds of its acknowledgement (time with no instance up excepted):
  so after a kill, what the dead process held is retried within seconds;
- every widget is shown every message once and in order, however far behind it resumes,
  without a newer message being posted.

PostgreSQL set-ups run on a private PostgreSQL and Redis (tests/services.py).
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
from pathlib import Path

import pytest

from bench.faults import Config, Report, run_setup

pytestmark = pytest.mark.slow


def run(cfg: Config, tmp_path: Path, slow_receiver: bool = False) -> Report:
    report = asyncio.run(run_setup(cfg, tmp_path, slow_receiver))
    print(report.summary())  # the figures, shown by -s or on failure
    return report


def assert_scenario_held(report: Report) -> None:
    """The faults really happened and the careful client really had to be careful."""
    figures = report.figures
    assert figures["kills"] >= 1 and figures["connection_errors"] >= 1, figures
    assert figures["replays_200"] >= 1, "no retry found its message already stored: the idempotent path went untested"
    assert figures["webhook_500s_injected"] >= 1, figures
    assert all(r["behind"] > 200 for r in figures["far_resumes"] if r["after_writes"]), figures["far_resumes"]


def needs_private_services(tmp_path: Path) -> None:
    """Skips, as tests/services.py does, where a private PostgreSQL and Redis cannot be started."""
    if not os.environ.get("BACKCHANNEL_TEST_POSTGRES_URL") or not os.environ.get("BACKCHANNEL_TEST_REDIS_URL"):
        pytest.skip("PostgreSQL or Redis not configured (see .ci/run)")
    if not shutil.which("redis-server") or not glob.glob("/usr/lib/postgresql/*/bin/initdb") or os.geteuid() != 0:
        pytest.skip("a private PostgreSQL and Redis need their server binaries and root (initdb runs as postgres)")


def test_sqlite_one_instance_killed_and_restarted_twice(tmp_path: Path) -> None:
    report = run(Config(setup="sqlite", messages=1000, conversations=3, kills=2), tmp_path, slow_receiver=True)
    assert report.violations == {}, report.summary()
    assert_scenario_held(report)
    # A receiver taking 300 ms gets several deliveries at once (WEBHOOK_ENDPOINT_CONCURRENCY, default 8).
    assert report.figures["slow_receiver_40_messages_at_300ms_s"] < 6, report.summary()


@pytest.mark.postgres
@pytest.mark.redis
def test_postgres_one_instance_killed_and_restarted_twice(tmp_path: Path) -> None:
    needs_private_services(tmp_path)
    report = run(Config(setup="postgres", messages=1000, conversations=3, kills=2), tmp_path)
    assert report.violations == {}, report.summary()
    assert_scenario_held(report)


@pytest.mark.postgres
@pytest.mark.redis
def test_postgres_two_instances_one_killed_for_good(tmp_path: Path) -> None:
    needs_private_services(tmp_path)
    report = run(Config(setup="postgres-2", messages=1000, conversations=3), tmp_path)
    assert report.violations == {}, report.summary()  # ``no_deadlock`` included: two instances never deadlock
    assert_scenario_held(report)
