"""Canary ``no-cross-replica-abort``: LibreChat's abort that stayed on its replica.

The bug (LibreChat before #11233; docs/librechat.md, bug 5): an abort pressed on a
replica that does not run the generator was not sent across (no pub/sub abort): it
ends the turn for readers and in the job, but the generator elsewhere never hears of
it. LibreChat had no publish fence then either, so this canary also turns the fence
off (else the fence would stop the generator at its next chunk and hide the bug).
"""

from __future__ import annotations

from streamcheck.impl.transport import EventTransport
from streamcheck.properties.canaries._build import Bug
from streamcheck.properties.canaries._publish import PublishesLikeLibreChat
from streamcheck.properties.canaries._unfenced import Unfenced


class AbortStaysLocal(EventTransport):
    async def emit_abort(self, stream_id: str, generation: str) -> None:
        pass  # no pub/sub abort: only this replica's own generator learns of it


BUG = Bug(transport=(AbortStaysLocal,), actor=(Unfenced,), redis_bus=(PublishesLikeLibreChat,))
