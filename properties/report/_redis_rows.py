"""The timeline's Redis rows: which typed records of the simulated Redis become rows,
where they go among the history, and the first anomaly's mechanism as they show it
(see :mod:`._layout`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streamcheck.properties.report._history_rows import _Sessions
from streamcheck.properties.report._shapes import (
    Anomaly,
    Arrow,
    Mark,
)
from streamcheck.properties.report._words import (
    _float_or_none,
    _message,
    _natural_key,
    _plural,
    _seq_of_entry,
    _seqs_words,
    _text,
    replica_of_client,
    stream_of_key,
)
from streamcheck.properties.sim import (
    CommandExecuted,
    ConnectionClosed,
    FailedOver,
    LogRead,
    MessageDelivered,
    MessageDropped,
    Publication,
    PubSubRelayed,
    SubscribeAcknowledged,
    SubscribeExecuted,
    TraceRecord,
    TraceRecordError,
    record_from_json,
)

# -- Redis records ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _RedisStep:
    """A Redis record that becomes a row: where it sits in ``redis_records``."""

    number: int
    record: TraceRecord
    figure: Arrow | Mark
    words: str
    style: str


@dataclass(frozen=True, slots=True)
class _Attached:
    """A session that opened on a replica, at a history position."""

    session: str
    replica: str
    stream: str
    position: int


def _attached(sessions: _Sessions) -> list[_Attached]:
    found: list[_Attached] = []
    for name, record in sessions.opened.items():
        replica, stream = record.get("replica"), record.get("stream_id")
        if isinstance(replica, str) and isinstance(stream, str):
            found.append(_Attached(name, replica, stream, sessions.opened_at[name]))
    return found


def _parse_records(raw: object) -> tuple[list[tuple[int, TraceRecord]], int]:
    """The file's Redis records that parse, with their place; and how many did not."""
    parsed: list[tuple[int, TraceRecord]] = []
    bad = 0
    if not isinstance(raw, list):
        return parsed, bad
    for number, item in enumerate(raw):
        try:
            parsed.append((number, record_from_json(item)))
        except TraceRecordError:
            bad += 1
    return parsed, bad


def _connection_words(connection: str) -> str:
    kind = connection.rsplit("/", 1)[-1][:1]
    what = {"s": "pub/sub connection", "c": "command connection"}.get(kind, "connection")
    return f"{replica_of_client(connection)}'s {what} {connection}"


