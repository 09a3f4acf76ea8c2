"""Serverless functions: async Python run for every matching event, with delivery guarantees."""

from __future__ import annotations

from eventgate.functions.api import DeadLetter, Function, FunctionEvent, Retry, function
from eventgate.functions.context import Context

__all__ = ["Context", "DeadLetter", "Function", "FunctionEvent", "Retry", "function"]
