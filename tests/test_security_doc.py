"""docs/security.md names a test for every promise: each one it names must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# `file.py::test_name`, or `::test_name` meaning the file named last.
CITATION = re.compile(r"`(?:tests/)?((?:\w+/)?\w+\.py)?(?:::(\w+))?`")


def test_every_test_cited_in_security_md_exists() -> None:
    text = (ROOT / "docs" / "security.md").read_text()
    current: str | None = None
    cited = 0
    for file, name in CITATION.findall(text):
        if file:
            # A test file, named from tests/ (`api/test_api_auth.py`), or another file from the root.
            current = file if (ROOT / "tests" / file).exists() else f"../{file}"
            assert (ROOT / "tests" / current).exists(), f"docs/security.md cites missing {file}"
        if name:
            assert current, f"::{name} cited before any file"
            source = (ROOT / "tests" / current).read_text()
            assert re.search(rf"^(async )?def {name}\(", source, re.M), f"tests/{current}::{name} does not exist"
            cited += 1
    assert cited >= 50
