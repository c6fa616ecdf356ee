"""LibreChat's publish had no fence. The canaries whose bug the fence would hide (it
stops the generator at its next chunk once a turn has ended) turn it off too:
``no-cross-replica-abort`` and ``abort-channel-dropped``."""

from __future__ import annotations

import dataclasses

from streamcheck.impl.seams import Emit, PublishRefused
from streamcheck.properties.canaries._publish import PublishesWithOptions, PublishOptions


class Unfenced(PublishesWithOptions):
    def _refused_here(self, command: Emit) -> PublishRefused | None:
        return None

    def _publish_options(self) -> PublishOptions:
        return dataclasses.replace(super()._publish_options(), fenced=False)
