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
    abort_channel_dropped,
    counter_deleted_on_cleanup,
    created_lost_cross_replica,
    early_buffer_on_resume,
    error_not_kept,
    force_flush_skips_gap,
    no_cross_replica_abort,
    no_deferred_delivery,
    per_process_counters,
    sequenced_on_abort_only,
    stale_frontier_across_turns,
    state_deleted_on_leave,
    subscriber_before_ack,
    unawaited_publishes,
    unbounded_early_buffer,
)
from streamcheck.properties.canaries._build import (
    CORRECT,
    Bug,
    ReplicaBuild,
    ResourceBound,
    assemble,
)

#: The bug each canary restores, in the order their mixins compose (outermost first):
#: ``no-deferred-delivery`` skips the catch-up at attachment entirely, so it comes
#: before the canaries that change that catch-up.
BUGS: dict[Canary, Bug] = {
    Canary.NO_DEFERRED_DELIVERY: no_deferred_delivery.BUG,
    Canary.UNAWAITED_PUBLISHES: unawaited_publishes.BUG,
    Canary.NO_CROSS_REPLICA_ABORT: no_cross_replica_abort.BUG,
    Canary.SUBSCRIBER_BEFORE_ACK: subscriber_before_ack.BUG,
    Canary.FORCE_FLUSH_SKIPS_GAP: force_flush_skips_gap.BUG,
    Canary.PER_PROCESS_COUNTERS: per_process_counters.BUG,
    Canary.ABORT_CHANNEL_DROPPED: abort_channel_dropped.BUG,
    Canary.SEQUENCED_ON_ABORT_ONLY: sequenced_on_abort_only.BUG,
    Canary.UNBOUNDED_EARLY_BUFFER: unbounded_early_buffer.BUG,
    Canary.EARLY_BUFFER_ON_RESUME: early_buffer_on_resume.BUG,
    Canary.STATE_DELETED_ON_LEAVE: state_deleted_on_leave.BUG,
    Canary.ERROR_NOT_KEPT: error_not_kept.BUG,
    Canary.CREATED_LOST_CROSS_REPLICA: created_lost_cross_replica.BUG,
    Canary.STALE_FRONTIER_ACROSS_TURNS: stale_frontier_across_turns.BUG,
    Canary.COUNTER_DELETED_ON_CLEANUP: counter_deleted_on_cleanup.BUG,
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
