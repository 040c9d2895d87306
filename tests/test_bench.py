"""The benchmark code stays importable and its baseline app answers (no timings here:
the numbers live in ``scripts/bench`` output and docs/performance.md)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from websockets.sync.client import connect

import bench.loadgen
import bench.run
from bench.servers import Server


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
