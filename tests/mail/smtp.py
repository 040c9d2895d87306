"""A real SMTP server on loopback (aiosmtpd) for the email tests, and the settings that point
Backchannel at it. The ``smtp_port`` and ``smtp`` fixtures (``tests/conftest.py``) start one per
test; ``smtp_server`` starts one by hand where a test needs it before the app."""

from __future__ import annotations

import email
import email.policy
import threading
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


class Inbox:
    """What the SMTP server on loopback received: parsed messages and their envelopes."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), parsed))  # type: ignore[arg-type]
        return "250 OK"

    def count(self) -> int:
        with self.lock:
            return len(self.messages)


def smtp_server(port: int) -> tuple[Controller, Inbox]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    return controller, inbox


def mail_env(smtp_port: int) -> dict[str, str]:
    return {
        "BACKCHANNEL_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "BACKCHANNEL_EMAIL_FROM": "Acme Support <support@acme.test>",
        "BACKCHANNEL_EMAIL_AFTER_SECONDS": "1",
        "BACKCHANNEL_EMAIL_BATCH_SECONDS": "1",
        "BACKCHANNEL_EMAIL_POLL_SECONDS": "0.3",
        "BACKCHANNEL_EMAIL_LEASE_SECONDS": "1",
    }
