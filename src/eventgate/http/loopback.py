"""A small HTTP server beside a process's main work: the loopback `--admin-port` of a `serve`
process (/healthz, /readyz, /metrics; cli/admin_port.py)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

__all__ = ["serve_on"]


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handling: the process's own handlers stop it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_on(app: ASGIApp, sock: socket.socket) -> None:
    """Serve `app` on `sock` until cancelled; uvicorn's own log lines go through the
    process's logging (`--log-format`), its access log stays off."""
    config = uvicorn.Config(app, lifespan="off", access_log=False, log_level="warning",
                            log_config=None)  # fmt: skip
    server = _QuietServer(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await asyncio.shield(serving)
    except asyncio.CancelledError:
        server.should_exit = True
        await serving
        raise
