"""`/metrics`: the exposition of prometheus-client's registry, sampled stores first."""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from eventgate.http.problems import problem
from eventgate.metrics.sampling import Sampler

__all__ = ["METRICS_PATH", "MetricsEndpoint"]

METRICS_PATH = "/metrics"
_log = logging.getLogger(__name__)


class MetricsEndpoint:
    """Answers GET or HEAD with the exposition, in the format the Accept header asks for.
    A sample that fails (the database down) is logged and the rest is still answered, so
    the process's own counters stay visible."""

    def __init__(self, sampler: Sampler | None = None) -> None:
        self._sampler = sampler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != METRICS_PATH:
            await problem(404, f"no resource at {scope['path']}")(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            answer = problem(405, "only GET and HEAD here", {"Allow": "GET, HEAD"})
            await answer(scope, receive, send)
            return
        if self._sampler is not None:
            try:
                await self._sampler.sample()
            except Exception as e:
                _log.warning("metrics: reading checkpoints failed (%s)", str(e) or type(e).__name__)
        accept = dict(scope["headers"]).get(b"accept", b"").decode("latin-1")
        encode, media_type = choose_encoder(accept)  # the text format, or OpenMetrics if asked
        headers = {"Cache-Control": "no-store", "Content-Type": media_type}
        await Response(encode(REGISTRY), 200, headers)(scope, receive, send)
