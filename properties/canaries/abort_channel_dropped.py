"""Canary ``abort-channel-dropped``: LibreChat's abort listener dropped with the last reader.

The bug (docs/librechat.md, bug 17): the last unsubscribe dropped the channel and the
abort callbacks, so a Stop pressed elsewhere never reached the generator. LibreChat
had no publish fence either, so this canary also turns the fence off (else the fence
would stop the generator at its next chunk and hide the bug).
"""

from __future__ import annotations

from streamcheck.properties.canaries._abort_listeners import ForgetsAbortListeners
from streamcheck.properties.canaries._build import Bug
from streamcheck.properties.canaries._publish import PublishesLikeLibreChat
from streamcheck.properties.canaries._unfenced import Unfenced

BUG = Bug(
    transport=(ForgetsAbortListeners,),
    actor=(Unfenced,),
    redis_bus=(PublishesLikeLibreChat,),
)
