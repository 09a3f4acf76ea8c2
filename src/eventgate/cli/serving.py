"""Running long-lived processes: a listening socket, uvicorn on it, background tasks beside it,
a clean stop on SIGINT/SIGTERM, and a supervisor that keeps N copies of a process running."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from eventgate.cli.common import CliError, err, out

__all__ = [
    "INTERNAL_TOKEN_ENV",
    "address",
    "bind",
    "check_exposure",
    "internal_token",
    "listening_socket",
    "run_until_stopped",
    "serve_http",
    "supervise",
    "worker_argv",
    "worker_env",
]

INTERNAL_TOKEN_ENV = "EVENTGATE_INTERNAL_TOKEN"
WS_MAX_SIZE = 64 * 1024
"""Bytes of one WebSocket message a client may send (streaming/websocket.py's MAX_MESSAGE):
past it uvicorn closes with 1009 before the message is held whole."""
_log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn, minus its own signal handling: the process drains and closes its stores."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def internal_token() -> str | None:
    """The gateway-to-services secret from EVENTGATE_INTERNAL_TOKEN (see gateway/internal.py)."""
    token = os.environ.get(INTERNAL_TOKEN_ENV) or None
    if token is not None and len(token) < 16:
        raise CliError(f"{INTERNAL_TOKEN_ENV} must be at least 16 characters")
    return token


def check_exposure(host: str, guarded: bool, insecure: bool, what: str) -> None:
    """Refuse a non-loopback `host` for a process that would trust anyone reaching it."""
    if guarded or insecure or _is_loopback(host):
        return
    raise CliError(f"refusing to listen on {host} with {what}: configure it or pass --insecure")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port), inheritable by worker processes."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets that say TCP, and
    # without it Nagle's algorithm holds each response's body for the client's delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise CliError(f"cannot listen on {host}:{port}: {e.strerror}") from e
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def listening_socket(host: str, port: int, fd: int | None) -> socket.socket:
    """The socket a supervisor handed down as `fd`, else a new one on (host, port)."""
    if fd is None:
        return bind(host, port)
    return socket.socket(fileno=fd)


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


async def run_until_stopped(
    main: Callable[[], Coroutine[Any, Any, None]], tasks: Sequence[Coroutine[Any, Any, None]] = ()
) -> None:
    """Run `main` and `tasks` until SIGINT/SIGTERM (or `main` ends); then cancel the tasks."""
    loop = asyncio.get_running_loop()
    running = asyncio.create_task(main())
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, running.cancel)
    failed: list[BaseException] = []
    helpers = [_watched(task, failed, running.cancel) for task in tasks]
    try:
        await running
    except asyncio.CancelledError:
        pass
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
    if failed:
        raise CliError(f"stopped: a part of this process failed: {failed[0]!r}")


async def serve_http(
    app: ASGIApp, sock: socket.socket, tasks: Sequence[Coroutine[Any, Any, None]] = ()
) -> None:
    """Serve `app` on `sock` beside `tasks` until SIGINT/SIGTERM; drain requests, then stop
    the tasks (the caller closes its stores afterwards)."""
    server = _Server(
        uvicorn.Config(
            app,
            http="httptools",
            lifespan="off",
            access_log=False,
            log_level="warning",
            log_config=None,  # uvicorn's lines go through ours (text or JSON)
            timeout_graceful_shutdown=10,
            ws_max_size=WS_MAX_SIZE,
        )
    )
    loop = asyncio.get_running_loop()

    def stop() -> None:
        server.should_exit = True

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop)
    failed: list[BaseException] = []
    helpers = [_watched(task, failed, stop) for task in tasks]
    try:
        await server.serve(sockets=[sock])
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
    if failed:
        raise CliError(f"stopped: a part of this process failed: {failed[0]!r}")


def _watched(
    work: Coroutine[Any, Any, None], failed: list[BaseException], stop: Callable[[], Any]
) -> asyncio.Task[None]:
    """`work` as a task that, should it fail, is logged and stops the whole process (which
    its supervisor restarts): never a part silently dead while the rest serves on."""
    task = asyncio.create_task(work)

    def done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            assert error is not None
            _log.error("a part of this process failed; stopping", exc_info=error)
            failed.append(error)
            stop()

    task.add_done_callback(done)
    return task


def worker_argv(
    command: str, data: Path, app: str | None, config: Path | None, extra: Sequence[str] = ()
) -> list[str]:
    """The command line of one worker of `eventgate serve COMMAND --workers N`."""
    argv = ["serve", command, "--data", str(data), "--workers", "1", *extra]
    argv += ["--app", app] if app else []
    argv += ["--config", str(config)] if config is not None else []
    return argv


def worker_env(url: str | None, broker: str | None = None) -> dict[str, str]:
    """The database and broker URLs for workers, through the environment: a command line is
    public, and either may hold a password."""
    env = {"EVENTGATE_DATABASE_URL": url} if url else {}
    return env | ({"EVENTGATE_BROKER_URL": broker} if broker else {})


STARTUP_GRACE = 5.0
"""Seconds within which a worker that exits with an error counts as failing to start."""
_MAX_BACKOFF = 30.0


async def supervise(
    argv: list[str],
    workers: int,
    what: str,
    sock: socket.socket | None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Keep `workers` child processes (`eventgate argv...`, with `env` added to this
    environment: secrets never go on a command line) running until SIGINT/SIGTERM. A child
    that dies is restarted, with backoff while it keeps dying; one that fails within
    STARTUP_GRACE seconds with exit code 1 (eventgate's one-line errors: a bad database URL,
    say) stops them all, and the supervisor exits with 1 too. With `sock`, every child serves
    on that socket. Children are sent SIGTERM when the supervisor dies, however it dies."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    command = [sys.executable, "-m", "eventgate.cli", *argv]
    fds: tuple[int, ...] = ()
    if sock is not None:
        command += ["--fd", str(sock.fileno())]
        fds = (sock.fileno(),)
    environment = {**os.environ, **(env or {})}
    failures = await asyncio.gather(
        *(_keep_running(command, n, stopping, what, fds, environment) for n in range(workers))
    )
    if any(failures):
        raise CliError(f"{what} workers failed to start (see above); stopped")
    out.print(f"eventgate {what} stopped cleanly")


async def _keep_running(
    command: list[str],
    n: int,
    stopping: asyncio.Event,
    what: str,
    fds: tuple[int, ...],
    env: Mapping[str, str],
) -> bool:
    """Run worker `n` until stopping; True when it failed at start (then stopping is set)."""
    loop = asyncio.get_running_loop()
    backoff = 1.0
    while not stopping.is_set():
        started = loop.time()
        child = await asyncio.create_subprocess_exec(
            *command, pass_fds=fds, env=env, preexec_fn=_die_with_parent
        )
        waiting = asyncio.create_task(child.wait())
        stop = asyncio.create_task(stopping.wait())
        await asyncio.wait({waiting, stop}, return_when=asyncio.FIRST_COMPLETED)
        if stopping.is_set():
            if child.returncode is None:
                child.terminate()
            await waiting
            return False
        stop.cancel()
        ran = loop.time() - started
        if child.returncode == 1 and ran < STARTUP_GRACE:
            stopping.set()
            return True
        delay = 1.0 if ran > _MAX_BACKOFF else backoff  # 1 s, then doubling while it keeps dying
        backoff = min(delay * 2, _MAX_BACKOFF)
        err.print(f"{what} worker {n} (pid {child.pid}) exited with {child.returncode};"
                  f" restarting in {delay:.0f} s")  # fmt: skip
        with contextlib.suppress(TimeoutError):  # (asyncio.timeout: 3.11's wait_for can
            async with asyncio.timeout(delay):  # lose a cancel, CPython gh-86296)
                await stopping.wait()
    return False


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the supervisor dies (Linux prctl)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
