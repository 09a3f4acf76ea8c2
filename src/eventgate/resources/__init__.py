"""Resources: an app's commands and read models over HTTP, declared once and generated from."""

from __future__ import annotations

from eventgate.resources.declaration import ItemView, ListView, Resource

__all__ = ["ItemView", "ListView", "Resource"]
