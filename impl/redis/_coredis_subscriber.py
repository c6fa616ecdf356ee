"""A :class:`~streamcheck.impl.redis.Subscriber` over one coredis pub/sub connection.

The problem: coredis reconnects a dropped pub/sub connection and re-subscribes every
channel by itself, silently. Whatever was published in between is gone, and the caller
must recover it from the chunk log, so it has to *know* a reconnection happened. The only
trace coredis leaves is that the server's subscribe acknowledgements come out of the
message iterator again (docs/redis.md). This class turns that
repeat into one :class:`SubscriptionsRestored` per reconnection.

Example::

    async with redis.subscriber() as sub:
        await sub.subscribe("stream:{abc}:events")   # returns once the server acked
        while True:
            match await sub.receive():
                case PubSubMessage(channel=ch, data=data): ...
                case SubscriptionsRestored(channels=chs): ...  # catch up from the log

Edge cases:

* Messages for a channel are delivered from the moment :meth:`subscribe` is called until
  :meth:`unsubscribe` is called; later ones still in flight are dropped (and counted).
* :meth:`unsubscribe` never fails for connection reasons: if the connection is down the
  channel is simply not re-subscribed when it comes back.
* A cancelled or failed :meth:`subscribe` leaves the channel unsubscribed as far as this
  object is concerned; a server-side subscription it may have created is ignored. If the
  server acknowledges that SUBSCRIBE late and the channel is subscribed again, the late ack
  can't be told from a reconnection's and one spurious :class:`SubscriptionsRestored` may
  follow. That is the safe mistake: the caller merely re-reads the log, whereas treating a
  real reconnection as a late ack would hide a loss.
* If coredis gives up reconnecting, the ``async with`` block is cancelled and exits with
  :class:`~streamcheck.impl.redis.RedisConnectionError`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Protocol, final

from coredis.patterns.pubsub import BasePubSub
from coredis.response.types import PubSubMessage as CoredisMessage

from streamcheck.impl.redis._coredis_support import describe, is_connection_error
from streamcheck.impl.redis._counters import RestorationSink, SubscriberStatistics
from streamcheck.impl.redis._protocol import (
    PubSubEvent,
    PubSubMessage,
    RedisConnectionError,
    SubscriptionsRestored,
)


class _MessageStream(Protocol):
    """The receiving end of coredis's message stream (an anyio memory stream)."""

    async def receive(self) -> CoredisMessage | None: ...


_SUBSCRIBE_ACK = "subscribe"
_MESSAGE = "message"


