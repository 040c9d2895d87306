"""The example bots of docs/bots.md, run end to end through the widget protocol against a real
server: examples/pizzabot-js (Node, ``standardwebhooks`` from npm, installed by scripts/test)
and examples/pizzabot-py. Each greets, answers a quick reply, a carousel postback and a
drop-down, hosts a form whose callback refuses then accepts, serves an external web view,
resumes when each closes, and hands over to a human, then stays quiet."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, LiveServer, Tenant, free_port
from tests.realtime.test_realtime import WidgetClient

JS = ROOT / "examples" / "pizzabot-js"
PY = ROOT / "examples" / "pizzabot-py"


class Bot:
    def __init__(self, kind: str, server: LiveServer, tenant: Tenant, api: httpx.Client, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        endpoint = api.post("/api/v1/webhook-endpoints", json={"url": self.url + "/webhooks"}).json()
        env = {**os.environ, "BACKCHANNEL_API_URL": server.url, "BACKCHANNEL_TOKEN": tenant.token,
               "WEBHOOK_SECRET": endpoint["secret"], "PUBLIC_URL": self.url, "PORT": str(self.port)}
        if kind == "js":
            cmd, cwd = [str(shutil.which("node")), "bot.js"], JS
        else:
            cmd, cwd = [sys.executable, "bot.py"], PY
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the bot exited:\n{self.log()}"
            try:
                if httpx.get(self.url + "/health", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError(f"the bot did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture(params=["js", "py"])
def bot(request: pytest.FixtureRequest, server: LiveServer, tenant: Tenant, api: httpx.Client,
        tmp_path: Path) -> Iterator[Bot]:
    if request.param == "js":
        if shutil.which("node") is None:
            pytest.skip("node is not installed: the JavaScript example bot cannot run (apt-get install nodejs npm)")
        assert (JS / "node_modules" / "standardwebhooks").is_dir(), (
            "examples/pizzabot-js/node_modules is missing: scripts/test installs it with `npm ci` when npm is there"
        )
    running = Bot(request.param, server, tenant, api, tmp_path / f"bot-{request.param}.log")
    yield running
    running.stop()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        print(f"----- bot log -----\n{running.log()}")


def next_bot_message(client: WidgetClient, text: str | None = None) -> dict[str, Any]:
    while True:
        message = client.expect("message", timeout=15)["message"]
        if message["actor"]["type"] == "bot" and (text is None or text in str(message["message_parts"])):
            return message  # type: ignore[no-any-return]


def choose(client: WidgetClient, message: dict[str, Any], label: str, payload: str, n: int) -> None:
    client.send({"type": "message", "client_message_id": f"c{n}", "text": label,
                 "reply_to": {"message_id": message["id"], "payload": payload}})


def open_webview(client: WidgetClient, message: dict[str, Any], webview_id: str) -> str:
    client.send({"type": "webview.open", "message_id": message["id"], "webview_id": webview_id})
    return client.expect("webview.url", webview_id=webview_id)["url"]  # type: ignore[no-any-return]


def test_the_example_bot_takes_an_order_end_to_end(bot: Bot, server: LiveServer, tenant: Tenant,
                                                   api: httpx.Client) -> None:
    with ExitStack() as stack:
        client = WidgetClient(stack, server, tenant)
        client.connect()
        client.send({"type": "open"})
        conversation_id = client.expect("conversation")["conversation"]["id"]

        greeting = next_bot_message(client, "Hungry?")  # conversation.created: the bot greets
        assert greeting["reply_parts"][0]["quick_replies"]["options"][0]["payload"] == "ORDER"
        choose(client, greeting, "Order a pizza", "ORDER", 1)  # a quick reply
        menu = next_bot_message(client)
        assert [c["title"] for c in menu["message_parts"][0]["carousel"]["cards"]] == ["Margherita", "Diavola"]
        choose(client, menu, "Diavola", "PIZZA:Diavola", 2)  # a carousel postback
        sizes = next_bot_message(client, "Which size?")
        choose(client, sizes, "Large (32 cm)", "SIZE:large", 3)  # a drop-down option
        address = next_bot_message(client)
        form_url = open_webview(client, address, "address")

        with httpx.Client(timeout=20) as browser:
            page = browser.get(form_url)
            assert page.status_code == 200 and "Where should we deliver?" in page.text
            json_ = {"Accept": "application/json"}
            refused = browser.post(form_url, data={"street": "Main St 1", "postcode": "20095"}, headers=json_)
            assert refused.status_code == 422, refused.text
            assert "only deliver to postcodes starting with 1" in refused.text
            accepted = browser.post(form_url, data={"street": "Main St 1", "postcode": "10115"}, headers=json_)
            assert accepted.status_code == 200, accepted.text
        next_bot_message(client, "Order placed: a large Diavola to Main St 1")  # on webview.closed

        choose(client, greeting, "Toppings", "TOPPINGS", 4)
        toppings = next_bot_message(client)
        page_url = open_webview(client, toppings, "toppings")
        page = httpx.get(page_url, timeout=10)  # the bot's own page checks bc_ctx with the API
        assert page.status_code == 200 and f"Toppings for conversation {conversation_id}" in page.text
        assert httpx.get(bot.url + "/toppings?bc_ctx=forged", timeout=10).status_code == 403
        client.send({"type": "webview.close", "message_id": toppings["id"], "webview_id": "toppings",
                     "status": "closed", "result": "extra cheese"})
        noted = next_bot_message(client, "Noted: extra cheese.")

        choose(client, noted, "Talk to a human", "HUMAN", 5)
        next_bot_message(client, "Let me get a colleague")
        deadline = time.monotonic() + 15
        while api.get(f"/api/v1/conversations/{conversation_id}").json()["handled_by"] != "human":
            assert time.monotonic() < deadline, "never handed over"
            time.sleep(0.2)
        client.send({"type": "message", "client_message_id": "c6", "text": "Hello?"})
        client.expect("ack", client_message_id="c6")
        time.sleep(1.5)  # the bot hears it, and stays quiet while a human has the conversation
        said = [m for m in api.get(f"/api/v1/conversations/{conversation_id}/messages",
                                   params={"limit": 200}).json()["data"] if m["actor"]["type"] == "bot"]
        assert "Let me get a colleague" in str(said[-1]["message_parts"])
        # Each answer went out once, though webhooks may be retried: the bot's messages carry
        # the webhook-id in their client_message_id.
        keys = [m["client_message_id"] for m in said]
        assert len(keys) == len(set(keys)) and all(k and k.startswith("msg_") for k in keys)
