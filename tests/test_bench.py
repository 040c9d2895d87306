"""The benchmark code stays importable and its baseline app answers (no timings here:
the numbers live in ``scripts/bench`` output and docs/performance.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

import bench.data
import bench.handover
import bench.instructions
import bench.loadgen
import bench.run
import bench.search
from bench.servers import Server, backchannel_env, free_port, is_loopback, seed, sqlite_database


def test_bench_modules_import_and_parse_options() -> None:
    args = bench.run.parse_args(["--quick", "--only", "rest,e2e"])
    assert args.quick and args.only == ["rest", "e2e"]
    stats = bench.loadgen.percentiles([0.001, 0.002, 0.003])
    assert stats["n"] == 3 and stats["max"] == 3.0


def test_baseline_json_endpoints_and_relay_answer(tmp_path: Path) -> None:
    server = Server("baseline", tmp_path).start()
    try:
        assert httpx.post(server.url + "/echo", json={"a": 1}).json() == {"a": 1}
        assert len(httpx.get(server.url + "/items").json()["data"]) == 50
        with connect(server.url.replace("http", "ws") + "/ws?room=r1") as ws:
            ws.send(json.dumps({"type": "auth", "token": "-"}))
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
            body = {"message_parts": [{"text": {"content": "hi"}}]}
            assert httpx.post(server.url + "/publish/r1", json=body).status_code == 201
            assert json.loads(ws.recv(timeout=10)) == {"type": "message", "message": body}
    finally:
        server.stop()


def test_plans_fit_the_time_budget() -> None:
    """Not a timing assertion: the planned seconds per section (printed next to what each
    section took) add up to the ~11½ minutes (full) and ~3¼ minutes (--quick) aimed for."""
    assert set(bench.run.FULL.budget) == set(bench.run.QUICK.budget) == set(bench.run.BENCHES)
    assert sum(bench.run.FULL.budget.values()) <= 11.5 * 60
    assert sum(bench.run.QUICK.budget.values()) <= 3.25 * 60
    assert bench.run.FULL.idle_levels == [1000, 10000, 50000]
    assert bench.run.FULL.window() > 2 * bench.run.FULL.heartbeat


def test_load_goes_to_this_machine_only(tmp_path: Path) -> None:
    assert is_loopback("http://127.0.0.1:8000") and is_loopback("postgresql://postgres@localhost/x")
    assert is_loopback("postgresql:///postgres") and is_loopback("redis://[::1]:6379/0")
    assert not is_loopback("postgresql://db.example.com/postgres") and not is_loopback("http://10.0.0.5")
    spec = {"scenario": "rest", "urls": ["http://192.0.2.1:80"], "method": "GET", "paths": ["/"], "timeout": 5}
    with pytest.raises(RuntimeError, match="127.0.0.1 only"):
        bench.run.loadgen(spec, tmp_path)


def test_idle_grows_one_server_then_e2e_shrinks(tmp_path: Path) -> None:
    """The load generator's level-by-level idle run (memory sampled from /proc at each level)
    and the end-to-end run that closes all but n sockets and measures again."""
    server = Server("baseline", tmp_path, heartbeat=1.0).start()
    try:
        widgets = [{"conversation_id": f"room{i}"} for i in range(6)]
        phases = [{"name": "max", "concurrency": 2}]
        base = {"kind": "baseline", "urls": [server.url], "widget_key": "", "token": "", "widgets": widgets,
                "duration": 0.3, "phases": phases, "settle": 0.1, "timeout": 60}  # fmt: skip
        assert server.proc is not None
        idle = bench.run.loadgen({**base, "scenario": "idle", "connections": 6, "levels": [3, 6], "window": 2.2,
                                  "server_pids": [server.proc.pid]}, tmp_path)  # fmt: skip
        assert [lv["connect"]["opened"] for lv in idle["levels"]] == [3, 6]
        assert all(lv["rss_kib"] > 0 and lv["held_seconds"] >= 2.2 for lv in idle["levels"])
        assert all(lv["pings_min"] >= 1 for lv in idle["levels"])  # heartbeats counted per level
        assert idle["phases"]["max"]["delivered"] == idle["phases"]["max"]["expected"] > 0
        e2e = bench.run.loadgen({**base, "scenario": "e2e", "connections": 6, "then": [{"connections": 2}]}, tmp_path)
        assert e2e["connect"]["opened"] == 6 and e2e["phases"]["max"]["delivered"] > 0
        small = e2e["then"]["2"]["phases"]["max"]
        assert small["delivered"] == small["expected"] > 0 and not small["duplicates"]
    finally:
        server.stop()


def test_webhook_burst_is_a_fixed_count(tmp_path: Path) -> None:
    rport = free_port()
    urls = ",".join(f"http://127.0.0.1:{rport}/fast/{i}" for i in range(2))
    server = Server("baseline", tmp_path, {"BENCH_FORWARD_URLS": urls}).start()
    try:
        spec = {"scenario": "webhooks", "kind": "baseline", "urls": [server.url], "widget_key": "", "token": "",
                "widgets": [{"conversation_id": "room0"}], "connections": 1, "receiver_port": rport,
                "slow_seconds": 1.0, "endpoints": 2, "post_path": "/forward", "drain_timeout": 20, "timeout": 60,
                "phases": [{"name": "burst", "count": 5, "concurrency": 2, "duration": 20}]}  # fmt: skip
        burst = bench.run.loadgen(spec, tmp_path)["burst"]
        assert burst["posted_ok"] == 5 and burst["expected"] == 10
        assert burst["delivered"] == 10 and not burst["duplicates"]
    finally:
        server.stop()


def test_handover_and_offline_email_are_a_section_of_their_own() -> None:
    """Section 11 (issue 24: the new features keep their own bench entries): chosen with
    ``--only handover``, small in the quick plan, modest in the full one."""
    assert bench.run.parse_args(["--only", "handover"]).only == ["handover"]
    assert "handover" in bench.run.BENCHES and callable(bench.run.Bench.bench_handover)
    assert bench.run.QUICK.budget["handover"] <= 15 and bench.run.FULL.budget["handover"] <= 40
    assert 0 < bench.run.QUICK.handover_conversations <= bench.run.FULL.handover_conversations
    assert 0 < bench.run.QUICK.email_conversations <= bench.run.FULL.email_conversations
    # The quiet window the bench sets is short, and named where the results are.
    assert float(bench.handover.MAIL_SETTINGS["BACKCHANNEL_EMAIL_BATCH_SECONDS"]) <= 1


def test_the_handover_section_measures_a_few_widgets_and_emails(tmp_path: Path) -> None:
    """The section's measurements on a real server, at a few conversations: each frame and
    each email arrives once, and the phases the CPU meter needs are announced."""
    phases: list[str] = []

    def on_event(event: dict[str, Any]) -> None:
        phases.append(f"{event['event']}:{event['name']}")

    url = sqlite_database(tmp_path)
    tenant = seed(url, 3)
    server = Server("backchannel", tmp_path, backchannel_env(url)).start()
    try:
        agents = bench.handover.human_agents(server.url, tenant.token, 2)
        h = bench.handover.measure_handover(server.url, tenant, agents, on_event)
    finally:
        server.stop()
    assert h["exactly_once"], h
    assert h["handover"]["delivered"] == h["reply"]["delivered"] == 3
    url = sqlite_database(tmp_path)
    tenant = seed(url, 2)
    addresses = bench.handover.give_emails(url, tenant.workspace_id)
    with bench.handover.smtp_inbox() as inbox:
        env = {**backchannel_env(url), **bench.handover.mail_env(inbox.port)}
        server = Server("backchannel", tmp_path, env).start()
        try:
            agent = bench.handover.human_agents(server.url, tenant.token, 1)[0]
            e = bench.handover.measure_email(server.url, tenant.token, addresses, agent, inbox, on_event)
        finally:
            server.stop()
    assert e["exactly_once"] and e["emails"] == e["holding_both"] == 2, e
    assert e["delay_ms"]["p50"] >= 1000 * e["window_s"]  # the quiet window is kept
    assert phases == [f"{kind}:{name}" for name in ("handover", "reply", "replies", "emails")
                      for kind in ("phase_start", "phase")]


def test_the_data_bench_imports_and_is_opt_in() -> None:
    """``python -m bench.data`` (erasure and retention) runs on its own, outside the time budget."""
    assert "data" not in bench.run.BENCHES
    assert callable(bench.data.main) and bench.data.Poster and bench.data.bulk_resolved


def test_the_search_bench_imports_and_is_opt_in() -> None:
    """``python -m bench.search`` (search latency at 100,000 messages) runs on its own."""
    assert "search" not in bench.run.BENCHES
    assert callable(bench.search.main) and callable(bench.search.bulk_messages) and bench.search.QUERIES


def test_the_instruction_count_is_opt_in_and_runs_the_server_under_callgrind(tmp_path: Path) -> None:
    """``python -m bench.instructions`` counts with valgrind, outside the time budget; its
    server is the real one, started under callgrind with counting off until the load starts."""
    assert "instructions" not in bench.run.BENCHES
    server = bench.instructions.CountedServer("backchannel", tmp_path)
    server.out_dir = tmp_path
    command = server.command()
    assert command[:3] == ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    assert "app.main:create_app" in command and "--separate-threads=yes" not in command


def test_the_lean_client_holds_a_socket_from_another_loopback_address(tmp_path: Path) -> None:
    """``bench.wire`` (the idle section's client): the upgrade from 127.0.0.3, the auth frame,
    ``ready``, a heartbeat ping answered, a relayed message, the close handshake."""
    import asyncio

    from bench.wire import SOCKETS_PER_SOURCE, WireSocket, source_address

    assert source_address(0) == "127.0.0.2" and source_address(SOCKETS_PER_SOURCE) == "127.0.0.3"
    server = Server("baseline", tmp_path, heartbeat=0.2).start()
    texts: list[str] = []

    async def scenario() -> WireSocket:
        sock = WireSocket(lambda s, text, t: texts.append(text))
        await sock.open("127.0.0.1", server.port, "/ws?room=r1", "http://bench.test", "127.0.0.3", {"type": "auth"})
        assert sock.opened and sock.transport is not None
        assert sock.transport.get_extra_info("sockname")[0] == "127.0.0.3"
        for _ in range(100):
            if sock.pings >= 2:
                break
            await asyncio.sleep(0.05)
        body = {"message_parts": [{"text": {"content": "hi"}}]}
        await asyncio.to_thread(httpx.post, server.url + "/publish/r1", json=body)
        for _ in range(100):
            if texts:
                break
            await asyncio.sleep(0.05)
        await sock.close()
        return sock

    try:
        sock = asyncio.run(scenario())
    finally:
        server.stop()
    assert sock.pings >= 2 and sock.closed == 1000
    assert [json.loads(t) for t in texts] == [{"type": "message", "message": {"message_parts": [{"text": {"content": "hi"}}]}}]


def test_the_scaling_model_splits_the_app_cost_by_instance_and_bounds_by_the_busiest_part() -> None:
    """5d: 1 and 2 instances give the write cost and the per-instance cost (``d = a2 - a1``)."""
    one = {"server_cpu_ms_per_msg": 0.6, "pg_cpu_ms_per_msg": 0.25, "redis_cpu_ms_per_msg": 0.03}
    two = {"server_cpu_ms_per_msg": 0.7, "pg_cpu_ms_per_msg": 0.27, "redis_cpu_ms_per_msg": 0.04}
    model = bench.run.scaling_model(one, two)
    assert model is not None
    assert model["d"] == pytest.approx(0.1) and model["w"] == pytest.approx(0.5)
    assert model["p"] == pytest.approx(0.26) and model["r_per_instance"] == pytest.approx(0.01)
    assert bench.run.scaling_model(one, {}) is None  # a figure missing: no model
