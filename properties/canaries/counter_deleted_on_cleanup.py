"""Canary ``counter-deleted-on-cleanup``: LibreChat's ``resetSequence`` on cleanup.

The bug (LibreChat before #14411; docs/librechat.md, bug 10): a replica's cleanup of an
idle stream whose turn had ended deleted the shared counter, so the next turn
restarted at seq 0 and reused the previous turn's seqs (a subscriber that kept its
frontier then dropped that whole turn; here every subscription is one turn's, so
what the harness sees is the seqs reused). LibreChat had no publish floor, so this
canary also turns the floor off (else a replica that saw the old seqs would push the
counter back past them), and a seq behind the log's tail is appended by arrival
(``XADD *``, as LibreChat's log always was).

LibreChat cleaned a stream's transport once its job was gone (deleted when the turn
ended); here an ended job is kept for late readers, so "gone" means "not running".
"""

from __future__ import annotations

import dataclasses

from streamcheck.impl import GenerationJobManager
from streamcheck.impl.transport import RedisBus
from streamcheck.properties.canaries._build import Bug
from streamcheck.properties.canaries._publish import (
    PublishesLikeLibreChat,
    PublishesWithOptions,
    PublishOptions,
)


class DeletesCounter(RedisBus):
    async def delete_counter(self, stream_id: str) -> None:
        await self._redis.delete(self._keys.seq(stream_id))


class ResetsSequenceOnCleanup(GenerationJobManager):
    async def _forget_idle_stream(self, stream_id: str) -> None:
        await super()._forget_idle_stream(stream_id)
        current = await self.job_store.get_job(stream_id)
        if current is None or current.status.is_terminal:
            assert isinstance(self._bus, DeletesCounter)
            await self._bus.delete_counter(stream_id)


class CounterMayGoBack(PublishesWithOptions):
    def _floor(self) -> int:
        return 0  # no publish floor

    def _publish_options(self) -> PublishOptions:
        return dataclasses.replace(super()._publish_options(), reused_seqs=True)


BUG = Bug(
    manager=(ResetsSequenceOnCleanup,),
    actor=(CounterMayGoBack,),
    redis_bus=(PublishesLikeLibreChat, DeletesCounter),
)
