"""Every WebSocket close code Backchannel uses, on both sockets, one meaning each.

Both the widget's socket (``/widget/v1/ws``) and the console's live Inbox (``/console/live``)
close with these, and static/widget.js and static/console.js act on them; docs/widget.md
("Close codes") shows the table. The standard codes keep their RFC 6455 meaning; the 44xx
ones mirror the HTTP status of the same meaning. ``tests/realtime/test_closecodes.py`` fails
when a socket, a script or the docs use a code that is not here.
"""

from __future__ import annotations

import enum


@enum.unique
class CloseCode(enum.IntEnum):
    meaning: str

    def __new__(cls, code: int, meaning: str) -> CloseCode:
        member = int.__new__(cls, code)
        member._value_ = code
        member.meaning = meaning
        return member

    NORMAL = 1000, "the widget closed its own socket (destroy(), a new identity)"
    GOING_AWAY = 1001, "the peer went away, or a send to it failed"
    INVALID_DATA = 1007, "a frame that is not a UTF-8 JSON object with a type (or nests too deep)"
    POLICY = 1008, "more than twice the frame rate limit in one window"
    TOO_BIG = 1009, "a frame over WS_MAX_FRAME_BYTES"
    RESTARTING = 1012, "the server is stopping or restarting"
    TRY_AGAIN = 1013, "the peer fell too far behind (its send queue filled): reconnect, then catch up"
    UNAUTHENTICATED = 4401, "no valid session: a bad or expired session token (widget), logged out (console)"
    FORBIDDEN = 4403, "origin not allowed or unknown widget key: the handshake is refused (HTTP 403)"
    DEAD_PEER = 4408, "the other side was silent for 2.5 heartbeats (the server's heartbeat, the widget's watchdog)"
    REPLACED = 4429, "a newer socket of the same session token took this one's place"