@final
class CoredisSubscriber:
    """One dedicated pub/sub connection; see the module docstring."""

    def __init__(self, pubsub: BasePubSub[str, Any], sink: RestorationSink) -> None:
        self._pubsub = pubsub
        self._stream: _MessageStream | None = getattr(pubsub, "_receive_stream", None)
        self._sink = sink
        # Channels the caller asked for (subscribe called, unsubscribe not yet): messages on
        # them are delivered, even while subscribe() still waits to return, because a
        # listener task may see the first message before the subscribing task resumes.
        self._wanted: set[str] = set()
        # Channels whose subscribe() returned: what a reconnection re-subscribes.
        self._channels: set[str] = set()
        # Acks our own subscribe() calls caused and receive() has not consumed yet.
        self._pending_acks: Counter[str] = Counter()
        # Channels whose first ack receive() consumed; another ack for one of them can only
        # come from coredis re-subscribing after a reconnection.
        self._acked: set[str] = set()
        # Channels whose re-ack the current reconnection still owes (see _on_ack).
        self._burst: set[str] = set()
        self._receiving = False
        self._messages = 0
        self._restorations = 0
        self._dropped = 0

    def __repr__(self) -> str:
        return (
            f"<CoredisSubscriber channels={len(self._channels)} messages={self._messages} "
            f"restorations={self._restorations} dropped={self._dropped}>"
        )

    def statistics(self) -> SubscriberStatistics:
        return SubscriberStatistics(
            channels=len(self._channels),
            messages=self._messages,
            restorations=self._restorations,
            dropped=self._dropped,
        )

    async def subscribe(self, channel: str) -> None:
        """Subscribe and return once the server acknowledged it.

        Raises :class:`RedisConnectionError` if the connection is down or the ack does not
        arrive within coredis's subscription timeout (1 s). A channel that is already
        subscribed, or being subscribed by another task, returns at once.
        """
        if channel in self._wanted:
            return
        self._wanted.add(channel)
        self._pending_acks[channel] += 1
        try:
            await self._pubsub.subscribe(channel)
        except BaseException as exc:
            self._forget(channel)
            if is_connection_error(exc):
                self._sink.connection_error_seen()
                raise RedisConnectionError(
                    f"could not subscribe to {channel!r}: {describe(exc)}"
                ) from exc
            raise
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``; messages of it still in flight are dropped."""
        if channel not in self._wanted:
            return
        self._forget(channel)
        # Drop it from coredis's list first so that a reconnection happening meanwhile does
        # not subscribe it again.
        self._pubsub.channels.pop(channel, None)
        try:
            await self._pubsub.unsubscribe(channel)
        except BaseException as exc:
            # A dead connection has no subscriptions left, and the channel will not be
            # re-subscribed: the unsubscribe has happened as far as anyone can observe.
            if not is_connection_error(exc):
                raise

    async def receive(self) -> PubSubEvent:
        """The next message or restoration notice, in arrival order.

        Blocks (also across reconnections) until there is one. Only one task may receive.
        """
        if self._receiving:
            raise RuntimeError("another task is already receiving on this subscriber")
        self._receiving = True
        try:
            while True:
                raw = await self._next_raw()
                if raw is None:
                    continue
                event = self._classify(raw)
                if event is not None:
                    return event
        finally:
            self._receiving = False

    async def _next_raw(self) -> CoredisMessage | None:
        # get_message() wraps every read in a cancel scope for its optional timeout,
        # which costs more than the rest of a message's handling; without a timeout it
        # is this stream's receive (coredis 6.9, pinned), so read the stream itself.
        stream = self._stream
        if stream is None:
            return await self._pubsub.get_message()
        return await stream.receive()

    def _forget(self, channel: str) -> None:
        self._wanted.discard(channel)
        self._channels.discard(channel)
        self._acked.discard(channel)
        self._burst.discard(channel)
        if self._pending_acks[channel] > 0:
            self._pending_acks[channel] -= 1

    def _classify(self, raw: CoredisMessage) -> PubSubEvent | None:
        kind = raw["type"]
        channel = str(raw["channel"])
        if kind == _MESSAGE:
            # Acks of one SUBSCRIBE reply are written back to back by the server, so a
            # message means any re-subscription burst is over.
            self._burst.clear()
            if channel not in self._wanted:
                self._dropped += 1
                return None
            self._messages += 1
            return PubSubMessage(channel=channel, data=str(raw["data"]))
        if kind == _SUBSCRIBE_ACK:
            return self._on_ack(channel)
        # unsubscribe acks (and pattern kinds we never use) carry nothing for the caller.
        return None

    def _on_ack(self, channel: str) -> SubscriptionsRestored | None:
        if self._pending_acks[channel] > 0:
            self._pending_acks[channel] -= 1
            self._acked.add(channel)
            return None
        if channel not in self._acked or channel not in self._channels:
            return None  # stale: the channel was unsubscribed meanwhile
        if channel in self._burst:
            # The rest of a reconnection we already reported.
            self._burst.discard(channel)
            return None
        # First re-ack of a reconnection. coredis re-subscribes all channels with one
        # SUBSCRIBE, which the server executes at once, so all of them are subscribed again
        # now; their acks follow and are absorbed via _burst. Channels are re-subscribed in
        # the same order every time, so an interrupted burst cannot swallow the next one.
        self._burst = self._channels - {channel}
        self._restorations += 1
        self._sink.restoration_seen()
        return SubscriptionsRestored(channels=frozenset(self._channels))
