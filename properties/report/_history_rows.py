"""The timeline's history rows: lanes, and each history record drawn and said in words
(see :mod:`._layout`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamcheck.properties.report._shapes import (
    Arrow,
    Lane,
    Mark,
)
from streamcheck.properties.report._words import (
    _int_or_none,
    _natural_key,
    _optional_str,
    _text,
    replica_of_client,
)
from streamcheck.properties.sim import (
    Publication,
    TraceRecord,
)


@dataclass(slots=True)
class _Sessions:
    """What each session's ``SessionOpened`` says (its replica, user, mode, turn)."""

    opened: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    opened_at: dict[str, int] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    def note(self, name: str, record: Mapping[str, Any] | None, position: int) -> None:
        if name not in self.order:
            self.order.append(name)
        if record is not None and name not in self.opened:
            self.opened[name] = record
            self.opened_at[name] = position

    def replica(self, name: str) -> str | None:
        record = self.opened.get(name)
        return None if record is None else _optional_str(record.get("replica"))


def _collect_lanes(
    history: Sequence[Mapping[str, Any]],
    redis: Sequence[TraceRecord],
    replica_count: int | None,
) -> tuple[list[Lane], _Sessions, dict[str, str]]:
    """Lanes in display order: sessions (by first appearance), replicas (every one of
    the run, natural order), Redis. Also returns the sessions and each generation's
    replica."""
    sessions = _Sessions()
    replicas: set[str] = set()
    if replica_count is not None and 0 < replica_count <= 64:
        replicas.update(f"r{i}" for i in range(replica_count))
    generation_replica: dict[str, str] = {}
    for position, record in enumerate(history):
        kind = record.get("type")
        session = _optional_str(record.get("session"))
        if session is not None:
            sessions.note(session, record if kind == "SessionOpened" else None, position)
        replica = _optional_str(record.get("replica"))
        if replica is not None:
            replicas.add(replica)
        generation = _optional_str(record.get("generation"))
        if kind == "GenerationStarted" and generation is not None and replica is not None:
            generation_replica.setdefault(generation, replica)
    for step in redis:
        client = getattr(step, "client", None)
        if isinstance(client, str):
            replicas.add(replica_of_client(client))
    lanes: list[Lane] = []
    for name in sessions.order:
        opened = sessions.opened.get(name)
        if opened is None:
            subtitle = "no SessionOpened record"
        else:
            subtitle = (
                f"{_text(opened.get('user_id'))}, {_text(opened.get('mode'))} "
                f"stream {_text(opened.get('stream_id'))} via {_text(opened.get('replica'))}"
            )
        lanes.append(Lane(name, "session", f"client {name}", subtitle))
    for name in sorted(replicas, key=_natural_key):
        lanes.append(Lane(name, "replica", f"replica {name}", "server and its generators"))
    lanes.append(Lane("redis", "redis", "Redis", "log, counter, pub/sub"))
    return lanes, sessions, generation_replica


def _event_words(event: Mapping[str, Any]) -> tuple[str, str, str]:
    """(arrow label, sentence part, arrow style) for a delivered event."""
    kind = event.get("type")
    seq = _text(event.get("seq"))
    if kind == "Chunk":
        return f"chunk seq {seq}", f"chunk seq {seq}", "deliver"
    if kind == "Done":
        return f"done seq {seq}", f"its terminal, done seq {seq}", "terminal"
    if kind == "Failure":
        message = _text(event.get("message"), "")
        return (
            f"error seq {seq}",
            f"its terminal, error seq {seq} (\u201c{message}\u201d)",
            "terminal",
        )
    if kind == "Gap":
        first, last = _text(event.get("first_seq")), _text(event.get("last_seq"))
        reason = _text(event.get("reason"))
        span = first if first == last else f"{first}\u2013{last}"
        return (
            f"gap {span}",
            f"a gap: seqs {span} are lost for good ({reason})",
            "gap",
        )
    return _text(kind, "event"), f"an event of unknown type {_text(kind)}", "deliver"


def _reach_words(publication: Publication | None) -> str:
    if publication is None:
        return ""
    replicas = sorted({replica_of_client(r) for r in publication.receivers}, key=_natural_key)
    if not replicas:
        return "; no replica was subscribed to its channel, so nobody heard it live"
    return f"; heard live by {', '.join(replicas)}"


