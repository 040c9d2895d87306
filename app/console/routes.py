"""The console's routes (``/console``): server-rendered admin and Inbox pages (SPEC §8).

Pages call the same action functions as the REST API, so there is one write path.
``ROUTES`` go into ``app.main``'s routes; the live-Inbox hub (``app.console.hub``) is built in its
lifespan.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from app.console import (
    canned,
    data,
    files,
    inbox,
    live,
    login,
    password_reset,
    reports,
    start,
    team,
    tokens,
    webhooks,
    widget,
)

_POST = ["POST"]

ROUTES: list[BaseRoute] = [
    Route("/console", login.home),
    Route("/console/", login.home),
    Route("/console/login", login.login_form),
    Route("/console/login", login.login, methods=_POST),
    Route("/console/logout", login.logout, methods=_POST),
    Route("/console/password-reset", password_reset.ask_form),
    Route("/console/password-reset", password_reset.ask, methods=_POST),
    Route("/console/password-reset/new", password_reset.new_password_form),
    Route("/console/password-reset/new", password_reset.set_new_password, methods=_POST),
    # Inbox
    Route("/console/inbox", inbox.inbox),
    Route("/console/inbox/list", inbox.list_fragment),
    Route("/console/inbox/{conversation_id}", inbox.conversation),
    Route("/console/inbox/{conversation_id}/messages", inbox.messages_fragment),
    Route("/console/inbox/{conversation_id}/header", inbox.header_fragment),
    Route("/console/inbox/{conversation_id}/notice.json", inbox.notice),
    Route("/console/inbox/{conversation_id}/reply", inbox.reply, methods=_POST),
    Route("/console/inbox/{conversation_id}/files", files.upload, methods=_POST),
    Route("/console/inbox/{conversation_id}/assign", inbox.assign, methods=_POST),
    Route("/console/inbox/{conversation_id}/status", inbox.set_status, methods=_POST),
    Route("/console/inbox/{conversation_id}/return-to-bot", inbox.return_to_bot, methods=_POST),
    Route("/console/availability", inbox.set_availability, methods=_POST),
    Route("/console/canned-responses", canned.canned_page),
    Route("/console/canned-responses", canned.add, methods=_POST),
    Route("/console/canned-responses.json", canned.list_json),
    Route("/console/canned-responses/{canned_id}/delete", canned.delete, methods=_POST),
    *live.ROUTES,
    # Settings
    Route("/console/settings", login.settings_home),
    Route("/console/start", start.start_page),
    Route("/console/settings/tokens", tokens.tokens_page),
    Route("/console/settings/tokens", tokens.generate, methods=_POST),
    Route("/console/settings/tokens/{token_id}/revoke", tokens.revoke, methods=_POST),
    Route("/console/settings/widget", widget.widget_page),
    Route("/console/settings/widget", widget.save, methods=_POST),
    Route("/console/settings/widget/reveal-secret", widget.reveal_secret, methods=_POST),
    Route("/console/settings/widget/rotate-secret", widget.rotate_secret, methods=_POST),
    Route("/console/settings/webhooks", webhooks.webhooks_page),
    Route("/console/settings/webhooks", webhooks.add, methods=_POST),
    Route("/console/settings/webhooks/deliveries/{delivery_id}/retry", webhooks.retry, methods=_POST),
    Route("/console/settings/webhooks/{endpoint_id}", webhooks.endpoint_page),
    Route("/console/settings/webhooks/{endpoint_id}", webhooks.save, methods=_POST),
    Route("/console/settings/webhooks/{endpoint_id}/enabled", webhooks.set_enabled, methods=_POST),
    Route("/console/settings/webhooks/{endpoint_id}/reveal-secret", webhooks.reveal_secret, methods=_POST),
    Route("/console/settings/webhooks/{endpoint_id}/rotate-secret", webhooks.rotate_secret, methods=_POST),
    Route("/console/settings/webhooks/{endpoint_id}/test", webhooks.send_test, methods=_POST),
    Route("/console/settings/webhooks/{endpoint_id}/delete", webhooks.delete, methods=_POST),
    Route("/console/settings/team", team.team_page),
    Route("/console/settings/team", team.invite, methods=_POST),
    Route("/console/settings/team/{user_id}/role", team.change_role, methods=_POST),
    Route("/console/settings/team/{user_id}/password", team.reset_password, methods=_POST),
    Route("/console/settings/team/{user_id}/remove", team.remove, methods=_POST),
    Route("/console/account", team.account_page),
    Route("/console/account/name", team.save_name, methods=_POST),
    Route("/console/account/password", team.change_password, methods=_POST),
    Route("/console/settings/retention", data.retention_page),
    Route("/console/settings/retention", data.save_retention, methods=_POST),
    Route("/console/settings/audit-log", data.audit_log_page),
    Route("/console/reports", reports.reports_page),
]
