"""What the canaries that change a reader's attachment share: the choice of its
reorder buffer, and LibreChat's attachment without a catch-up."""

from __future__ import annotations

from streamcheck.impl.seams import Attach, LocalSubscriber, ReorderBuffer, StreamActor
from streamcheck.properties.canaries._build import subclass


class ChoosesReorderBuffers(StreamActor):
    """Each reader's reorder buffer is impl's with the mixins the canaries add for
    that attachment (``_buffer_mixins``)."""

    def _buffer_mixins(self, command: Attach) -> tuple[type[ReorderBuffer], ...]:
        return ()

    def _reorder_buffer(self, command: Attach, now: float) -> ReorderBuffer:
        buffer_type = subclass(ReorderBuffer, tuple(dict.fromkeys(self._buffer_mixins(command))))
        return buffer_type(
            generation=command.generation,
            start_seq=command.start_seq,
            now=now,
            timeout=self._timings.reorder_timeout,
            capacity=self._timings.reorder_capacity,
            idle_probe=self._timings.idle_probe,
        )

    async def _go_live(self, sub: LocalSubscriber, now: float) -> None:
        """LibreChat's attachment: live at once from its first seq, no log read, as if
        the log were empty. Whatever was published before is missing."""
        sub.buffer.begin(now)
        await self._apply(sub, sub.buffer.apply_log([], exhausted=True, now=now))
