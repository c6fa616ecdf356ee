"""A :class:`~streamcheck.impl.redis.Subscriber` over one valkey-glide pub/sub client.

The problem: when a pub/sub connection drops, glide re-subscribes by itself, from its
reconciliation pass, and tells the application nothing; whatever was published in between
is gone, and the caller must recover it from the chunk log, so it has to *know*. glide has
no public "subscriptions restored" event, but it exposes the reconciliation state: the
subscriptions the client wants and those the server has confirmed
(``get_subscriptions()``), and a process-wide count of the times the two were found out of
sync (``get_statistics()``). A watcher task polls both: when a subscribed channel is
missing from the confirmed set, or the count moved while this subscriber was quiet, a loss
may have happened; once every subscribed channel is confirmed again it reports one
:class:`SubscriptionsRestored`.

Example::

    async with redis.subscriber() as sub:
        await sub.subscribe("stream:{abc}:events")   # returns once the server acked
        while True:
            match await sub.receive():
                case PubSubMessage(channel=ch, data=data): ...
                case SubscriptionsRestored(channels=chs): ...  # catch up from the log

Edge cases:

* A drop and re-subscription both inside one poll interval leave the confirmed set whole
  at every poll; the out-of-sync count still moves, so it is still reported. But glide's
  own subscribes and unsubscribes move the count too (a reconciliation pass that runs while
  one is in flight counts it: 168 moves for 200 concurrent subscribes), so a move within
  :data:`QUIET_S` of this subscriber's last subscribe or unsubscribe is not taken as a
  loss; in that window only a missing channel is. A drop and re-subscription that both
  fall inside such a window and one poll interval is not reported: seq-gap detection and
  the idle probe catch what it lost, as they catch every silent pub/sub loss. The count is
  process-wide, so another client's subscribes or reconnection also produce a notice here:
  that is the safe mistake (the caller merely re-reads the log).
* Messages for a channel are delivered from the moment :meth:`subscribe` is called until
  :meth:`unsubscribe` is called; later ones still in flight are dropped (and counted).
* A failed or cancelled :meth:`subscribe` takes the channel out of glide's wanted set again,
  so glide's reconciliation does not subscribe it behind the caller's back.
* Every wait is bounded: a subscribe acknowledgement by :data:`SUBSCRIBE_TIMEOUT_MS`, a
  restoration by :data:`RESTORE_TIMEOUT_S`. A restoration that does not come in time makes
  :meth:`receive` raise :class:`~streamcheck.impl.redis.RedisConnectionError`, so the owner
  rebuilds the subscriber.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import final

import trio
from glide import (
    GlideClient,
    GlideClientConfiguration,
    GlideClusterClient,
    GlideError,
    PubSubMsg,
)

from streamcheck.impl.redis._counters import RestorationSink, SubscriberStatistics
from streamcheck.impl.redis._glide_support import describe, is_connection_error, text
from streamcheck.impl.redis._protocol import (
    PubSubEvent,
    PubSubMessage,
    RedisConnectionError,
    SubscriptionsRestored,
)

#: How long a SUBSCRIBE waits for the server's acknowledgement (coredis's 1 s).
SUBSCRIBE_TIMEOUT_MS = 1000
#: How often the watcher reads the reconciliation state. A quarter of glide's 100 ms
#: reconciliation interval, so a channel missing for one interval is seen; each read is
#: two in-process calls into glide's core, no Redis round trip.
WATCH_INTERVAL_S = 0.025
#: How long lost subscriptions may take to come back before the subscriber gives up and
#: :meth:`GlideSubscriber.receive` raises: then the owner rebuilds the connection from
#: scratch (and learns whether Redis is reachable at all).
RESTORE_TIMEOUT_S = 10.0
#: How long after this subscriber's last subscribe or unsubscribe a moved out-of-sync count
#: is put down to it: two of glide's 100 ms reconciliation passes, after which the wanted
#: and confirmed sets agree again.
QUIET_S = 0.25
#: Bound on each call the watcher makes and on unsubscribing a failed subscribe.
_LOCAL_CALL_TIMEOUT_S = 2.0

_EXACT = GlideClientConfiguration.PubSubChannelModes.Exact

GlideAnyClient = GlideClient | GlideClusterClient
CreateClient = Callable[[bool], Awaitable[GlideAnyClient]]


@dataclass(frozen=True, slots=True)
class _Failed:
    reason: str


_Item = PubSubMessage | SubscriptionsRestored | _Failed


@final
class GlideSubscriber:
    """One dedicated pub/sub client; see the module docstring. Built by
    :func:`open_glide_subscriber`, which runs its pump and watcher tasks."""

    def __init__(self, client: GlideAnyClient, sink: RestorationSink) -> None:
        self._client = client
        self._sink = sink
        # Channels the caller asked for (subscribe called, unsubscribe not yet).
        self._wanted: set[str] = set()
        # Channels whose subscribe() returned: what a restoration must bring back.
        self._confirmed: set[str] = set()
        self._send, self._events = trio.open_memory_channel[_Item](math.inf)
        # When this subscriber last started or finished a subscribe or unsubscribe, and how
        # many are in flight (see QUIET_S).
        self._last_change = -math.inf
        self._changing = 0
        self._receiving = False
        self._messages = 0
        self._restorations = 0
        self._dropped = 0

    def __repr__(self) -> str:
        return (
            f"<GlideSubscriber channels={len(self._confirmed)} messages={self._messages} "
            f"restorations={self._restorations} dropped={self._dropped}>"
        )

    def statistics(self) -> SubscriberStatistics:
        return SubscriberStatistics(
            channels=len(self._confirmed),
            messages=self._messages,
            restorations=self._restorations,
            dropped=self._dropped,
        )

    async def subscribe(self, channel: str) -> None:
        """Subscribe and return once the server acknowledged it.

        Raises :class:`RedisConnectionError` if the connection is down or the ack does not
        arrive within :data:`SUBSCRIBE_TIMEOUT_MS`. A channel that is already subscribed,
        or being subscribed by another task, returns at once.
        """
        if channel in self._wanted:
            return
        self._wanted.add(channel)
        self._changing += 1
        self._last_change = trio.current_time()
        try:
            # glide's own timeout answers first; this scope only bounds a core that hangs.
            with trio.fail_after(2 * SUBSCRIBE_TIMEOUT_MS / 1000):
                await self._client.subscribe({channel}, timeout_ms=SUBSCRIBE_TIMEOUT_MS)
        except BaseException as exc:
            self._wanted.discard(channel)
            await self._withdraw(channel)
            if isinstance(exc, trio.TooSlowError) or (
                isinstance(exc, GlideError) and is_connection_error(exc)
            ):
                self._sink.connection_error_seen()
                raise RedisConnectionError(
                    f"could not subscribe to {channel!r}: {describe(exc)}"
                ) from exc
            raise
        finally:
            self._changing -= 1
            self._last_change = trio.current_time()
        self._confirmed.add(channel)

    async def _withdraw(self, channel: str) -> None:
        """Take ``channel`` out of glide's wanted set, so reconciliation leaves it alone."""
        # A GlideError means the client is closing: it subscribes nothing any more.
        with trio.move_on_after(_LOCAL_CALL_TIMEOUT_S, shield=True), suppress(GlideError):
            await self._client.unsubscribe_lazy({channel})

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``; messages of it still in flight are dropped."""
        if channel not in self._wanted:
            return
        self._wanted.discard(channel)
        self._confirmed.discard(channel)
        self._last_change = trio.current_time()
        try:
            await self._client.unsubscribe_lazy({channel})
        except GlideError as exc:
            # A closed client has no subscriptions left: the unsubscribe has happened as
            # far as anyone can observe.
            if not is_connection_error(exc):
                raise

    async def receive(self) -> PubSubEvent:
        """The next message or restoration notice, in arrival order.

        Blocks until there is one. Only one task may receive. Raises
        :class:`RedisConnectionError` once the subscriptions could not be restored.
        """
        if self._receiving:
            raise RuntimeError("another task is already receiving on this subscriber")
        self._receiving = True
        try:
            item = await self._events.receive()
        finally:
            self._receiving = False
        if isinstance(item, _Failed):
            raise RedisConnectionError(item.reason)
        return item

    # -- tasks run by open_glide_subscriber --------------------------------------------

    async def pump(self) -> None:
        """Move messages from glide's queue to :meth:`receive`, dropping unwanted ones.

        After each awaited message, whatever else glide has queued is taken without
        awaiting, so a burst costs one wake-up rather than one per message."""
        client = self._client
        while True:
            try:
                message: PubSubMsg | None = await client.get_pubsub_message()
                while message is not None:
                    self._forward(message)
                    message = client.try_get_pubsub_message()
            except GlideError as exc:
                self._send.send_nowait(_Failed(f"pub/sub client failed: {describe(exc)}"))
                return

    def _forward(self, message: PubSubMsg) -> None:
        channel = text(message.channel)
        if channel not in self._wanted:
            self._dropped += 1
            return
        self._messages += 1
        self._send.send_nowait(PubSubMessage(channel=channel, data=text(message.message)))

    async def watch(self) -> None:
        """Report each loss-and-restoration of the subscriptions (module docstring)."""
        try:
            seen = await self._out_of_sync_count()
            while True:
                await trio.sleep(WATCH_INTERVAL_S)
                expected = frozenset(self._confirmed)
                actual = await self._actual()
                count = await self._out_of_sync_count()
                if count != seen and self._busy():
                    seen = count  # our own subscribe or unsubscribe moved it
                if count == seen and expected <= actual:
                    continue
                if not await self._restored():
                    self._send.send_nowait(
                        _Failed(f"pub/sub subscriptions not restored within {RESTORE_TIMEOUT_S} s")
                    )
                    return
                seen = await self._out_of_sync_count()
                self._restorations += 1
                self._sink.restoration_seen()
                self._send.send_nowait(SubscriptionsRestored(channels=frozenset(self._confirmed)))
        except (GlideError, trio.TooSlowError) as exc:
            self._send.send_nowait(_Failed(f"pub/sub state unreadable: {describe(exc)}"))

    def _busy(self) -> bool:
        """A subscribe is in flight, or one ended less than QUIET_S ago."""
        return self._changing > 0 or trio.current_time() - self._last_change < QUIET_S

    async def _restored(self) -> bool:
        """Wait until every channel the caller holds is confirmed by the server again.
        glide signals nothing when that happens, so this polls its state."""
        with trio.move_on_after(RESTORE_TIMEOUT_S):
            while True:
                if frozenset(self._confirmed) <= await self._actual():
                    return True
                await trio.sleep(WATCH_INTERVAL_S)
        return False

    async def _actual(self) -> frozenset[str]:
        with trio.fail_after(_LOCAL_CALL_TIMEOUT_S):
            state = await self._client.get_subscriptions()
        return frozenset(text(c) for c in state.actual_subscriptions.get(_EXACT, set()))

    async def _out_of_sync_count(self) -> int:
        stats = await self._client.get_statistics()
        return int(stats["subscription_out_of_sync_count"])


@asynccontextmanager
async def open_glide_subscriber(
    create: CreateClient, sink: RestorationSink, *, connect_timeout: float
) -> AsyncIterator[GlideSubscriber]:
    """A subscriber on a fresh pub/sub client: PINGed within ``connect_timeout`` (else
    :class:`RedisConnectionError`), closed when the block exits."""
    client = await create(True)
    body_error: BaseException | None = None
    try:
        try:
            with trio.fail_after(connect_timeout):
                await client.ping()
        except (GlideError, trio.TooSlowError) as exc:
            sink.connection_error_seen()
            raise RedisConnectionError(f"could not open a subscriber: {describe(exc)}") from exc
        subscriber = GlideSubscriber(client, sink)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(subscriber.pump)
            nursery.start_soon(subscriber.watch)
            try:
                yield subscriber
            except BaseException as exc:
                # Re-raised below, outside the nursery, so callers see their own exception
                # rather than an ExceptionGroup around it.
                body_error = exc
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await client.close()
    if body_error is not None:
        raise body_error
