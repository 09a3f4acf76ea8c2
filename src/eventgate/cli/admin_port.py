"""`--admin-port`: /healthz, /readyz and /metrics on one loopback port of a `serve` process.

`serve projections|functions|relay` have no HTTP of their own, and the port of `serve
commands|queries` answers the probes but not /metrics, so each can serve all three on
127.0.0.1:PORT: one uvicorn server, no key asked (only what runs on the machine reaches it),
one port per process (hence `--workers 1`).
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Annotated, Any

import typer
from starlette.types import ASGIApp

from eventgate.cli.common import CliError
from eventgate.cli.serving import address, bind
from eventgate.health.probes import WithProbes
from eventgate.health.readiness import Readiness, broker_check, system_checks
from eventgate.http.loopback import serve_on
from eventgate.metrics.endpoint import MetricsEndpoint
from eventgate.metrics.sampling import Sampler
from eventgate.processes.membership import Membership

if TYPE_CHECKING:
    from eventgate.bootstrap import System
    from eventgate.broker.connection import Broker

__all__ = ["AdminPort", "admin_app", "admin_server", "one_process", "worker_admin"]

AdminPort = Annotated[
    int | None,
    typer.Option(
        "--admin-port",
        min=0,
        max=65535,
        help="Serve /healthz, /readyz and /metrics on 127.0.0.1:PORT (0: any free).",
        show_default=False,
    ),
]
_log = logging.getLogger(__name__)


def one_process(port: int | None, workers: int) -> None:
    """Refuse an admin port for several workers: one port is one process."""
    if port is not None and workers > 1:
        raise CliError("--admin-port needs --workers 1 (one port per process)")


def admin_app(readiness: Readiness, sampler: Sampler | None = None) -> ASGIApp:
    """The probes of `readiness` in front of the metrics endpoint (404 for anything else)."""
    return WithProbes(MetricsEndpoint(sampler), readiness)


def admin_server(
    port: int | None,
    readiness: Readiness,
    sampler: Sampler | None = None,
    membership: Membership | None = None,
) -> list[Coroutine[Any, Any, None]]:
    """The task serving `admin_app` on 127.0.0.1:`port` (none without a port); with
    `membership`, the registry records that address, where `eventgate status` asks."""
    if port is None:
        return []
    sock = bind("127.0.0.1", port)  # a port taken: one clear line, exit 1
    if membership is not None:
        membership.address = address(sock)
    _log.info("admin port on %s: /healthz, /readyz, /metrics", address(sock))
    return [serve_on(admin_app(readiness, sampler), sock)]


def worker_admin(
    port: int | None,
    membership: Membership,
    system: System,
    broker: Broker | None = None,
    *,
    projections: bool = False,
    functions: bool = False,
) -> tuple[Sampler, list[Coroutine[Any, Any, None]]]:
    """The admin port of a process without HTTP (`serve projections|functions|relay`): its
    stores' checks (with `projections` or `functions`, their checkpoints'; with `broker`, the
    connection's), and a sampler to which the caller adds its role's part."""
    readiness = Readiness()
    system_checks(readiness, system, projections=projections, functions=functions)
    if broker is not None:
        readiness.add("broker", broker_check(broker))
    sampler = Sampler(system.store)
    return sampler, admin_server(port, readiness, sampler, membership)
