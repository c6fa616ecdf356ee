"""Log reads that won a race with pub/sub: what the simulated Redis's trace says about
the entries a replica read from a chunk log.

A reader takes an event from the log instead of pub/sub in two ways. Pub/sub lost it
or never sent it, or the replica lost it on the way in: the slow path, which needs a
cause. Or the read simply went first: the live copy had not reached the replica when
the replica decided to read (an idle probe fired just as the generator emitted; or the
message arrived while the replica's stream actor was busy with another reader's probe,
and waited behind it), and arrives afterwards as a duplicate. The replica sees the same
rows either way; the trace tells them apart by time. The simulated clock moves only
between decisions, and a clock move with anything in flight is a recorded fault
(``FaultKind.DELAY``); so a live copy delivered before the clock reached the time the
read was sent found a replica with nothing left to wait for, which took it in at once.
Delivered at that time or later, or not yet, it was still on its way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from streamcheck.impl import Keys
from streamcheck.properties.sim import CommandExecuted, LogRead, MessageDelivered, TraceRecord

#: The entry id suffix of an event in the chunk log (``<seq>-1``; ``-2`` marks a row
#: that records lost writes).
_EVENT_ENTRY = "1"


def raced_log_entries(records: Sequence[TraceRecord], *, since: int, client: str) -> int:
    """How many entries returned by ``client``'s log reads recorded from ``records[since]``
    on had a live copy on its way to ``client`` when the read was sent: published to one
    of its pub/sub connections before the read ran, and not delivered there before the
    clock reached the time the read was sent.

    A read of a reader's catch-up counts too (the trace does not say whose a read is),
    so the figure is an upper bound for the reads of repairs and idle probes."""
    reads = [
        (j, record)
        for j, record in enumerate(records[since:], since)
        if isinstance(record, LogRead)
        and record.client == client
        and record.sent is not None
        and record.ids
    ]
    if not reads:
        return 0
    prefix = f"{client}/"
    #: (channel, seq) -> [(record index, connection, message)] of publishes to client.
    published: dict[tuple[str, int], list[tuple[int, str, str]]] = {}
    #: (connection, channel, message) -> (record index, time) of each delivery of it.
    delivered: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
    for j, record in enumerate(records[: reads[-1][0]]):
        if isinstance(record, CommandExecuted):
            for publication in record.published:
                seq = _message_seq(publication.message)
                if seq is None:
                    continue
                for connection in publication.receivers:
                    if connection.startswith(prefix):
                        published.setdefault((publication.channel, seq), []).append(
                            (j, connection, publication.message)
                        )
        elif isinstance(record, MessageDelivered) and record.client == client:
            key = (record.connection, record.channel, record.message)
            delivered.setdefault(key, []).append((j, record.time))
    raced = 0
    for j, read in reads:
        channel = _channel_of(read.key)
        sent = read.sent
        assert sent is not None
        for entry in read.ids:
            seq = _entry_seq(entry)
            if seq is None or channel is None:
                continue
            for at, connection, message in published.get((channel, seq), ()):
                arrivals = delivered.get((connection, channel, message), ())
                arrived = next((time for index, time in arrivals if index > at), None)
                if at < j and (arrived is None or arrived >= sent):
                    raced += 1
                    break
    return raced


def _channel_of(log_key: str) -> str | None:
    """The pub/sub channel of the stream whose chunk log is ``log_key``."""
    start, end = log_key.find("{"), log_key.find("}")
    return Keys.channel(log_key[start + 1 : end]) if 0 <= start < end else None


def _entry_seq(entry_id: str) -> int | None:
    seq, _, kind = entry_id.partition("-")
    return int(seq) if kind == _EVENT_ENTRY and seq.isdigit() else None


def _message_seq(message: str) -> int | None:
    """The seq of a sequenced event's envelope (``None``: an abort signal, or not an
    envelope at all)."""
    try:
        envelope = json.loads(message)
    except ValueError:
        return None
    seq = envelope.get("seq") if isinstance(envelope, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None
