"""Canary ``created-lost-cross-replica``: LibreChat's first event lost on another replica.

The bug (LibreChat before #12231; docs/librechat.md, bug 7): a subscriber on a replica
with no local buffer for the turn (not its producer) got nothing published before its
SUBSCRIBE took effect, the turn's first event (LibreChat's ``created``) first; its
first gap was skipped after the reorder timeout, as the Feb-10 sync to that replica's
own counter did. This design's log catch-up is the defence the canary removes, on
that path only: the producer's replica and resumes (whose snapshot covers the start)
keep it.
"""

from __future__ import annotations

from streamcheck.impl.seams import Attach
from streamcheck.properties.canaries._build import Bug
from streamcheck.properties.canaries._unsynced import UnsyncedAttachments


class UnsyncedAwayFromProducer(UnsyncedAttachments):
    def _unsynced(self, command: Attach) -> bool:
        producer = self._producer
        local = producer is not None and producer.generation == command.generation
        return super()._unsynced(command) or not (local or command.resume)


BUG = Bug(actor=(UnsyncedAwayFromProducer,))
