"""LibreChat's last unsubscribe, which forgot the abort listeners with the channel
(shared by ``abort-channel-dropped`` and ``state-deleted-on-leave``)."""

from __future__ import annotations

import functools

from streamcheck.impl.seams import StreamActor
from streamcheck.impl.transport import EventTransport


class ForgetsAbortListeners(EventTransport):
    """When the last reader of a stream leaves, its abort callbacks go, and with them
    the channel references they held: a Stop pressed elsewhere never reaches them."""

    @functools.cached_property
    def _dropped_aborts(self) -> set[tuple[str, str]]:
        # Whose channel reference is released already: releasing it again at
        # ``remove_abort`` would drop someone else's.
        return set()

    async def _last_reader_left(self, stream_id: str, actor: StreamActor | None) -> None:
        await self._forget_abort_listeners(stream_id, actor)
        await super()._last_reader_left(stream_id, actor)

    async def _forget_abort_listeners(self, stream_id: str, actor: StreamActor | None) -> None:
        if actor is None:
            return
        # Straight from the actor's state, outside its turn: LibreChat deleted them.
        dropped = list(actor._abort_callbacks)
        actor._abort_callbacks.clear()
        for generation in dropped:
            self._dropped_aborts.add((stream_id, generation))
            await self._bus.release_channel(stream_id)

    async def remove_abort(self, stream_id: str, generation: str) -> None:
        entry = self._actors.get(stream_id)
        if entry is not None and (stream_id, generation) in self._dropped_aborts:
            entry[0].on_abort(generation, None)
            self._dropped_aborts.discard((stream_id, generation))
            return
        await super().remove_abort(stream_id, generation)
