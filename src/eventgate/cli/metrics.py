"""`--metrics-port`: /metrics on a loopback port of its own, for the processes that have no
gateway to answer it (`serve commands|queries|projections|functions|relay`)."""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import Annotated, Any

import typer

from eventgate.cli.common import CliError
from eventgate.cli.serving import address, bind
from eventgate.metrics.endpoint import MetricsEndpoint, serve_metrics
from eventgate.metrics.sampling import Sampler

__all__ = ["MetricsPort", "metrics_server", "one_process"]

MetricsPort = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        min=1,
        max=65535,
        help="Serve Prometheus /metrics on 127.0.0.1:PORT (default: not served).",
    ),
]
_log = logging.getLogger(__name__)


def one_process(port: int | None, workers: int) -> None:
    """Refuse a metrics port for several workers: each process counts its own requests."""
    if port is not None and workers > 1:
        raise CliError("--metrics-port needs --workers 1 (one port per process)")


def metrics_server(
    port: int | None, sampler: Sampler | None = None
) -> list[Coroutine[Any, Any, None]]:
    """The task serving /metrics on 127.0.0.1:`port` (none without a port); `sampler`
    reads this process's checkpoints and lags at each scrape."""
    if port is None:
        return []
    sock = bind("127.0.0.1", port)  # a port taken: one clear line, exit 1
    _log.info("metrics on %s/metrics", address(sock))
    return [serve_metrics(MetricsEndpoint(sampler), sock)]
