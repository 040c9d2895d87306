"""Apply the schema migrations (Alembic) to the configured database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from app.settings import Settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class DuplicateConsoleEmails(ValueError):
    """Migration 0003 found console accounts sharing an email (ignoring case): which ones
    must be renamed or removed before a console email can be unique across the server."""

    def __init__(self, duplicates: dict[str, list[tuple[str, str]]]) -> None:
        self.duplicates = duplicates
        lines = [
            f"  {email}: " + ", ".join(f"workspace {ws} (console user {user})" for ws, user in found)
            for email, found in sorted(duplicates.items())
        ]
        super().__init__(
            "Cannot upgrade: a console account's email must be unique across the server, and "
            f"{len(duplicates)} email(s) belong to several accounts:\n" + "\n".join(lines) + "\n"
            "Give each of those accounts its own email (or delete the extra ones), then run "
            "`backchannel migrate` again. Nothing was changed."
        )


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", settings.sqlalchemy_url.replace("%", "%%"))
    config.attributes["settings"] = settings
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    command.upgrade(alembic_config(settings), revision)


def current_head() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(Settings())).get_current_head()