def _draw(
    record: Mapping[str, Any],
    sessions: _Sessions,
    generation_replica: Mapping[str, str],
    publications: Mapping[tuple[str, int], Publication],
) -> tuple[Arrow | Mark, str]:
    kind = _text(record.get("type"), "unknown")
    stream = _text(record.get("stream_id"))
    generation = _text(record.get("generation"))
    replica = _optional_str(record.get("replica"))
    session = _optional_str(record.get("session"))
    if kind == "Emitted" and replica is not None:
        what = _text(record.get("kind"))
        outcome = _text(record.get("outcome"))
        seq = _int_or_none(record.get("seq"))
        if outcome == "ok":
            label = f"{what} seq {seq}"
            reach = _reach_words(None if seq is None else publications.get((generation, seq)))
            words = (
                f"generator {generation} on {replica} emits a {what}; Redis logs and "
                f"publishes it as seq {seq} of stream {stream}{reach}"
            )
            return Arrow(replica, "redis", label, "emit"), words
        answer = "refused" if outcome == "fail" else "unknown (the reply was lost)"
        words = f"generator {generation} on {replica} tries to emit a {what}: {answer}"
        return Arrow(replica, "redis", f"{what}: {outcome}", "emit-failed"), words
    if kind == "Delivered" and session is not None:
        event = record.get("event")
        label, part, style = _event_words(event if isinstance(event, Mapping) else {})
        source = sessions.replica(session)
        opened = sessions.opened.get(session)
        event_generation = event.get("generation") if isinstance(event, Mapping) else None
        if opened is not None and event_generation != opened.get("generation"):
            part += f" of another turn, {_text(event_generation)}"
        if source is None:
            words = f"session {session} receives {part} (its replica is not recorded)"
            return Mark(session, label, style), words
        return Arrow(
            source, session, label, style
        ), f"{source} delivers {part} to session {session}"
    if kind == "SessionOpened" and session is not None:
        mode = _text(record.get("mode"))
        first_seq = _text(record.get("first_seq"))
        words = (
            f"{_text(record.get('user_id'))} opens session {session}: {mode} to stream "
            f"{stream} (turn {generation}) on {_text(replica)}; owed every event from seq "
            f"{first_seq}"
        )
        snapshot = record.get("snapshot_seqs")
        if isinstance(snapshot, list) and snapshot:
            words += f", after a snapshot holding seqs {', '.join(str(s) for s in snapshot)}"
        owner = record.get("owner_id")
        if owner is not None and owner != record.get("user_id"):
            words += f" (the stream belongs to {_text(owner)})"
        return Mark(session, f"{mode} via {_text(replica)}, from seq {first_seq}", "open"), words
    if kind == "SessionClosed" and session is not None:
        reason = _text(record.get("reason"))
        why = {
            "terminal": "after its terminal",
            "detached": "the client left on purpose",
            "replica_crashed": "its replica crashed",
            "stream_failed": "the stream failed on its replica (resume elsewhere)",
            "closed": "the stream ended without a terminal",
        }.get(reason, reason)
        return Mark(session, f"closed: {reason}", "close"), f"session {session} ends: {why}"
    if kind == "GenerationStarted" and replica is not None:
        words = (
            f"{_text(record.get('user_id'))} starts turn {generation} of stream {stream} on "
            f"{replica}; its first event will be seq {_text(record.get('start_seq'))}"
        )
        return Mark(replica, f"turn {generation} of {stream}", "start"), words
    if kind == "GeneratorStopped":
        where = generation_replica.get(generation)
        words = f"generator {generation} of stream {stream} sees its abort and stops emitting"
        return Mark(where, "generator stops", "stop"), words
    if kind == "AbortRequested" and replica is not None:
        acknowledged = bool(record.get("acknowledged"))
        answer = "acknowledged (aborted)" if acknowledged else "not acknowledged"
        words = (
            f"{_text(record.get('user_id'))} asks {replica} to abort stream {stream} "
            f"(turn {generation}): {answer}, outcome {_text(record.get('outcome'))}"
        )
        return Mark(replica, f"abort {stream}: {answer}", "abort"), words
    if kind == "BoundExceeded" and replica is not None:
        resource = _text(record.get("resource"))
        value, limit = _text(record.get("value")), _text(record.get("limit"))
        words = (
            f"{replica} holds {value} in its {resource} for stream {stream}, over the "
            f"limit of {limit}"
        )
        return Mark(replica, f"{resource}: {value} > {limit}", "bound"), words
    if kind == "WritesLost":
        words = (
            f"the failover lost {_text(record.get('writes'))} writes the replica had not received"
        )
        return Mark("redis", "writes lost", "bound"), words
    if kind == "Healed":
        words = "faults stop and every timeout passes: from here on, liveness is judged"
        return Mark(None, "healed", "healed"), words
    words = f"{kind} record: {json.dumps(record, sort_keys=True, default=str)}"
    return Mark(None, kind, "unknown"), words
