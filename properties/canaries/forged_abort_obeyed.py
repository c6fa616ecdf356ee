"""Canary ``forged-abort-obeyed``: an abort signal on the channel stops the generator
although no abort claimed its turn.

The bug (this implementation before the fix): the stream's actor called the
generator's abort callback for any abort signal of its generation that arrived on the
channel. Anyone who can PUBLISH on the Redis could stop a turn with one message; the
generator, told to stop, ended the turn with its own terminal, which the publish fence
accepted (no abort held the turn): readers saw an end nobody asked for. The fix asks
Redis whether an abort claimed the turn (``abort_claimed``, the claim as the publish
fence sees it) before the actor obeys.
"""

from __future__ import annotations

from streamcheck.impl.seams import StreamActor
from streamcheck.properties.canaries._build import Bug


class ObeysEveryAbortSignal(StreamActor):
    async def _abort_confirmed(self, generation: str) -> bool:
        # The old actor: the signal itself was taken as proof of an abort.
        return True


BUG = Bug(actor=(ObeysEveryAbortSignal,))
