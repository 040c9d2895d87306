"""One typed settings object, read from ``BACKCHANNEL_*`` environment variables (and ``.env``)."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.proxies import parse_networks

DEV_SECRET_KEY = "dev-insecure-secret-key-change-me"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BACKCHANNEL_", env_file=".env", extra="ignore", frozen=True)

    env: Literal["dev", "test", "production"] = "dev"
    database_url: str = "sqlite:///./backchannel.db"
    broker_url: str = "memory://"
    # How long a SQLite writer waits for the write lock before the request answers 503 (with
    # Retry-After) instead of hanging: long enough to queue behind other writers under load.
    database_busy_timeout_seconds: float = 10.0
    # PostgreSQL: how many group-committing writer lanes one process runs side by side
    # (each holds one pooled connection while it commits a batch). SQLite always has one.
    database_writers: int = Field(default=2, ge=1, le=32)
    secret_key: SecretStr = SecretStr(DEV_SECRET_KEY)
    public_url: str = "http://127.0.0.1:8000"
    webhook_allow_private_networks: bool = False
    # Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (comma-separated
    # addresses or CIDRs); from any other peer those headers are ignored. Default: none.
    trusted_proxies: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = ()

    # Logging (app/logs.py): one line per request either way; never a body or a query string.
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    log_format: Literal["text", "json"] = "text"

    # Files (docs/files.md): where uploads live, file://PATH (relative to the working folder,
    # like the SQLite file) or s3://BUCKET?endpoint_url=…&region=… for several instances.
    file_storage: str = "file://./backchannel-files"
    max_file_bytes: int = Field(default=25 * 1_048_576, ge=1)
    widget_uploads_per_hour: int = Field(default=30, ge=1)  # per visitor
    widget_upload_bytes_per_hour: int = Field(default=200 * 1_048_576, ge=1)  # per visitor

    # HTTP limits
    max_body_bytes: int = 1_048_576
    api_rate_per_minute: int = 1200  # per token
    visitor_rate_per_minute: int = 120  # per visitor, widget messages
    widget_new_users_per_hour: int = 200  # widget sessions that may create a user, per workspace and client address

    # Real-time
    ws_max_frame_bytes: int = 65_536
    ws_messages_per_10s: int = 30  # frames that act (messages, opens, web views), per socket
    ws_signals_per_10s: int = 60  # read receipts and typing, counted apart (never the customer's allowance)
    ws_heartbeat_seconds: float = 20.0
    ws_send_queue: int = 256
    ws_sockets_per_session: int = 5  # per session token and instance; a newer socket closes the oldest (4429)
    typing_timeout_seconds: float = 8.0

    # Webhooks
    webhook_timeout_seconds: float = 15.0
    webhook_retry_schedule: list[float] = Field(
        default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]
    )
    webhook_disable_after_seconds: float = 5 * 24 * 3600
    # A claimed delivery is leased this long, and the lease renewed (every third of it, at
    # most every second) while the delivery is in flight: a dead instance's work is due again
    # within one lease.
    webhook_lease_seconds: float = Field(default=5.0, gt=0)
    webhook_poll_seconds: float = 1.0
    webhook_log_retention_days: float = 30.0
    webhook_rotation_overlap_seconds: float = 24 * 3600
    webhook_concurrency: int = 64  # endpoints delivered to at once, per process
    webhook_endpoint_concurrency: int = Field(default=8, ge=1, le=64)  # deliveries in flight per endpoint

    # Data retention (app/data/retention.py): how often the job looks for resolved conversations
    # past a workspace's retention_days, how many it erases per transaction, and the pause
    # between two batches, so request writes never queue long behind it.
    retention_interval_seconds: float = Field(default=300.0, gt=0)
    retention_batch: int = Field(default=20, ge=1, le=500)
    retention_pause_seconds: float = Field(default=0.05, ge=0)

    # Offline replies by email (app/mail, docs/email.md): none without SMTP_URL
    # (smtp://[user:pass@]host[:port], smtp+starttls://…, smtps://…).
    smtp_url: SecretStr | None = None
    email_from: str = "Backchannel <noreply@localhost>"
    email_after_seconds: float = Field(default=300.0, ge=0)  # the customer's widget closed this long
    email_batch_seconds: float = Field(default=120.0, ge=0)  # one email gathers replies this far apart
    email_poll_seconds: float = Field(default=15.0, gt=0)
    # An email in flight is leased this long (longer than an SMTP exchange); a failed one is
    # tried again when its lease lapses.
    email_lease_seconds: float = Field(default=120.0, gt=0)

    # /metrics asks for this bearer token when set
    metrics_token: SecretStr | None = None

    # The AG Bank demo page (/demo) embeds the widget of this workspace; set by scripts/serve.
    demo_widget_key: str | None = None

    # Web views
    webview_ttl_seconds: int = 900

    # Console
    login_attempts_per_15min: int = 10

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        return parse_networks(value) if isinstance(value, str) else value

    @field_validator("file_storage")
    @classmethod
    def _file_storage_scheme(cls, value: str) -> str:
        if not value.startswith(("file://", "s3://")) or value in ("file://", "s3://"):
            raise ValueError("must be file://PATH or s3://BUCKET?endpoint_url=…&region=…")
        return value

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def sqlalchemy_url(self) -> str:
        """The URL SQLAlchemy needs: plain ``postgresql://`` is taken to mean psycopg 3."""
        url = self.database_url
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @model_validator(mode="after")
    def _refuse_dev_secret_in_production(self) -> Settings:
        if self.env == "production" and self.secret_key.get_secret_value() == DEV_SECRET_KEY:
            raise ValueError(
                "BACKCHANNEL_SECRET_KEY must be set to a random value in production "
                "(python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        if self.env == "production" and len(self.secret_key.get_secret_value()) < 32:
            raise ValueError("BACKCHANNEL_SECRET_KEY must be at least 32 characters in production")
        return self


def settings_problem(exc: ValidationError) -> str:
    """Settings that do not validate, in one line naming the variables (never their values)."""
    problems = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        name = "_".join(str(part) for part in error["loc"]).upper()
        problems.append(f"BACKCHANNEL_{name}: {message}" if name else message)
    return "; ".join(problems)
