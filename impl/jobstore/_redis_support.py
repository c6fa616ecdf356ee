"""Helpers of :class:`~streamcheck.impl.jobstore._redis.RedisJobStore`: script replies and the
chunk log.

The chunk log's format is :mod:`streamcheck.impl.redis._chunklog`'s; this module only reads it.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, final

from streamcheck.impl._types import UsageMetadata
from streamcheck.impl.jobstore._protocol import ContentSource
from streamcheck.impl.redis import RedisLike
from streamcheck.impl.redis._protocol import ScriptArg
from streamcheck.model import JSONValue

__all__ = [
    "LocalContent",
    "RedisJobStoreStats",
    "read_generation_events",
    "script_args",
    "script_text",
]

logger = logging.getLogger(__name__)

#: XRANGE page size when reading the chunk log; bounds the size of one reply.
LOG_PAGE: Final = 500


@dataclass(frozen=True, kw_only=True, slots=True)
class RedisJobStoreStats:
    """This replica's local view of a :class:`RedisJobStore` (Redis holds the jobs)."""

    local_graphs: int
    live_graphs: int
    usage_entries: int
    reaped_total: int
    pending_reaped: int


@final
class LocalContent:
    """What one replica keeps per stream: weakly held graphs and collected usage."""

    def __init__(self) -> None:
        self.graphs: dict[str, weakref.ref[ContentSource]] = {}
        self.usage: dict[str, list[UsageMetadata]] = {}

    def live_graph(self, stream_id: str) -> ContentSource | None:
        ref = self.graphs.get(stream_id)
        return None if ref is None else ref()

    def forget(self, stream_id: str) -> None:
        self.graphs.pop(stream_id, None)
        self.usage.pop(stream_id, None)

    def clear(self) -> None:
        self.graphs.clear()
        self.usage.clear()

    def streams(self) -> list[str]:
        """Streams with local state, sorted, after dropping graphs that were collected."""
        for stream_id, ref in list(self.graphs.items()):
            if ref() is None:
                del self.graphs[stream_id]
        return sorted(self.graphs.keys() | self.usage.keys())


def script_text(reply: object) -> str:
    """A script's string or integer reply as text, whatever the adapter decodes to."""
    if isinstance(reply, bytes):
        return reply.decode()
    if isinstance(reply, str | int):
        return str(reply)
    raise TypeError(f"unexpected script reply {reply!r}")


def script_args(fields: Mapping[str, str]) -> list[ScriptArg]:
    """``{"a": "1", "b": "2"}`` -> ``["a", "1", "b", "2"]`` (HSET's argument order)."""
    return [item for pair in fields.items() for item in pair]


def next_entry_id(entry_id: str) -> str | None:
    """The smallest stream entry id after ``entry_id`` (``ms-n`` -> ``ms-(n+1)``).

    Used instead of an exclusive ``(id`` range so that any RedisLike supporting plain
    XRANGE bounds can page.
    """
    ms, _, n = entry_id.partition("-")
    if not (ms.isdigit() and n.isdigit()):
        return None
    return f"{ms}-{int(n) + 1}"


async def read_generation_events(
    redis: RedisLike, key: str, *, generation_id: str, start_seq: int
) -> list[JSONValue] | None:
    """The ``chunk`` events of one generation in log order, or ``None`` if it has none.

    Reading starts at ``start_seq``: lower seqs belong to earlier turns on the stream
    id. Entries are still filtered by generation, since the counter alone can't tell a
    predecessor's late appends apart. Unreadable entries are logged and skipped.
    """
    events: list[JSONValue] = []
    found = False
    start: str | None = f"{start_seq}-0"
    while start is not None:
        page = await redis.xrange(key, start, "+", count=LOG_PAGE)
        for entry_id, fields in page:
            if fields.get("type") != "chunk" or fields.get("gen") != generation_id:
                continue
            found = True
            try:
                events.append(json.loads(fields.get("event", "")))
            except ValueError:
                logger.warning("%s: unreadable chunk log entry %s", key, entry_id)
        start = next_entry_id(page[-1][0]) if len(page) == LOG_PAGE else None
    return events if found else None
