"""Canary ``state-deleted-on-leave``: LibreChat's stream state deleted with its last reader.

The bug (LibreChat before #11842; docs/librechat.md, bug 3): the last unsubscribe
deleted the stream's state on that replica, and with it the abort callbacks and the
manager's all-subscribers-left hook. The first reconnect is fine (the hook still
resets ``hasSubscriber``); from the second disconnect on nothing resets it, so later
attachments there are not synchronised: no early-buffer replay and no log read at
their start seq (this design's sync), and their first gap is skipped after the reorder
timeout, as LibreChat's fresh ``nextSeq`` was. The publish fence stays on, so the lost
abort callback shows only as a later stop (``abort-channel-dropped`` measures that).
"""

from __future__ import annotations

import functools
from typing import Any

from streamcheck.impl.seams import Attach, EarlyBuffer, StreamActor
from streamcheck.properties.canaries._abort_listeners import ForgetsAbortListeners
from streamcheck.properties.canaries._build import Bug
from streamcheck.properties.canaries._unsynced import UnsyncedAttachments


class UnsyncedAfterStateLost(UnsyncedAttachments):
    @functools.cached_property
    def unsynced_readers(self) -> set[int]:
        """Readers attached while the transport had lost the stream's hook."""
        return set()

    def _unsynced(self, command: Attach) -> bool:
        return super()._unsynced(command) or command.sub_id in self.unsynced_readers

    def _remove(self, sub_id: int) -> None:
        self.unsynced_readers.discard(sub_id)
        super()._remove(sub_id)


class DeletesStateOnLeave(ForgetsAbortListeners):
    @functools.cached_property
    def _hook_lost(self) -> set[str]:
        """Streams whose state was deleted once here, taking the hook with it ..."""
        return set()

    @functools.cached_property
    def _unsynced(self) -> set[str]:
        """... and those deleted again without it: ``hasSubscriber`` stays set, so no
        later attachment here is synchronised."""
        return set()

    def start_producing(self, stream_id: str, generation: str, early: EarlyBuffer) -> None:
        # A new turn builds a new runtime here and registers the hook again.
        self._hook_lost.discard(stream_id)
        self._unsynced.discard(stream_id)
        super().start_producing(stream_id, generation, early)

    async def _attach_reader(self, actor: StreamActor, sub_id: int, **attachment: Any) -> None:
        if actor.stream_id in self._unsynced:
            assert isinstance(actor, UnsyncedAfterStateLost)
            actor.unsynced_readers.add(sub_id)
        await super()._attach_reader(actor, sub_id, **attachment)

    async def _last_reader_left(self, stream_id: str, actor: StreamActor | None) -> None:
        await self._forget_abort_listeners(stream_id, actor)
        if stream_id in self._hook_lost:
            self._unsynced.add(stream_id)
        else:
            self._hook_lost.add(stream_id)  # the hook still ran this once
        await super()._last_reader_left(stream_id, actor)


BUG = Bug(transport=(DeletesStateOnLeave,), actor=(UnsyncedAfterStateLost,))
