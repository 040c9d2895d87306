"""The widget's live side: sessions, its WebSocket, and fan-out between instances.

- ``session.py``: ``GET /widget.js``, the public settings and ``POST /widget/v1/session``.
- ``identity.py``: who is on the other end: signed visitor and session tokens, user JWTs,
  and the allowed-origins rule.
- ``widget_socket.py``: ``/widget/v1/ws`` from handshake to close.
- ``hub.py``: which sockets follow which conversation, and what each event becomes for them.
- ``broker.py``: ``memory://`` or ``redis://`` fan-out of events between instances.
- ``closecodes.py``: every close code of both sockets (widget and console), one meaning each.
"""
