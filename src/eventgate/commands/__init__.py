"""The command side: the service that executes commands (the HTTP API comes on top)."""

from __future__ import annotations

from eventgate.commands.handler import CommandHandler, CommandResult

__all__ = ["CommandHandler", "CommandResult"]
