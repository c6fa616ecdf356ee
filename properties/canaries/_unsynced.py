"""The attachments LibreChat did not synchronise (``created-lost-cross-replica`` and
``state-deleted-on-leave`` each restore one kind)."""

from __future__ import annotations

from streamcheck.impl.seams import Attach, LocalSubscriber, ReorderBuffer
from streamcheck.properties.canaries._readers import ChoosesReorderBuffers
from streamcheck.properties.canaries.force_flush_skips_gap import SkipsGaps


class UnsyncedAttachments(ChoosesReorderBuffers):
    """Attachments LibreChat did not synchronise (each canary says which, in
    ``_unsynced``): no early-buffer replay, no log catch-up, and a reorder buffer that
    skips its first gap after the timeout, as LibreChat's guessed ``nextSeq`` was
    fixed only by the force-flush."""

    def _unsynced(self, command: Attach) -> bool:
        return False

    def _buffer_mixins(self, command: Attach) -> tuple[type[ReorderBuffer], ...]:
        mixins = super()._buffer_mixins(command)
        return (*mixins, SkipsGaps) if self._unsynced(command) else mixins

    async def _catch_up(self, sub: LocalSubscriber, command: Attach, now: float) -> None:
        if self._unsynced(command):
            await self._go_live(sub, now)
        else:
            await super()._catch_up(sub, command, now)
