"""The `eventgate` command line: run the system; inspect events, projections and functions."""

from __future__ import annotations

from eventgate.cli import database, functions, gateway, inspect, schemas, serve, status, up
from eventgate.cli.common import app

__all__ = ["app", "main"]

# imported for the commands they register on `app`
_COMMANDS = (database, functions, gateway, inspect, schemas, serve, status, up)


def main() -> None:
    """Console-script entry point."""
    app()
