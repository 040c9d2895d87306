"""Offline replies by email (SPEC §12; docs/email.md).

- ``smtp``: ``SMTP_URL`` parsed, one message sent (stdlib ``smtplib``, in a worker thread).
- ``compose``: the email itself, text and HTML, with the link back to the site.
- ``password_reset``: the console's "Forgot password" email.
- ``replies``: the queue (the ``email_progress`` rows: what each conversation has had emailed,
  and the lease of the email in flight), widget presence, and the worker that sends.
"""
