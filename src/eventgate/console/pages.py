"""The console's files, read once from the package and served by the gateway itself, or
by the command service behind an exported gateway (Envoy, APISIX).

They hold no data and need no key (as /docs): every panel asks the API for what it shows,
and each of those calls needs the `admin` scope. The Content-Security-Policy lets the page
run only its own scripts and styles and talk only to its own origin, so an event's data,
shown as text, can never become code.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.resources import files

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["CONTENT_SECURITY_POLICY", "ConsolePages", "WithConsole"]

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # small files; a new version shows on the next load
}
_READS = ("GET", "HEAD")


class ConsolePages:
    """/console (the page) and /console/NAME (its scripts and styles)."""

    def __init__(self) -> None:
        static = files("eventgate.console") / "static"
        self._files: Mapping[str, tuple[bytes, str]] = {
            entry.name: (entry.read_bytes(), _TYPES[suffix])
            for entry in static.iterdir()
            for suffix in [entry.name[entry.name.rfind(".") :]]
            if suffix in _TYPES
        }

    def answer(self, path: str) -> Response | None:
        """The response for a GET of `path`, or None when it is not a console path."""
        if path in ("/console", "/console/"):
            name = "index.html"
        elif path.startswith("/console/"):
            name = path.removeprefix("/console/")
        else:
            return None
        if name not in self._files:
            return None
        body, media_type = self._files[name]
        return Response(body, headers=_HEADERS, media_type=media_type)


class WithConsole:
    """`app`, and the console's files for a GET or HEAD of /console and /console/NAME: the
    command service serves them so that the gateway exports, which have no pages of their
    own, route those paths to it (without a key, as the embedded gateway serves them)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._pages = ConsolePages()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in _READS:
            page = self._pages.answer(scope["path"])
            if page is not None:
                await page(scope, receive, send)
                return
        await self._app(scope, receive, send)
