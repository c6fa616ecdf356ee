"""The Redis bus: LibreChat's channel and key layout over any :class:`RedisLike`.

One pub/sub connection per replica carries every stream channel. Subscriptions are
reference counted; the first ``acquire_channel`` sends SUBSCRIBE and everyone waits
for the acknowledgement; if it fails, the next caller retries. The listener rebuilds
the connection with backoff when it dies and tells the sink which streams were
restored, so their actors re-read the chunk log: pub/sub is the fast path, the log is
the truth.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from streamcheck.impl._log import LogRow, LostWrites
from streamcheck.impl.redis import (
    Keys,
    PubSubMessage,
    RedisConnectionError,
    RedisLike,
    Subscriber,
    SubscriptionsRestored,
)
from streamcheck.impl.redis._chunklog import entry_id
from streamcheck.impl.redis._protocol import ScriptArg
from streamcheck.impl.transport._bus import (
    EventKind,
    OutgoingEvent,
    Published,
    PublishOutcome,
    PublishRefused,
    Sink,
)
from streamcheck.impl.transport._envelope import (
    MAX_SEQ,
    MalformedPayload,
    decode,
    encode_abort,
    encode_body,
    encode_split,
    envelope_parts,
)
from streamcheck.impl.transport._lua import (
    ABORT_CLAIMED,
    CLAIM_ABORT,
    MARK_LOST,
    PUBLISH,
    PUBLISH_BATCH,
)
from streamcheck.model import Chunk, Done, Failure, JSONValue

logger = logging.getLogger(__name__)

#: Counter TTL (LibreChat #14411): sliding, extend-only, 24 h.
COUNTER_TTL_S = 86_400
#: When a stream's counter is first advanced on a Redis that restarted or failed over,
#: the script jumps to the server's clock in ms, so that whatever the old server handed
#: out in its replication lag is skipped (and logged as lost) without a witness. This
#: many seqs are skipped instead if the counter is already past that clock.
FAILOVER_SKIP = 10_000
#: Backoff between reconnect attempts of the pub/sub connection.
RECONNECT_BACKOFF_MIN_S = 0.05
RECONNECT_BACKOFF_MAX_S = 2.0

_REFUSAL_BY_CODE = {
    -1: PublishRefused.NO_JOB,
    -2: PublishRefused.OTHER_GENERATION,
    -3: PublishRefused.JOB_ENDED,
    -4: PublishRefused.TERMINAL_ALREADY_SENT,
    -5: PublishRefused.ABORTED,
}


@dataclass(slots=True)
class _Channel:
    refs: int = 0
    acked: bool = False
    in_flight: trio.Event | None = None


@dataclass(frozen=True, slots=True)
class RedisBusStats:
    published: int
    refused: int
    counter_regressions: int
    reconnects: int
    channels: int


@dataclass(slots=True)
class _Counters:
    published: int = 0
    refused: int = 0
    regressions: int = 0
    reconnects: int = 0


class RedisBus:
    def __init__(
        self,
        redis: RedisLike,
        *,
        keys: Keys | None = None,
        log_ttl_s: int = 1200,
        failover_skip: int = FAILOVER_SKIP,
    ) -> None:
        self._redis = redis
        self._keys = keys if keys is not None else Keys()
        self._log_ttl_s = log_ttl_s
        self._failover_skip = failover_skip
        self._sink: Sink | None = None
        self._channels: dict[str, _Channel] = {}
        self._subscriber: Subscriber | None = None
        self._connected = trio.Event()
        self._counters = _Counters()

    def attach_sink(self, sink: Sink) -> None:
        self._sink = sink

    # -- publishing -------------------------------------------------------------

    async def publish(
        self,
        stream_id: str,
        *,
        generation: str,
        kind: EventKind,
        body: JSONValue,
        floor: int,
        encoded_body: str | None = None,
        by_abort: bool = False,
    ) -> PublishOutcome:
        reply = await self._redis.run_script(
            PUBLISH,
            keys=self._publish_keys(stream_id),
            args=self._publish_args(
                stream_id,
                generation=generation,
                kind=kind,
                body=body,
                floor=floor,
                encoded_body=encoded_body,
                by_abort=by_abort,
            ),
        )
        return self._publish_outcome(stream_id, reply)

    async def publish_batch(
        self, stream_id: str, *, generation: str, events: Sequence[OutgoingEvent], floor: int
    ) -> list[PublishOutcome]:
        args: list[ScriptArg] = [
            generation,
            Keys.channel(stream_id),
            floor,
            self._log_ttl_s,
            COUNTER_TTL_S,
            self._failover_skip,
        ]
        parts: dict[EventKind, tuple[str, str]] = {}
        for event in events:
            kind = event.kind
            if (envelope := parts.get(kind)) is None:
                envelope = parts[kind] = envelope_parts(kind.value, generation)
            prefix, suffix_head = envelope
            payload = str(event.body) if kind is EventKind.ERROR else event.encoded
            args += [
                kind.value,
                "1" if event.by_abort else "0",
                payload,
                prefix,
                f"{suffix_head}{event.encoded}}}",
            ]
        reply = await self._redis.run_script(
            PUBLISH_BATCH, keys=self._publish_keys(stream_id), args=args
        )
        if not isinstance(reply, list) or len(reply) != len(events) + 1:
            raise RedisConnectionError(f"unexpected publish_batch script reply {reply!r}")
        regressed = int(reply[0])
        outcomes: list[PublishOutcome] = []
        for code in reply[1:]:
            # The counter moved (if at all) before the first event that went out.
            outcomes.append(self._publish_outcome(stream_id, [code, regressed]))
            if int(code) >= 0:
                regressed = 0
        return outcomes

    async def claim_abort(self, stream_id: str, generation: str) -> PublishRefused | None:
        reply = await self._redis.run_script(
            CLAIM_ABORT, keys=[self._keys.job(stream_id)], args=[generation]
        )
        code = _script_int(reply, "claim_abort")
        return None if code == 0 else _REFUSAL_BY_CODE[code]

    def _publish_keys(self, stream_id: str) -> list[str]:
        """KEYS of the publish script (impl/transport/_lua.py)."""
        return [
            self._keys.seq(stream_id),
            self._keys.chunks(stream_id),
            self._keys.job(stream_id),
            self._keys.seq_epoch(stream_id),
        ]

    def _publish_args(
        self,
        stream_id: str,
        *,
        generation: str,
        kind: EventKind,
        body: JSONValue,
        floor: int,
        encoded_body: str | None,
        by_abort: bool = False,
    ) -> list[ScriptArg]:
        """ARGV of the publish script: the event, its envelope split around the seq
        (which only the script knows), the floor and the TTLs."""
        encoded = encoded_body if encoded_body is not None else encode_body(body)
        prefix, suffix = encode_split(kind.value, generation, body, encoded_body=encoded)
        return [
            generation,
            kind.value,
            prefix,
            suffix,
            Keys.channel(stream_id),
            floor,
            str(body) if kind is EventKind.ERROR else encoded,
            self._log_ttl_s,
            COUNTER_TTL_S,
            self._failover_skip,
            "1" if by_abort else "0",
        ]

    def _publish_outcome(self, stream_id: str, reply: object) -> PublishOutcome:
        """The publish script's reply: the seq, or why the fence refused the event."""
        if not isinstance(reply, list) or len(reply) != 2:
            raise RedisConnectionError(f"unexpected publish script reply {reply!r}")
        code, regressed = int(reply[0]), int(reply[1])
        if code < 0:
            self._counters.refused += 1
            return _REFUSAL_BY_CODE[code]
        self._counters.published += 1
        if regressed:
            self._counters.regressions += 1
            logger.warning("stream %s: Redis counter went backwards; pushed to %d", stream_id, code)
        return Published(seq=code, counter_regressed=bool(regressed))

    async def publish_abort(self, stream_id: str, generation: str) -> None:
        await self._redis.publish(Keys.channel(stream_id), encode_abort(generation))

    async def abort_claimed(self, stream_id: str, generation: str) -> bool:
        reply = await self._redis.run_script(
            ABORT_CLAIMED, keys=[self._keys.job(stream_id)], args=[generation]
        )
        return _script_int(reply, "abort_claimed") == 1

    async def mark_lost(self, stream_id: str, *, floor: int) -> LostWrites | None:
        reply = await self._redis.run_script(
            MARK_LOST,
            keys=[
                self._keys.seq(stream_id),
                self._keys.chunks(stream_id),
                self._keys.seq_epoch(stream_id),
            ],
            args=[floor, self._failover_skip, self._log_ttl_s, COUNTER_TTL_S],
        )
        if not isinstance(reply, list) or len(reply) != 2:
            raise RedisConnectionError(f"unexpected mark_lost script reply {reply!r}")
        first, last = int(reply[0]), int(reply[1])
        if first < 0:
            return None
        self._counters.regressions += 1
        logger.warning("stream %s: Redis lost seqs %d..%d; counter pushed", stream_id, first, last)
        return LostWrites(first_seq=first, last_seq=last)

    async def read_log(self, stream_id: str, *, from_seq: int, count: int) -> list[LogRow]:
        rows = await self._redis.xrange(
            self._keys.chunks(stream_id), entry_id(from_seq), "+", count
        )
        events: list[LogRow] = []
        for _entry, fields in rows:
            event = _decode_log_row(fields)
            if event is None:
                logger.warning("stream %s: unreadable chunk-log row %r", stream_id, fields)
                continue
            events.append(event)
        return events

    # -- subscriptions ----------------------------------------------------------

    async def acquire_channel(self, stream_id: str) -> None:
        """Hold the stream's channel; returns once Redis acknowledged SUBSCRIBE.

        Cancelled or failed calls leave the reference count as it was.
        """
        channel = self._channels.setdefault(stream_id, _Channel())
        channel.refs += 1
        try:
            await self._ensure_acked(stream_id, channel)
        except BaseException:
            await self._drop_ref(stream_id, channel)
            raise

    async def release_channel(self, stream_id: str) -> None:
        channel = self._channels.get(stream_id)
        if channel is not None:
            await self._drop_ref(stream_id, channel)

    async def _ensure_acked(self, stream_id: str, channel: _Channel) -> None:
        while not channel.acked:
            if channel.in_flight is not None:
                await channel.in_flight.wait()
                continue
            # Claim the subscription before the first checkpoint: concurrent callers
            # must wait for this one's acknowledgement, not race past it (a test caught
            # two callers returning before the ack).
            done = trio.Event()
            channel.in_flight = done
            try:
                await self._connected.wait()
                subscriber = self._subscriber
                if subscriber is None:
                    continue
                await subscriber.subscribe(Keys.channel(stream_id))
                channel.acked = True
            finally:
                channel.in_flight = None
                done.set()

    async def _drop_ref(self, stream_id: str, channel: _Channel) -> None:
        channel.refs -= 1
        if channel.refs > 0 or self._channels.get(stream_id) is not channel:
            return
        del self._channels[stream_id]
        if channel.acked and self._subscriber is not None:
            try:
                await self._subscriber.unsubscribe(Keys.channel(stream_id))
            except RedisConnectionError as exc:
                logger.info("stream %s: unsubscribe failed (%s); connection resets", stream_id, exc)

    def subscribed_channels(self) -> frozenset[str]:
        return frozenset(s for s, c in self._channels.items() if c.acked)

    # -- listener ---------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the pub/sub connection until cancelled, rebuilding it when it dies."""
        backoff = RECONNECT_BACKOFF_MIN_S
        started = False
        while True:
            try:
                async with self._redis.subscriber() as subscriber:
                    restored = await self._resubscribe(subscriber)
                    self._subscriber = subscriber
                    self._connected.set()
                    if not started:
                        task_status.started()
                        started = True
                    backoff = RECONNECT_BACKOFF_MIN_S
                    self._notify_restored(restored)
                    await self._listen(subscriber)
            except RedisConnectionError as exc:
                logger.warning("pub/sub connection lost (%s); reconnecting", exc)
            self._subscriber = None
            if self._connected.is_set():
                # Replace only a set event: tasks may be waiting on an unset one, and a
                # fresh event would orphan them.
                self._connected = trio.Event()
            for channel in self._channels.values():
                channel.acked = False
            self._counters.reconnects += 1
            if not started:
                task_status.started()
                started = True
            await trio.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_BACKOFF_MAX_S)

    async def _resubscribe(self, subscriber: Subscriber) -> list[str]:
        restored: list[str] = []
        for stream_id, channel in list(self._channels.items()):
            if channel.refs > 0 and not channel.acked:
                await subscriber.subscribe(Keys.channel(stream_id))
                channel.acked = True
                restored.append(stream_id)
        return restored

    async def _listen(self, subscriber: Subscriber) -> None:
        while True:
            event = await subscriber.receive()
            if isinstance(event, SubscriptionsRestored):
                ids = [Keys.stream_id_of_channel(c) for c in event.channels]
                self._notify_restored([i for i in ids if i is not None])
                continue
            self._dispatch(event)

    def _dispatch(self, message: PubSubMessage) -> None:
        sink = self._sink
        if sink is None:
            return
        stream_id = Keys.stream_id_of_channel(message.channel)
        if stream_id is None:
            sink.malformed(None, f"message on foreign channel {message.channel!r}")
            return
        if message.data.startswith("[") and not sink.reads(stream_id):
            # A batch holds sequenced events only, and nobody reads them here (the
            # producer's replica hears its own): not worth decoding.
            return
        try:
            incoming = decode(message.data)
        except MalformedPayload as exc:
            sink.malformed(stream_id, exc.reason)
            return
        if isinstance(incoming, tuple):  # a coalesced publish's batch, decoded once
            for event in incoming:
                sink.deliver(stream_id, event)
        else:
            sink.deliver(stream_id, incoming)

    def _notify_restored(self, stream_ids: list[str]) -> None:
        if self._sink is None:
            return
        for stream_id in stream_ids:
            self._sink.restored(stream_id)

    def statistics(self) -> RedisBusStats:
        return RedisBusStats(
            published=self._counters.published,
            refused=self._counters.refused,
            counter_regressions=self._counters.regressions,
            reconnects=self._counters.reconnects,
            channels=len(self._channels),
        )


def _script_int(reply: object, script: str) -> int:
    if isinstance(reply, bool) or not isinstance(reply, int):
        raise RedisConnectionError(f"unexpected {script} script reply {reply!r}")
    return reply


def _decode_log_row(fields: dict[str, str]) -> LogRow | None:
    try:
        seq = int(fields["seq"])
        if not 0 <= seq <= MAX_SEQ:
            return None
        kind = fields["type"]
        if kind == "lost":
            first = int(fields["first"])
            possibly = int(fields["possibly"]) if "possibly" in fields else None
            if not 0 <= first <= seq or (possibly is not None and not first <= possibly <= seq):
                return None
            return LostWrites(first_seq=first, last_seq=seq, possibly_from=possibly)
        generation = fields["gen"]
        if kind == "error":
            return Failure(seq=seq, generation=generation, message=fields.get("error", ""))
        data = json.loads(fields.get("event", "null"))
    except (KeyError, ValueError):
        return None
    if kind == "chunk":
        return Chunk(seq=seq, generation=generation, data=data)
    if kind == "done":
        return Done(seq=seq, generation=generation, data=data)
    return None
