"""The console's files, read once from the package and served by the gateway itself.

They hold no data and need no key (as /docs): every panel asks the API for what it shows,
and each of those calls needs the `admin` scope. The Content-Security-Policy lets the page
run only its own scripts and styles and talk only to its own origin, so an event's data,
shown as text, can never become code.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.resources import files

from starlette.responses import Response

__all__ = ["CONTENT_SECURITY_POLICY", "ConsolePages"]

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
