"""Reproducible benchmarks for Backchannel (``scripts/bench``), each against a bare baseline.

- ``run.py``       the orchestrator: starts servers, runs scenarios, prints tables with ratios
- ``servers.py``   uvicorn subprocesses (Backchannel or the baseline), databases, seeding
- ``baseline.py``  a bare Starlette WebSocket relay and JSON endpoint: no database, no auth
- ``loadgen.py``   the asyncio load generator, run in its own process (it reports its CPU)
- ``client.py``    the load generator's minimal keep-alive HTTP/1.1 client
- ``soak.py``      a long-running soak of one server (separate from the timed benches)

Numbers live here and in ``docs/performance.md``, never in the test suite.
"""
