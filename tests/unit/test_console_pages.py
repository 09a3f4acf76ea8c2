"""The console's files as the gateway serves them: each with the Content-Security-Policy,
its media type, only files of the package, and every script or style they name present."""

from __future__ import annotations

import re

import pytest

from eventgate.console import CONTENT_SECURITY_POLICY, ConsolePages

pages = ConsolePages()


def served(path: str) -> tuple[str, bytes]:
    answer = pages.answer(path)
    assert answer is not None, path
    assert answer.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    return answer.headers["Content-Type"], bytes(answer.body)


def test_the_page_and_everything_it_names_are_served_with_the_policy() -> None:
    media_type, page = served("/console")
    assert media_type.startswith("text/html")
    assert served("/console/") == (media_type, page)
    named = re.findall(r'(?:src|href)="/console/([^"]+)"', page.decode())
    assert {"main.js", "console.css"} <= set(named)
    scripts = [name for name in named if name.endswith(".js")]
    while scripts:  # the modules each script imports, transitively
        name = scripts.pop()
        media_type, body = served(f"/console/{name}")
        assert media_type.startswith("text/javascript")
        scripts += re.findall(r'from "\./([^"]+)"', body.decode())


def test_the_policy_allows_no_inline_script_nor_other_origins() -> None:
    directives = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    _, page = served("/console")
    assert not re.search(rb"<script(?![^>]*\bsrc=)", page)  # no inline script to allow
    assert not re.search(rb"<[^>]*\son[a-z]+=", page)  # no inline handler attributes


@pytest.mark.parametrize(
    "path", ["/consolex", "/console/nope.js", "/console/../pages.py", "/console/static/main.js",
             "/docs", "/console/main.js/"],
)  # fmt: skip
def test_other_paths_are_not_the_console_s(path: str) -> None:
    assert pages.answer(path) is None
