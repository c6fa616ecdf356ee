"""Canaries: historical LibreChat bugs, put back one at a time to measure the harness.

A checker that cannot find a canary cannot be trusted to find a new bug (the
Kimberlite "canary" pattern). Each canary is a module here that restores its bug as
subclasses of impl's parts (:class:`~streamcheck.impl.ReplicaParts`); impl itself
holds only the correct design. :func:`replica_build` assembles the parts for a set
of canaries.
"""

from __future__ import annotations

from streamcheck.impl._canaries import PROFILES, Canary, parse_canaries
from streamcheck.properties.canaries import (
    early_buffer_on_resume,
    error_not_kept,
    sequenced_on_abort_only,
    unbounded_early_buffer,
)
from streamcheck.properties.canaries._build import (
    CORRECT,
    Bug,
    ReplicaBuild,
    ResourceBound,
    assemble,
)

#: The bug each canary restores, in the order their mixins compose (outermost first).
BUGS: dict[Canary, Bug] = {
    Canary.SEQUENCED_ON_ABORT_ONLY: sequenced_on_abort_only.BUG,
    Canary.UNBOUNDED_EARLY_BUFFER: unbounded_early_buffer.BUG,
    Canary.EARLY_BUFFER_ON_RESUME: early_buffer_on_resume.BUG,
    Canary.ERROR_NOT_KEPT: error_not_kept.BUG,
}


def replica_build(canaries: frozenset[Canary]) -> ReplicaBuild:
    """The parts of a replica with ``canaries`` on (impl's own parts for none)."""
    return assemble(bug for canary, bug in BUGS.items() if canary in canaries)


__all__ = [
    "BUGS",
    "CORRECT",
    "PROFILES",
    "Bug",
    "Canary",
    "ReplicaBuild",
    "ResourceBound",
    "parse_canaries",
    "replica_build",
]
