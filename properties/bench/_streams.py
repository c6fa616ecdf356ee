"""Many concurrent streams from a producer replica to a reader replica, with accounting.

Shared by the latency and throughput benchmarks. Each stream has one generator task on
the producer replica and one client task on the reader replica. Every chunk carries
its index; the generator notes the time just before it calls ``emit_chunk`` and the
seq the call returned, and the client notes the time each chunk arrives and its seq.
From that: emit→deliver latency, and the chunks lost or duplicated, by seq.

With ``coalesced`` the generator queues its chunks with ``submit_chunk`` instead,
without awaiting each (the seq comes from the chunk's acknowledgement, read once its
``done`` returned, which the actor answers after every chunk queued before it).

Pacing (``period``) is load generation: each generator sleeps until its next slot on
a fixed schedule. Nothing here sleeps to wait for something to happen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import trio

from streamcheck.impl import GenerationJobManager, QueuedChunk, Subscription
from streamcheck.impl.transport import Published
from streamcheck.model import Chunk, Done, Failure, Gap, JSONValue

USER = "bench-user"
#: 64 characters, the text size of LibreChat's measured delta (docs/benchmarks.md).
DELTA_TEXT = "Resumable streams keep every event in a log ordered by seq (64B)."[:64]


def delta(index: int, sent_at: float) -> JSONValue:
    """A LibreChat-shaped ``on_message_delta`` (about 170 bytes of JSON)."""
    return {
        "event": "on_message_delta",
        "data": {
            "id": "step_bench",
            "index": index,
            "delta": {"content": [{"type": "text", "text": DELTA_TEXT}]},
            "sentAt": round(sent_at, 6),
        },
    }


@dataclass(slots=True)
class _Stream:
    stream_id: str
    subscription: Subscription
    sent_at: list[float] = field(default_factory=list)
    emitted: set[int] = field(default_factory=set)
    refused: int = 0
    delivered: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    gap_seqs: int = 0
    terminal: bool = False
    first_emit_at: float | None = None
    last_emit_done_at: float | None = None
    last_chunk_at: float | None = None
    #: How far behind its schedule the generator got, at worst (paced runs only).
    max_lag: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Tally:
    streams: int
    emitted: int
    delivered: int
    lost: int
    duplicated: int
    #: Chunks the fence refused (the turn ended or was replaced): should never happen here.
    refused: int
    #: Seqs reported lost by a Gap event (also counted in ``lost`` if they were emitted).
    gap_seqs: int
    #: Streams whose client never saw the terminal.
    unterminated: int
    #: Emit→deliver latency of every delivered chunk, seconds, ascending.
    latencies: list[float]
    #: Wall seconds from the first emit to the last chunk delivered.
    seconds: float
    #: Wall seconds from the first emit's call to the last emit's return.
    emit_seconds: float
    max_lag: float


async def open_streams(
    producer: GenerationJobManager, reader: GenerationJobManager, stream_ids: list[str]
) -> list[_Stream]:
    """Start a turn per stream on ``producer`` and attach a client on ``reader``."""
    streams: list[_Stream] = []
    for stream_id in stream_ids:
        await producer.create_job(stream_id, USER)
        subscription = await reader.subscribe(stream_id, USER)
        streams.append(_Stream(stream_id, subscription))
    return streams


async def drive(
    producer: GenerationJobManager,
    streams: list[_Stream],
    *,
    events: int,
    period: float | None,
    drain_timeout: float,
    coalesced: bool = False,
) -> Tally:
    """Emit ``events`` chunks and a terminal per stream, all streams at once.

    With ``period`` each stream emits on its own fixed schedule (slots staggered across
    one period); without, each emits back to back, awaiting every emit (with
    ``coalesced``, queuing every emit without awaiting it). Clients still
    missing events ``drain_timeout`` seconds after the last emit are stopped, and what
    they miss counts as lost.
    """
    clients_scope = trio.CancelScope()

    async def clients() -> None:
        with clients_scope:
            async with trio.open_nursery() as nursery:
                for stream in streams:
                    nursery.start_soon(_consume, stream)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(clients)
        start = trio.current_time()
        async with trio.open_nursery() as generators:
            for index, stream in enumerate(streams):
                offset = (index * period / len(streams)) if period is not None else 0.0
                generators.start_soon(
                    _produce, producer, stream, events, period, start + offset, coalesced
                )
        clients_scope.deadline = trio.current_time() + drain_timeout
    return _tally(streams)


async def _produce(
    manager: GenerationJobManager,
    stream: _Stream,
    events: int,
    period: float | None,
    first_slot: float,
    coalesced: bool,
) -> None:
    queued: list[QueuedChunk] = []
    for index in range(events):
        if period is not None:
            slot = first_slot + index * period
            await trio.sleep_until(slot)
            stream.max_lag = max(stream.max_lag, trio.current_time() - slot)
        sent = time.perf_counter()
        stream.sent_at.append(sent)
        if stream.first_emit_at is None:
            stream.first_emit_at = sent
        if coalesced:
            queued.append(await manager.submit_chunk(stream.stream_id, delta(index, sent)))
        else:
            _note(stream, await manager.emit_chunk(stream.stream_id, delta(index, sent)))
        stream.last_emit_done_at = time.perf_counter()
    await manager.emit_done(stream.stream_id, {"final": True})
    for chunk in queued:  # every one answered before the done was
        _note(stream, chunk.result())
    await manager.complete_job(stream.stream_id)


def _note(stream: _Stream, published: Published | None) -> None:
    if isinstance(published, Published):
        stream.emitted.add(published.seq)
    else:
        stream.refused += 1


async def _consume(stream: _Stream) -> None:
    async with stream.subscription as subscription:
        async for event in subscription:
            if isinstance(event, Chunk):
                now = time.perf_counter()
                index = _index_of(event.data)
                if index is not None and index < len(stream.sent_at):
                    stream.latencies.append(now - stream.sent_at[index])
                stream.delivered.append(event.seq)
                stream.last_chunk_at = now
            elif isinstance(event, Gap):
                stream.gap_seqs += event.last_seq - event.first_seq + 1
            elif isinstance(event, Done | Failure):
                stream.terminal = True


def _index_of(data: JSONValue) -> int | None:
    if isinstance(data, dict) and isinstance(inner := data.get("data"), dict):
        index = inner.get("index")
        return index if isinstance(index, int) else None
    return None


def _tally(streams: list[_Stream]) -> Tally:
    firsts = [s.first_emit_at for s in streams if s.first_emit_at is not None]
    lasts = [s.last_chunk_at for s in streams if s.last_chunk_at is not None]
    emitted = [s.last_emit_done_at for s in streams if s.last_emit_done_at is not None]
    seconds = (max(lasts) - min(firsts)) if firsts and lasts else 0.0
    emit_seconds = (max(emitted) - min(firsts)) if firsts and emitted else 0.0
    return Tally(
        streams=len(streams),
        emitted=sum(len(s.emitted) for s in streams),
        delivered=sum(len(set(s.delivered)) for s in streams),
        lost=sum(len(s.emitted - set(s.delivered)) for s in streams),
        duplicated=sum(len(s.delivered) - len(set(s.delivered)) for s in streams),
        refused=sum(s.refused for s in streams),
        gap_seqs=sum(s.gap_seqs for s in streams),
        unterminated=sum(1 for s in streams if not s.terminal),
        latencies=sorted(x for s in streams for x in s.latencies),
        seconds=seconds,
        emit_seconds=emit_seconds,
        max_lag=max((s.max_lag for s in streams), default=0.0),
    )
