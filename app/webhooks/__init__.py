"""Webhooks: every event a workspace subscribes to, signed and delivered to its endpoints.

The parts, in the order a delivery meets them:

- ``schemas.py``: the request and response shapes of the endpoint API, and the event types.
- ``endpoints.py``: the endpoint management actions (create, patch, rotate, test, retry,
  disable, delete) the API routes and the console share, and the delivery log they read.
- ``signing.py``: Standard Webhooks signing: secrets, ed25519 keys, ``Signer`` and the
  ``webhook-*`` headers (the web-view form relay signs with it too).
- ``deliveries.py``: the life of a delivery row: claim with a lease, record attempts,
  retry or give up, release, prune.
- ``dispatcher.py``: the loop that claims due deliveries, sends them, and records what
  happened, one task per endpoint.
- ``sender.py``: the one guarded outbound HTTP sender: webhook deliveries and the
  web-view form relay (``app/webviews/forms.py``) both go through it.
- ``netguard.py``: the one check of every outgoing URL and address (the SSRF guard) the
  sender applies, and that endpoint rows and form callbacks are judged by.

``app/main.py`` builds the sender and the dispatcher in the lifespan (``AppState.webhook_sender``,
``AppState.dispatcher``); no part imports ``app/state.py``.
"""
