from typing import Any

from tests.browser.conftest import screenshot
from tests.conftest import LiveServer


def test_docs_page_renders(page: Any, server: LiveServer) -> None:
    page.goto(server.url + "/docs")
    assert page.title()
    screenshot(page, "docs")
