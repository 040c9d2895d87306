"""axe-core (from npm, installed by scripts/test into tests/browser/axe) run inside a page.

The script is evaluated through the DevTools protocol, so the console's and the widget's
strict Content-Security-Policy (no inline script) stays on while axe looks at the page, and
into each frame of it (the web-view sheet's form is a frame of its own).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

AXE = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
# What must never be on a page: axe's two highest impacts.
BLOCKING = ("serious", "critical")


@lru_cache(maxsize=1)
def axe_source() -> str:
    if not AXE.exists():
        message = f"axe-core is not installed at {AXE}: scripts/test installs it (npm ci in tests/browser/axe)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI must check, never skip quietly
        pytest.skip(message)
    return AXE.read_text()


def violations(page: Any, *, frames: bool = True) -> list[dict[str, Any]]:
    """axe's serious and critical violations on the page (and in its frames), WCAG 2.x A/AA."""
    found: list[dict[str, Any]] = []
    targets = page.frames if frames else [page.main_frame]
    for frame in targets:
        if frame.url in ("", "about:blank") and frame is not page.main_frame:
            continue
        frame.evaluate(axe_source())
        result = frame.evaluate(
            """async () => {
                const r = await axe.run(document, {
                  runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]},
                  iframes: false,
                });
                return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                  nodes: v.nodes.slice(0, 5).map(n => ({target: n.target.join(" "), summary: n.failureSummary}))}));
            }"""
        )
        found.extend({**v, "frame": frame.url} for v in result if v["impact"] in BLOCKING)
    return found


def report(page: Any, where: str, *, frames: bool = True) -> list[str]:
    """Lines describing the serious and critical violations here (none: an empty list)."""
    problems = violations(page, frames=frames)
    if not problems:
        return []
    lines = [f"{where}: {len(problems)} serious or critical accessibility violation(s) (axe-core):"]
    for v in problems:
        lines.append(f"  [{v['impact']}] {v['id']}: {v['help']} ({v['frame']})")
        for n in v["nodes"]:
            lines.append(f"      {n['target']}: {(n['summary'] or '').splitlines()[-1].strip()}")
    return lines


class Audit:
    """Collects the violations of several pages, to fail once with all of them."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def check(self, page: Any, where: str, *, frames: bool = True) -> None:
        self.lines.extend(report(page, where, frames=frames))

    def assert_clean(self) -> None:
        if self.lines:
            pytest.fail("\n".join(self.lines))


def assert_accessible(page: Any, where: str, *, frames: bool = True) -> None:
    lines = report(page, where, frames=frames)
    if lines:
        pytest.fail("\n".join(lines))
