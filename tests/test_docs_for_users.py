"""The README and docs/ speak to users: they cite no file a user of Backchannel does not have
(the product contract the team works from, other checkouts), and the widget protocol's
tables name every field the server sends (issue 22)."""

from __future__ import annotations

import re

from tests.conftest import ROOT

PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_no_page_cites_a_file_users_do_not_have() -> None:
    found = []
    for page in PAGES:
        for n, line in enumerate(page.read_text().splitlines(), 1):
            if re.search(r"\bSPEC\b|SPEC\.md|\.\./shared|/work/", line):
                found.append(f"{page.relative_to(ROOT)}:{n}: {line.strip()[:100]}")
    assert not found, "say it in the page itself, or link a page users have:\n" + "\n".join(found)


def test_every_relative_link_between_pages_resolves() -> None:
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", page.read_text()):
            if not target.startswith("http") and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_the_widget_protocol_table_names_the_kind_of_a_web_view() -> None:
    row = next(line for line in (ROOT / "docs" / "widget.md").read_text().splitlines()
               if line.startswith("| `webview.url` |"))
    assert "`kind`" in row and '"form"' in row and '"url"' in row
