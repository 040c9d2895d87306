"""Where the files the server sends live: the widget script, web-view helper, console and page templates.

In a source checkout (``scripts/serve``, an editable install) they are the top-level ``static/``
and ``templates/`` folders. A built wheel carries the same folders inside the package, as
``app/static`` and ``app/templates`` (``pyproject.toml`` maps them), so ``pip install .`` gives a
complete server. The copy inside the package wins: beside an installed package sits
``site-packages``, whose ``static/`` (if any) belongs to someone else.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def _folder(name: str) -> Path:
    inside = PACKAGE_DIR / name
    return inside if inside.is_dir() else PACKAGE_DIR.parent / name


STATIC_DIR = _folder("static")
TEMPLATES_DIR = _folder("templates")
