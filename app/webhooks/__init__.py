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
- ``sender.py``: the keep-alive HTTP/1.1 sender deliveries go through.
- ``netguard.py``: the SSRF guard (URL and address checks), and the guarded httpx client
  the web-view form relay uses.
"""
