"""Injectable sources of nondeterminism: wall clock and ids.

Deadlines use trio's clock (``trio.current_time``), which the simulation replaces with
``trio.testing.MockClock``. Wall-clock timestamps stored in jobs and ids come from the
objects below, so a simulated run can replay bit for bit.
"""

from __future__ import annotations

import itertools
import time
import uuid
from typing import Protocol


class WallClock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the epoch."""


class IdSource(Protocol):
    def new_id(self) -> str: ...


class SystemWallClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class RandomIds:
    def new_id(self) -> str:
        return uuid.uuid4().hex


class CountingIds:
    """Deterministic ids ``<prefix>1``, ``<prefix>2``, ... for tests and simulation."""

    def __init__(self, prefix: str = "id") -> None:
        self._prefix = prefix
        self._counter = itertools.count(1)

    def new_id(self) -> str:
        return f"{self._prefix}{next(self._counter)}"


class ManualWallClock:
    """A wall clock that moves only when told to."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms

    def now_ms(self) -> int:
        return self._now

    def advance(self, ms: int) -> None:
        if ms < 0:
            raise ValueError("time can't go backwards")
        self._now += ms
