"""``SMTP_URL`` and sending one message through it.

``smtp://[user:password@]host[:port]`` (plain, port 25), ``smtp+starttls://…`` (STARTTLS,
port 587) or ``smtps://…`` (TLS from the start, port 465). ``smtplib`` blocks: callers run
``send`` in a worker thread.
"""

from __future__ import annotations

import functools
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


@dataclass(frozen=True)
class SmtpTarget:
    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None

    def __repr__(self) -> str:  # never the password, in a log or a traceback
        return f"SmtpTarget({self.scheme}://{self.host}:{self.port})"


def parse_smtp_url(url: str) -> SmtpTarget:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError("SMTP_URL is smtp://, smtp+starttls:// or smtps://, with a host")
    return SmtpTarget(
        scheme=scheme,
        host=parts.hostname,
        port=parts.port or DEFAULT_PORTS[scheme],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process: making one loads the system's CA certificates,
    about 15 ms of CPU, which had been most of what an email cost."""
    return ssl.create_default_context()


def send(target: SmtpTarget, message: EmailMessage, timeout: float = 30.0) -> None:
    """Hand one message to the server; raises on any refusal (the caller retries later)."""
    client: smtplib.SMTP
    if target.scheme == "smtps":
        client = smtplib.SMTP_SSL(target.host, target.port, timeout=timeout, context=tls_context())
    else:
        client = smtplib.SMTP(target.host, target.port, timeout=timeout)
    with client:
        if target.scheme == "smtp+starttls":
            client.starttls(context=tls_context())
        if target.username:
            client.login(target.username, target.password or "")
        client.send_message(message)
