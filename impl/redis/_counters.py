"""What every Redis adapter and its subscribers count, and the figures reported from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, final


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientStatistics:
    commands: int
    connection_errors: int
    script_loads: int
    subscribers_opened: int
    restorations: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriberStatistics:
    channels: int
    messages: int
    restorations: int
    dropped: int


class RestorationSink(Protocol):
    """Where a subscriber reports what the owning client counts (its statistics)."""

    def restoration_seen(self) -> None: ...

    def connection_error_seen(self) -> None: ...


@final
class ClientCounters:
    """An adapter's counters; its subscribers report into it (it is their RestorationSink)."""

    def __init__(self) -> None:
        self.commands = 0
        self.connection_errors = 0
        self.script_loads = 0
        self.subscribers_opened = 0
        self.restorations = 0

    def restoration_seen(self) -> None:
        self.restorations += 1

    def connection_error_seen(self) -> None:
        self.connection_errors += 1

    def snapshot(self) -> ClientStatistics:
        return ClientStatistics(
            commands=self.commands,
            connection_errors=self.connection_errors,
            script_loads=self.script_loads,
            subscribers_opened=self.subscribers_opened,
            restorations=self.restorations,
        )