def _redis_steps(
    records: Sequence[tuple[int, TraceRecord]], attached: Sequence[_Attached] = ()
) -> list[_RedisStep]:
    """The Redis records a reader needs to see the mechanism, drawn and in words. A
    failover drops every connection; those closes are folded into its own row.

    A replica's first log read of a stream after a session attached there (by the
    records' positions) is that session's catch-up; later ones are repairs."""
    steps: list[_RedisStep] = []
    waiting = list(attached)  # sessions whose catch-up read has not been seen yet
    i = 0
    while i < len(records):
        number, record = records[i]
        i += 1
        if isinstance(record, SubscribeExecuted):
            replica = replica_of_client(record.client)
            stream = stream_of_key(record.channel) or record.channel
            words = (
                f"Redis runs {replica}'s SUBSCRIBE to stream {stream}'s channel "
                f"({record.connection}): from now on a publish reaches {replica}, which "
                "learns it only when the acknowledgement arrives"
            )
            figure: Arrow | Mark = Arrow(replica, "redis", f"SUBSCRIBE {stream}", "subscribe")
            steps.append(_RedisStep(number, record, figure, words, "subscribe"))
        elif isinstance(record, SubscribeAcknowledged):
            replica = replica_of_client(record.client)
            stream = stream_of_key(record.channel) or record.channel
            words = (
                f"the acknowledgement of {replica}'s SUBSCRIBE to stream {stream}'s channel "
                f"arrives: {replica} now knows it hears every later publish"
            )
            figure = Arrow("redis", replica, f"SUBSCRIBE {stream} ack", "ack")
            steps.append(_RedisStep(number, record, figure, words, "ack"))
        elif isinstance(record, LogRead):
            replica = replica_of_client(record.client)
            stream = stream_of_key(record.key) or record.key
            seqs = [s for s in (_seq_of_entry(e) for e in record.ids) if s is not None]
            start = _seq_of_entry(record.start)
            origin = f"from seq {start}" if start is not None else f"from {record.start}"
            returned = f"Redis returns {_seqs_words(seqs)}"
            entries = "1 entry" if len(record.ids) == 1 else f"{len(record.ids)} entries"
            catching_up = [
                a
                for a in waiting
                if (a.replica, a.stream) == (replica, stream)
                and record.position is not None
                and a.position < record.position
            ]
            if catching_up:
                for session in catching_up:
                    waiting.remove(session)
                names = ", ".join(a.session for a in catching_up)
                words = (
                    f"catch-up: {replica} reads stream {stream}'s log {origin} for session "
                    f"{names}, which attached there; {returned}"
                )
                label = f"catch-up: {entries}"
            elif record.position is not None and attached:
                words = f"repair: {replica} reads stream {stream}'s log {origin}; {returned}"
                label = f"log repair: {entries}"
            else:
                words = f"{replica} reads stream {stream}'s log {origin}; {returned}"
                label = f"log read: {entries}"
            figure = Arrow(replica, "redis", label, "log-read")
            steps.append(_RedisStep(number, record, figure, words, "log-read"))
        elif isinstance(record, MessageDropped):
            message = _message(record.message)
            stream = stream_of_key(record.channel) or record.channel
            words = (
                f"Redis loses the pub/sub message {message.words()} of stream {stream} to "
                f"{_connection_words(record.connection)}"
            )
            figure = Mark("redis", "message dropped", "redis-event")
            steps.append(_RedisStep(number, record, figure, words, "drop"))
        elif isinstance(record, CommandExecuted) and record.published:
            replica = replica_of_client(record.client)
            parts: list[str] = []
            labels: list[str] = []
            for publication in record.published:
                message = _message(publication.message)
                stream = stream_of_key(publication.channel) or publication.channel
                heard = sorted(
                    {replica_of_client(r) for r in publication.receivers}, key=_natural_key
                )
                reach = f"it reaches {', '.join(heard)}" if heard else "no replica hears it"
                parts.append(f"{message.words()} on stream {stream}'s channel: {reach}")
                labels.append(
                    f"publish {message.type} seq {_text(message.seq)}"
                    if message.type is not None
                    else "publish"
                )
            what = f"{record.script} script" if record.script is not None else record.command
            words = f"Redis runs {replica}'s {what}, which publishes {'; '.join(parts)}"
            figure = Mark("redis", ", ".join(labels), "publish")
            steps.append(_RedisStep(number, record, figure, words, "publish"))
        elif isinstance(record, MessageDelivered) and record.discarded:
            continue  # the client no longer wanted it: nothing to see
        elif isinstance(record, FailedOver):
            dropped: list[str] = []
            lost = 0
            while i < len(records):
                closed = records[i][1]
                if not (
                    isinstance(closed, ConnectionClosed) and closed.reason.endswith("failover")
                ):
                    break
                dropped.append(closed.connection)
                lost += len(closed.lost)
                i += 1
            words = (
                "failover: the standby is promoted "
                f"({_plural(record.writes_lost, 'unreplicated write')} lost)"
            )
            if dropped:
                words += f"; every connection is dropped: {', '.join(dropped)}"
            if lost:
                words += f"; {_plural(lost, 'pub/sub message')} in flight are lost"
            steps.append(
                _RedisStep(
                    number, record, Mark("redis", "failover", "redis-event"), words, "failover"
                )
            )
        elif isinstance(record, ConnectionClosed) and record.fault:
            words = (
                f"{_connection_words(record.connection)} is {record.reason}: "
                f"{_plural(len(record.failed), 'command')} failed, "
                f"{_plural(len(record.lost), 'pub/sub message')} lost"
            )
            figure = Mark("redis", "connection lost", "redis-event")
            steps.append(_RedisStep(number, record, figure, words, "close"))
        elif isinstance(record, PubSubRelayed):
            words = "from here on pub/sub is relayed by other nodes (Redis Cluster)"
            figure = Mark("redis", "pub/sub relayed", "redis-event")
            steps.append(_RedisStep(number, record, figure, words, "topology"))
    return steps


def _publications(
    records: Iterable[tuple[int, TraceRecord]],
) -> dict[tuple[str, int], Publication]:
    """The first publish of each (generation, seq), from what the commands published."""
    found: dict[tuple[str, int], Publication] = {}
    for _number, record in records:
        if not isinstance(record, CommandExecuted):
            continue
        for publication in record.published:
            message = _message(publication.message)
            if message.generation is not None and message.seq is not None:
                found.setdefault((message.generation, message.seq), publication)
    return found


def _place(steps: Sequence[_RedisStep], history: Sequence[Mapping[str, Any]]) -> list[int]:
    """Before which history position each step is drawn (``len(history)``: at the end).

    A record's ``position`` says exactly; without one a step goes after every record
    of an earlier or equal time. Steps keep their order either way."""
    times = [_float_or_none(r.get("time")) for r in history]
    placed: list[int] = []
    floor = 0
    for step in steps:
        position = step.record.position
        if position is None:
            position = 0
            for index, t in enumerate(times):
                if t is not None and round(t, 3) <= round(step.record.time, 3):
                    position = index + 1
        position = max(floor, min(position, len(history)))
        floor = position
        placed.append(position)
    return placed


# -- the first anomaly's mechanism ----------------------------------------------------------


#: Anomaly kinds whose ``seq`` is one the session did not get.
_MISSED = frozenset({"lost", "skipped_without_gap", "terminal_before_chunks", "terminal_missing"})


