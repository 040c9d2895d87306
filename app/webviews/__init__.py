"""Web views (SPEC §6): pages a bot opens inside the widget for what Backchannel must not see.

- ``openings.py``: opening and closing a web view, and the hosted forms' single-use links.
- ``context.py``: the signed ``bc_ctx`` context token (Ed25519 JWS) a page verifies.
- ``forms.py``: hosted forms: fields, server-side validation, and the relay of the values
  to the bot's callback (through the webhooks' guarded sender; never stored or logged).
- ``patterns.py``: a form field's ``pattern``, matched in linear time (RE2).
- ``routes.py``: ``/webviews/form``: the hosted form page and its submission.
"""
