"""Canary ``subscriber-before-ack``: LibreChat's reader live before its SUBSCRIBE.

The bug (LibreChat before #11710; docs/librechat.md, bug 2): a subscriber was marked
live before Redis acknowledged the SUBSCRIBE, and its catch-up was the producer's
early buffer only, with no log read: whatever was published before the subscription
took effect is missing, and its reorder buffer skips the gap after the timeout
(LibreChat's force-flush).
"""

from __future__ import annotations

import logging

from streamcheck.impl.seams import Attach, LocalSubscriber, ReorderBuffer
from streamcheck.impl.transport import EventTransport
from streamcheck.properties.canaries._build import Bug
from streamcheck.properties.canaries._readers import ChoosesReorderBuffers
from streamcheck.properties.canaries.force_flush_skips_gap import SkipsGaps

logger = logging.getLogger(__name__)


class SubscribesWithoutAck(EventTransport):
    async def _subscribe_channel(self, stream_id: str) -> None:
        # SUBSCRIBE is sent, not awaited.
        self._nursery.start_soon(self._subscribe_quietly, stream_id)

    async def _subscribe_quietly(self, stream_id: str) -> None:
        # LibreChat logged a failed SUBSCRIBE it had not awaited and moved on.
        try:
            await self._bus.acquire_channel(stream_id)
        except ConnectionError as exc:
            logger.warning("stream %s: subscribe failed: %s", stream_id, exc)


class CatchesUpFromEarlyBufferOnly(ChoosesReorderBuffers):
    def _buffer_mixins(self, command: Attach) -> tuple[type[ReorderBuffer], ...]:
        return (*super()._buffer_mixins(command), SkipsGaps)

    async def _catch_up_from_log(self, sub: LocalSubscriber, now: float) -> None:
        await self._go_live(sub, now)


BUG = Bug(transport=(SubscribesWithoutAck,), actor=(CatchesUpFromEarlyBufferOnly,))