def _mechanism(
    first: Anomaly | None,
    sessions: _Sessions,
    records: Sequence[tuple[int, TraceRecord]],
    record_row: Mapping[int, str],
    history_row: Mapping[int, str],
) -> list[tuple[str, str | None]]:
    """What the Redis records say about the first anomaly's seq: for a seq its session
    missed (:data:`_MISSED`), why it did not arrive; for any other kind, only which
    replicas the publish reached (no inference)."""
    if first is None or first.session is None or first.seq is None or first.generation is None:
        return []
    replica = sessions.replica(first.session)
    if replica is None or not records:
        return []
    seq, generation = first.seq, first.generation
    publish_at: int | None = None
    publication: Publication | None = None
    for place, (_number, record) in enumerate(records):
        if isinstance(record, CommandExecuted):
            for candidate in record.published:
                message = _message(candidate.message)
                if message.carries(generation, seq):
                    publish_at, publication = place, candidate
                    break
        if publication is not None:
            break
    if publish_at is None or publication is None:
        return [
            (
                f"The Redis trace kept here shows no publish of seq {seq} of {generation} "
                "(it may be older than the trace's last steps).",
                None,
            )
        ]
    said: list[tuple[str, str | None]] = []
    publish_number = records[publish_at][0]
    opened_at = sessions.opened_at.get(first.session)
    reached = [r for r in publication.receivers if replica_of_client(r) == replica]
    if first.kind not in _MISSED:
        heard = sorted({replica_of_client(r) for r in publication.receivers}, key=_natural_key)
        return [
            (
                f"Seq {seq} of {generation} was published live to "
                f"{', '.join(heard) if heard else 'no replica'}.",
                record_row.get(publish_number),
            )
        ]
    if not reached:
        subscribed = next(
            (
                (place, record)
                for place, (_n, record) in enumerate(records)
                if place > publish_at
                and isinstance(record, SubscribeExecuted)
                and replica_of_client(record.client) == replica
                and record.channel == publication.channel
            ),
            None,
        )
        sentence = (
            f"Seq {seq} was published while no connection of {replica}, the replica of "
            f"session {first.session}, was subscribed to the channel, so Redis never sent "
            "it there."
        )
        said.append((sentence, record_row.get(publish_number)))
        if subscribed is not None:
            place, record = subscribed
            number = records[place][0]
            ack = next(
                (
                    records[later][0]
                    for later in range(place + 1, len(records))
                    if isinstance(records[later][1], SubscribeAcknowledged)
                    and getattr(records[later][1], "connection", None)
                    == getattr(record, "connection", None)
                ),
                None,
            )
            sentence = f"{replica}'s SUBSCRIBE ran only after that publish" + (
                ", and its acknowledgement arrived later still"
                if ack is not None
                else ", and its acknowledgement never arrived"
            )
            if opened_at is not None:
                sentence += (
                    f"; yet session {first.session} was opened on {replica} as live at "
                    f"record {opened_at}, before the acknowledgement"
                )
            said.append((sentence + ".", record_row.get(ack if ack is not None else number)))
    else:
        dropped = next(
            (
                number
                for number, record in records
                if isinstance(record, MessageDropped)
                and record.connection in reached
                and _message(record.message).carries(generation, seq)
            ),
            None,
        )
        if dropped is not None:
            said.append(
                (
                    f"Seq {seq} was published to {replica}, and Redis dropped the message on "
                    f"the way (at-most-once pub/sub).",
                    record_row.get(dropped),
                )
            )
        else:
            said.append(
                (
                    f"Seq {seq} was published to {replica} and the trace shows no loss: "
                    f"{replica} had it, but session {first.session} was not given it.",
                    record_row.get(publish_number),
                )
            )
    reads = [
        (number, record)
        for place, (number, record) in enumerate(records)
        if place > publish_at
        and isinstance(record, LogRead)
        and replica_of_client(record.client) == replica
        and stream_of_key(record.key) == first.stream
    ]
    covering = [
        (number, record)
        for number, record in reads
        if any(_seq_of_entry(entry) == seq for entry in record.ids)
    ]
    if covering:
        said.append(
            (
                f"{replica} read the log afterwards and got seq {seq} back, yet did not "
                f"deliver it to session {first.session}.",
                record_row.get(covering[0][0]),
            )
        )
    elif reads:
        said.append(
            (
                f"{replica} read the log afterwards ({_plural(len(reads), 'read')}), but "
                f"none returned seq {seq}.",
                record_row.get(reads[0][0]),
            )
        )
    else:
        said.append(
            (
                f"{replica} never read stream {first.stream}'s log after that publish: a "
                f"catch-up from the log would have recovered seq {seq}.",
                None,
            )
        )
    if first.first_bad is not None and first.first_bad in history_row:
        said.append(
            (
                f"The checker's first evidence is record {first.first_bad}.",
                history_row[first.first_bad],
            )
        )
    return said
