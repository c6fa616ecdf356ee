"""Canary ``abort-signalled-before-fence``: the generator's own terminal wins over an
abort it was already told of.

The bug (this implementation before issue 17): ``abort_job`` signalled the generator
first and fenced the turn only by publishing the abort's Done afterwards. A generator
that reacts to the signal as generators naturally do, by emitting its done (or error)
at once, published its plain terminal first in about half the runs: readers saw a
normal completion, the abort's final event with its unfinished content was lost, and
``abort_job`` answered "already terminal" for an abort the generator had obeyed.
The fix claims the turn for the abort in the publish fence before the signal goes out.

Since the fix, the actor also obeys a signal only once Redis confirms the claim; without a
claim (the old order made none) it would drop the signal as forged, which masks this
canary. So the canary also restores the actor of its time, which obeyed every signal
(the ``forged-abort-obeyed`` mechanism).
"""

from __future__ import annotations

from streamcheck.impl import GenerationJobManager, SerializableJobData
from streamcheck.impl.transport import PublishRefused
from streamcheck.properties.canaries._build import Bug
from streamcheck.properties.canaries.forged_abort_obeyed import ObeysEveryAbortSignal


class SignalsBeforeFencing(GenerationJobManager):
    async def _accept_abort(self, job: SerializableJobData) -> PublishRefused | None:
        # The old order: tell the generator, and leave the fence to the abort's Done.
        await self._signal_generator(job)
        return None


BUG = Bug(manager=(SignalsBeforeFencing,), actor=(ObeysEveryAbortSignal,))
