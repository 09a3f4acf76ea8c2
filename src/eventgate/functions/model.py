"""What every functions module shares: the event a function gets and the outcomes it raises."""

from __future__ import annotations

from eventgate.eventstore.model import RecordedEvent

__all__ = ["DeadLetter", "FunctionEvent", "Hold", "Retry"]


FunctionEvent = RecordedEvent
"""The event a function is invoked with: the stored event, data and metadata as stored."""


class Retry(Exception):
    """Raise to ask for another attempt after `delay` seconds (it counts as an attempt)."""

    def __init__(self, delay: float = 0.0, reason: str = "retry requested") -> None:
        super().__init__(reason)
        self.delay = max(0.0, float(delay))


class DeadLetter(Exception):
    """Raise to park the event in the dead-letter store now, without further attempts."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Hold(Exception):
    """Raise to leave the event unfinished, neither retried nor dead-lettered: its lane waits,
    outside any attempt's timeout, until the runner is stopped, and the next runner gets the
    event again (the checkpoint stays below it). For runtime-made functions whose catalog
    drops them (a disabled webhook); a declared function holding would wait until its
    partition moves."""
