"""docs/bots.md's code is the example bots' code: each snippet sits under an
``<!-- include: FILE [region] -->`` line and must equal that region of the file (between
``[region]`` and ``[/region]`` comment lines), so the guide shows exactly what
tests/test_example_bots.py runs end to end. After editing a bot, refresh the guide with
``python -m tests.test_bots_guide``."""

from __future__ import annotations

import re
import textwrap

from tests.conftest import ROOT

GUIDE = ROOT / "docs" / "bots.md"
INCLUDE = re.compile(r"<!-- include: (?P<file>\S+) \[(?P<region>[\w-]+)\] -->\n```(?P<lang>\w+)\n(?P<code>.*?)```",
                     re.S)


def region(path: str, name: str) -> str:
    lines = (ROOT / path).read_text().splitlines()
    marks = [i for i, line in enumerate(lines) if re.fullmatch(rf"\s*(//|#) \[/?{re.escape(name)}\]", line)]
    assert len(marks) == 2, f"{path}: region [{name}] needs one opening and one closing marker"
    body = [line for line in lines[marks[0] + 1 : marks[1]] if not re.fullmatch(r"\s*(//|#) \[/?[\w-]+\]", line)]
    return textwrap.dedent("\n".join(body)).strip("\n") + "\n"


def rendered(text: str) -> str:
    def fill(m: re.Match[str]) -> str:
        return f"<!-- include: {m['file']} [{m['region']}] -->\n```{m['lang']}\n{region(m['file'], m['region'])}```"

    return INCLUDE.sub(fill, text)


def test_every_snippet_of_the_guide_is_the_code_the_tests_run() -> None:
    text = GUIDE.read_text()
    includes = list(INCLUDE.finditer(text))
    assert len(includes) == text.count("<!-- include:") >= 16
    for m in includes:
        assert m["code"] == region(m["file"], m["region"]), (
            f"docs/bots.md's [{m['region']}] of {m['file']} differs from the file: "
            "run `python -m tests.test_bots_guide` to refresh it"
        )


def test_both_languages_are_shown_side_by_side() -> None:
    includes = [(m["file"], m["region"]) for m in INCLUDE.finditer(GUIDE.read_text())]
    js = [r for f, r in includes if f.endswith(".js")]
    py = [r for f, r in includes if f.endswith(".py")]
    assert js == py and set(js) >= {"server", "api", "greet", "answers", "form", "toppings", "closed", "handover"}


def test_the_guide_covers_what_a_bot_developer_asks_first() -> None:
    text = GUIDE.read_text()
    for needle in ("webhook-signature", "reply_to.payload", "quick_replies", "dropdown", "postback", "carousel",
                   "callback_url", "422", "bc_ctx", "webview.closed", "handover", "handled_by", "typing",
                   "Idempotency-Key", "client_message_id", "webhook-id", "backchannel listen", "rotate-secret"):
        assert needle in text, needle
    assert "SPEC" not in text


if __name__ == "__main__":
    GUIDE.write_text(rendered(GUIDE.read_text()))
    print(f"refreshed {GUIDE.relative_to(ROOT)}")
