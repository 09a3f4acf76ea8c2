"""The interactive API docs at /docs: Swagger UI served from an installed package, no CDN."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.resources import files

from starlette.responses import HTMLResponse, Response

__all__ = ["DocsPages"]

_ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
_HTML = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
</head><body><div id="ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({{url: "/openapi.json", dom_id: "#ui"}});</script></body></html>"""


class DocsPages:
    """The /docs page and its assets, read once from the `swagger-ui-py` package."""

    def __init__(self, title: str) -> None:
        static = files("swagger_ui") / "static"
        self._html = _HTML.format(title=title)
        self._assets: Mapping[str, bytes] = {n: (static / n).read_bytes() for n in _ASSETS}

    def answer(self, path: str) -> Response | None:
        """The response for a GET of `path`, or None when it is not a docs path."""
        if path == "/docs":
            return HTMLResponse(self._html)
        name = path.removeprefix("/docs/")
        if name == path or name not in self._assets:
            return None
        headers = {"Cache-Control": "public, max-age=86400"}
        return Response(self._assets[name], headers=headers, media_type=_ASSETS[name])
