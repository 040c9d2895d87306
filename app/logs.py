"""Logging for a running server: one format for Backchannel's and uvicorn's lines, one line per request.

``BACKCHANNEL_LOG_LEVEL`` (default ``info``) and ``BACKCHANNEL_LOG_FORMAT`` (``text`` or
``json``, one line per record either way). ``backchannel serve`` calls
``configure_logging(settings)`` and hands uvicorn the same ``logging_config(settings)``,
which every worker process applies for itself.

What never reaches a log: request bodies and query strings (the access line has the path
only; hosted-form links carry their token in the query), and exception messages — they can
hold request values or SQL parameters, so an exception is logged as its type and where it
happened (file, line, function), never its text.
"""

from __future__ import annotations

import logging
import logging.config
import time
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


def describe_exception(exc: BaseException) -> str:
    """An exception as its type and the places it passed through, without its message (nor
    that of any exception it was raised from)."""
    lines = ["Traceback (locations only; exception messages are not logged):"]
    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(chain) < 5:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or current.__context__
    for i, item in enumerate(reversed(chain)):
        if i:
            lines.append("which led to:")
        for frame in traceback.extract_tb(item.__traceback__):
            lines.append(f"  {short_path(frame.filename)}:{frame.lineno} in {frame.name}")
        lines.append(f"{type(item).__module__}.{type(item).__qualname__}")
    return "\n".join(lines)


def innermost_place(exc: BaseException) -> str:
    """Where it went wrong: the innermost frame of our own code (else the innermost of all)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    ours = [f for f in frames if "site-packages" not in Path(f.filename).parts]
    frame = (ours or frames)[-1]
    return f"{short_path(frame.filename)}:{frame.lineno} in {frame.name}"


def brief(exc: BaseException) -> str:
    """An exception for a one-line log message: its type and where, never its message (a
    database error's text carries the statement's parameters: customer data)."""
    return f"{type(exc).__name__} at {innermost_place(exc)}"


def short_path(filename: str) -> str:
    parts = Path(filename).parts
    if "site-packages" in parts:
        return str(Path(*parts[parts.index("site-packages") + 1 :]))
    try:
        return str(Path(filename).relative_to(ROOT))
    except ValueError:
        return filename


class _DropUvicornSocketLines(logging.Filter):
    """uvicorn's own WebSocket lines repeat ours (``app.edge``) with the query string in them."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg if isinstance(record.msg, str) else ""
        return not (msg.startswith('%s - "WebSocket %s"') or msg in ("connection open", "connection closed"))


class _Redacting(logging.Formatter):
    converter = staticmethod(time.gmtime)  # UTC, as every timestamp Backchannel shows

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        exc = ei[1] if ei else None
        return describe_exception(exc) if isinstance(exc, BaseException) else ""

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 - logging's name
        return ""  # stack_info has source lines; the places are in formatException


class TextFormatter(_Redacting):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s", datefmt="%Y-%m-%dT%H:%M:%SZ")


class JsonFormatter(_Redacting, _JsonFormatter):
    """One JSON object a line: ``time``, ``level``, ``logger``, ``message``, and the record's
    extra fields (an access line's ``method``, ``path``, ``status``, ``duration_ms``,
    ``request_id``, ``client``)."""

    def __init__(self) -> None:
        _JsonFormatter.__init__(
            self,
            "{asctime}{levelname}{name}{message}",
            style="{",
            datefmt="%Y-%m-%dT%H:%M:%SZ",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger", "exc_info": "error"},
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],  # uvicorn's terminal copy of the message
        )


def logging_config(settings: Settings) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dictionary (also uvicorn's ``log_config``)."""
    level = settings.log_level.upper()
    formatter = "app.logs.JsonFormatter" if settings.log_format == "json" else "app.logs.TextFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": formatter}},
        "filters": {"uvicorn_sockets": {"()": "app.logs._DropUvicornSocketLines"}},
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
        },
        "loggers": {
            "backchannel": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level, "filters": ["uvicorn_sockets"]},
            # Backchannel writes its own access line (backchannel.access), path without query.
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
        },
        "root": {"handlers": ["default"], "level": "WARNING"},
    }


def configure_logging(settings: Settings) -> None:
    logging.config.dictConfig(logging_config(settings))


# By name: uvicorn imports it in the server process (importing it here would load uvicorn).
WS_PROTOCOL = "app.realtime.uvicorn_protocol:WebSocketProtocol"
HTTP_PROTOCOL = "app.http_protocol:HttpProtocol"


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What ``backchannel serve`` passes to ``uvicorn.run`` besides the app, host, port and workers."""
    return {
        "log_config": logging_config(settings),
        "log_level": settings.log_level,
        "access_log": False,  # our own line, from app.edge
        # Forwarded headers are believed only from BACKCHANNEL_TRUSTED_PROXIES (app.proxies),
        # never from uvicorn's own FORWARDED_ALLOW_IPS default (127.0.0.1).
        "proxy_headers": False,
        "ws_max_size": settings.ws_max_frame_bytes,
        # uvicorn's own WebSocket protocol with less held per open socket (app.realtime.uvicorn_protocol).
        "ws": WS_PROTOCOL,
        # uvicorn's httptools protocol, a response's head and body in one write (app.http_protocol).
        "http": HTTP_PROTOCOL,
        # permessage-deflate keeps a zlib context per socket, ~44 KiB of the ~96 KiB an idle
        # widget socket costs (scripts/bench, docs/performance.md); widget frames are small
        # JSON that gains little from it.
        "ws_per_message_deflate": False,
        # No protocol-level pings: the hub's one heartbeat task pings every widget socket and
        # closes a silent one (4408), which also proves the widget's script alive; a timer per
        # socket for uvicorn's pings would cost memory and CPU for nothing more.
        "ws_ping_interval": None,
        "ws_ping_timeout": None,
    }
