"""Headers the gateway sets for the apps behind it (and strips from clients)."""

from __future__ import annotations

__all__ = ["CONSUMER_HEADER", "REQUEST_ID_HEADER"]

CONSUMER_HEADER = "x-eventgate-consumer"
"""The authenticated consumer's name; a client-sent value never gets through the gateway."""

REQUEST_ID_HEADER = "x-request-id"
"""The request id, also the correlation id of the events a command records."""
