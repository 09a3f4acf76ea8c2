"""The `wait` preference of a Prefer header (RFC 7240): only a preference's own name counts."""

from __future__ import annotations

import pytest

from eventgate.commands.api import _wait_preference
from eventgate.commands.status import MAX_WAIT


@pytest.mark.parametrize(
    ("prefer", "seconds"),
    [
        ("wait=5", 5.0),
        ("WAIT=1", 1.0),
        ('wait="3"', 3.0),
        ("respond-async, wait=2", 2.0),
        ("wait=3; ignored=param", 3.0),
        ("wait=100", MAX_WAIT),
        (None, None),
        ("", None),
        ("respond-async; wait=2", None),  # a parameter of respond-async, not the preference
        ('handling=lenient, foo="a,wait=3"', None),  # inside a quoted string
        ("waiter=3", None),
        ("wait=abc", None),
        ("wait=-1", None),
        ("wait", None),
        (",;,", None),
    ],
)
def test_the_wait_preference_is_read_as_rfc_7240_says(
    prefer: str | None, seconds: float | None
) -> None:
    assert _wait_preference(prefer) == seconds
