"""The console at ``/console`` (SPEC §8): server-rendered Settings pages and the Inbox.

``routes.py`` lists every route; ``pages.py`` wraps each page handler (session, CSRF, role);
``auth.py`` holds sessions, CSRF and login throttling; ``render.py`` the templates and CSP;
``hub.py`` and ``live.py`` the live Inbox socket. One module per page: ``inbox``, ``team``,
``tokens``, ``webhooks``, ``widget``, ``login``, ``files``, ``data`` (Data retention and the
Audit log), ``canned`` (Canned responses); the Inbox also has the Available toggle and the
notifications' ``notice.json``. Pages call the same nouns as the
REST API (``app/conversations.py``, ``app/webhooks/endpoints.py``, …): one write path.
"""
