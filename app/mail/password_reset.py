"""The "Forgot password" email: a console user's link to set a new password, text and HTML."""

from __future__ import annotations

import html
from email.message import EmailMessage
from email.utils import formataddr


def password_reset_email(*, sender: str, to: str, name: str | None, link: str, minutes: int) -> EmailMessage:
    """Plain words: what the link does, for how long, and what to do if it was not you."""
    message = EmailMessage()
    message["Subject"] = "Set a new password for the Backchannel console"
    message["From"] = sender
    message["To"] = formataddr((name or "", to))
    message["Auto-Submitted"] = "auto-generated"
    greeting = f"Hi {name}," if name else "Hi,"
    lasts = f"The link works once, for {minutes} minutes."
    not_you = "If you did not ask for this, ignore this email: your password stays as it is."
    message.set_content(
        "\n".join(
            [
                greeting,
                "",
                "Someone (we hope you) asked to reset the password of your Backchannel console account.",
                "Open this link to choose a new one:",
                "",
                link,
                "",
                lasts,
                not_you,
                "",
            ]
        )
    )
    href = html.escape(link, quote=True)
    message.add_alternative(
        '<!doctype html><html><body style="font-family:system-ui,sans-serif;color:#111827;max-width:560px">'
        f"<p>{html.escape(greeting)}</p>"
        "<p>Someone (we hope you) asked to reset the password of your Backchannel console account.</p>"
        f'<p><a href="{href}" style="display:inline-block;padding:10px 18px;background:#1f5eff;color:#fff;'
        'border-radius:20px;text-decoration:none;font-weight:600">Choose a new password</a></p>'
        f"<p>{html.escape(lasts)}<br>{html.escape(not_you)}</p>"
        f'<p style="color:#4b5563;font-size:13px">If the button does not work, paste this address into your '
        f"browser: {html.escape(link)}</p></body></html>",
        subtype="html",
    )
    return message
