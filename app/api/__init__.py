"""The REST API under ``/api/v1`` (SPEC §3).

- ``framework.py``: ``Endpoint`` declarations become routes: authentication, rate limits,
  body parsing and validation before the write is queued, idempotency, the error shape.
- ``openapi.py``: ``/api/v1/openapi.json`` and ``/docs``, generated from the declarations.
- ``schemas.py``: the request and response shapes (pydantic); ``pagination.py``: cursors;
  ``changes.py``: change listings for a CRM's sync (``?updated_after=``, ``sync_cursor``).
- One module per resource (``users``, ``agents``, ``conversations``, ``files``,
  ``tokens``, ``widget_settings``, ``webview_contexts``, ``webhooks``, ``workspace``,
  ``audit_log``, ``canned_responses``), each an
  ``ENDPOINTS`` list whose handlers call the nouns (``app/conversations.py``, …).
"""
