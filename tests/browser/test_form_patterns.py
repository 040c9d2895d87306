"""A hosted form's ``pattern`` means the same in Chromium (``v`` flag) as on the server (RE2)."""

from __future__ import annotations

from typing import Any

import pytest

from app.webviews.patterns import PatternError, check_pattern, matches

# Patterns a bot might send, and values to try each on.
ACCEPTED = [
    r"[0-9 ]{12,23}",
    r"(0[1-9]|1[0-2])/[0-9]{2}",
    r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}",
    r"\d{3}-\d{4}",
    r"[a-z]+(?:\.[a-z]+)*",
    r"[\p{L} \-']+",
    r"\p{Lu}\p{Ll}+",
    r"(?<year>\d{4})-(?<month>\d{2})",
    r"[^@\s]+@[^@\s]+",
    r"[a-z0-9._%+\-]+",
    r"(a+)+$",
    r"\bword\b.*",
    r"\x41+",
    r"[\-\/\.]?\w+",
    r"colou?r|gr[ae]y",
    r"\$\d+(\.\d\d)?",
]
VALUES = ["4111 1111 1111 1111", "09/39", "13/99", "DE89370400440532013000", "555-1234", "john.smith",
          "Zoë O'Neil", "Élan", "2024-05", "a@b", "AAA", "aaaa", "word up", "-abc", "colour", "grey",
          "$12.50", "", " ", "ünïcödé", "a\nb"]
# Accepted by one engine but refused, or read differently, by the other: the server refuses them.
REFUSED = [r"(a)\1", r"(?=a)a", r"(?i)a", r"(?P<n>a)", r"\Aa\z", r"[[:alpha:]]", r"[a-z-]", r"[a&&b]",
           r"\pL", r"a{,3}", r"\Qa\E", r"\-"]


def test_every_accepted_pattern_matches_alike_in_chromium_and_on_the_server(page: Any) -> None:
    page.goto("about:blank")
    results = page.evaluate(
        """([patterns, values]) => patterns.map(p => {
            let re;
            try { re = new RegExp("^(?:" + p + ")$", "v"); } catch (e) { return "invalid: " + e.message; }
            return values.map(v => re.test(v));
        })""",
        [ACCEPTED, VALUES],
    )
    for pattern, browser in zip(ACCEPTED, results, strict=True):
        check_pattern(pattern)
        assert isinstance(browser, list), f"{pattern!r} is {browser} in Chromium"
        server = [matches(pattern, v) for v in VALUES]
        assert browser == server, f"{pattern!r}: " + ", ".join(
            f"{v!r} browser={b} server={s}" for v, b, s in zip(VALUES, browser, server, strict=True) if b != s
        )


@pytest.mark.parametrize("pattern", REFUSED)
def test_patterns_the_engines_read_differently_are_refused(pattern: str) -> None:
    with pytest.raises(PatternError):
        check_pattern(pattern)
