"""One history from many processes: decode each agent's JSON lines, merge by time.

Every agent writes the records of its own replica (generators, aborts, client
sessions it served) with ``time.monotonic()`` timestamps, which all processes on one
machine share. Merging sorts by time (ties keep each file's own order) and re-indexes.

A replica that the harness killed never closed its sessions: they are closed here with
``REPLICA_CRASHED`` at the kill time, as the simulation's crash does, so the checker
judges them as readers whose replica died (they are expected to resume elsewhere).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import streamcheck.model
from streamcheck.model import Emitted, History, Record, SessionClosed, SessionEnd, SessionOpened

#: Every type a history line can name: the records and the events inside them.
_TYPES: Mapping[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        *typing.get_args(streamcheck.model.Record),
        streamcheck.model.Chunk,
        streamcheck.model.Done,
        streamcheck.model.Failure,
        streamcheck.model.Gap,
    )
}


class MalformedHistoryLine(ValueError):
    """A line of an agent's history file that is not a record."""


def record_from_json(raw: Mapping[str, Any]) -> Record:
    value = _decode(raw)
    if not isinstance(value, typing.get_args(streamcheck.model.Record)):
        raise MalformedHistoryLine(f"not a history record: {raw!r}"[:300])
    record: Record = value
    return record


def _decode(raw: Mapping[str, Any]) -> Any:
    name = raw.get("type")
    cls = _TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise MalformedHistoryLine(f"unknown type {name!r}")
    hints = typing.get_type_hints(cls)
    kwargs = {
        f.name: _convert(raw[f.name], hints[f.name])
        for f in dataclasses.fields(cls)
        if f.name in raw
    }
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise MalformedHistoryLine(f"bad {name}: {exc}") from exc


def _convert(value: Any, hint: Any) -> Any:
    if isinstance(value, dict) and "type" in value:
        return _decode(value)
    candidates = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, enum.Enum) and value is not None:
            return candidate(value)
    if typing.get_origin(hint) is tuple and isinstance(value, list):
        return tuple(value)
    return value


def read_agent_history(path: Path) -> list[Record]:
    """The records of one agent's file; a torn last line (killed mid-write) is dropped.

    An emit the agent invoked but never saw complete (it was killed, or shut down,
    mid-emit) becomes an INDETERMINATE emit: the event may have been published.
    """
    records: list[Record] = []
    invoked: list[Emitted] = []
    lines = path.read_text().splitlines() if path.exists() else []
    for number, line in enumerate(lines):
        try:
            raw = json.loads(line)
            if isinstance(raw, dict) and "invoked" in raw:
                emit = record_from_json(raw["invoked"])
                if not isinstance(emit, Emitted):
                    raise MalformedHistoryLine(f"an invoked line holds a {type(emit).__name__}")
                invoked.append(emit)
            else:
                records.append(record_from_json(raw))
        except (ValueError, MalformedHistoryLine):
            if number == len(lines) - 1:
                break  # the process died while writing it
            raise
    completed = Counter(_emit_key(r) for r in records if isinstance(r, Emitted))
    for emit in invoked:
        key = _emit_key(emit)
        if completed[key]:
            completed[key] -= 1
        else:
            records.append(emit)  # already INDETERMINATE, at its invoke time
    return records


def _emit_key(emit: Emitted) -> tuple[str, str, str, str | None]:
    return (emit.stream_id, emit.generation, emit.kind.value, emit.payload_digest)


def merge_histories(
    parts: Iterable[list[Record]], *, killed_at: Mapping[str, float] | None = None
) -> History:
    """One history in time order. ``killed_at`` maps a replica name to the time the
    harness killed it: its sessions still open are closed as ``REPLICA_CRASHED``."""
    tagged = [
        (record.time, part_no, i, record)
        for part_no, part in enumerate(parts)
        for i, record in enumerate(part)
    ]
    tagged.sort(key=lambda t: (t[0], t[1], t[2]))
    records = [t[3] for t in tagged]
    closed = {r.session for r in records if isinstance(r, SessionClosed)}
    for replica, at in sorted((killed_at or {}).items(), key=lambda kv: kv[1]):
        for opened in [r for r in records if isinstance(r, SessionOpened)]:
            if opened.replica == replica and opened.time <= at and opened.session not in closed:
                closed.add(opened.session)
                records.append(
                    SessionClosed(
                        time=max(at, opened.time),
                        session=opened.session,
                        reason=SessionEnd.REPLICA_CRASHED,
                    )
                )
    records.sort(key=lambda r: r.time)  # stable: merged order kept among equal times
    history = History()
    for record in records:
        history.append(record)
    return history
