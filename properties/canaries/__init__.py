"""Canaries: historical LibreChat bugs, put back one at a time to measure the harness.

A checker that cannot find a canary cannot be trusted to find a new bug (the
Kimberlite "canary" pattern). Each canary is a module here that restores its bug as
subclasses of impl's parts (:class:`~streamcheck.impl.ReplicaParts`) and says which
LibreChat change fixed it; impl itself holds only the correct design. A replica built
without canaries is impl's own, so an unused canary costs nothing.

Where this design has a second line of defence that LibreChat lacked (the chunk log
repairs gaps, catch-up reads the log, the publish fence), a canary that would
otherwise be masked also restores LibreChat's behaviour on that path, as its module
says.

Every bug of docs/librechat.md (1-13 and 17) has a canary; bug 12 shows as a resource
bound (events parked on a replica with no reader), since nothing wrong is delivered.
"""

from __future__ import annotations

import enum

from streamcheck.properties.canaries import (
    abort_channel_dropped,
    abort_signalled_before_fence,
    counter_deleted_on_cleanup,
    created_lost_cross_replica,
    early_buffer_on_resume,
    error_not_kept,
    force_flush_skips_gap,
    forged_abort_obeyed,
    forged_generation_supersedes,
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


class Canary(enum.StrEnum):
    """One bug each; the module of the same name (with underscores) restores it."""

    #: Bug 1: a generator's publishes race each other (not awaited).
    UNAWAITED_PUBLISHES = "unawaited-publishes"
    #: Bug 5: an abort on another replica never reaches the generator.
    NO_CROSS_REPLICA_ABORT = "no-cross-replica-abort"
    #: Bug 2: a reader is live before its SUBSCRIBE is acknowledged.
    SUBSCRIBER_BEFORE_ACK = "subscriber-before-ack"
    #: LibreChat's 500 ms force-flush: a gap that does not fill is skipped silently.
    FORCE_FLUSH_SKIPS_GAP = "force-flush-skips-gap"
    #: Bug 8: each replica numbers a stream's events with its own counter.
    PER_PROCESS_COUNTERS = "per-process-counters"
    #: Bug 17: the last unsubscribe drops the generator's abort listener.
    ABORT_CHANNEL_DROPPED = "abort-channel-dropped"
    #: Bug 12: a readerless replica parks the stream's traffic for nobody.
    SEQUENCED_ON_ABORT_ONLY = "sequenced-on-abort-only"
    #: Bug 13: the early buffer has no caps.
    UNBOUNDED_EARLY_BUFFER = "unbounded-early-buffer"
    #: Bug 6: a resume replays the early buffer on top of its snapshot.
    EARLY_BUFFER_ON_RESUME = "early-buffer-on-resume"
    #: Bug 3: the last unsubscribe deletes the stream's state on the replica.
    STATE_DELETED_ON_LEAVE = "state-deleted-on-leave"
    #: Bug 4: an errored turn's job is deleted, its error never stored.
    ERROR_NOT_KEPT = "error-not-kept"
    #: Bug 7: the turn's first event is lost on a replica that does not produce it.
    CREATED_LOST_CROSS_REPLICA = "created-lost-cross-replica"
    #: Bug 9: a replica's frontier carries over into the next turn.
    STALE_FRONTIER_ACROSS_TURNS = "stale-frontier-across-turns"
    #: Bug 10: cleanup deletes the shared counter.
    COUNTER_DELETED_ON_CLEANUP = "counter-deleted-on-cleanup"
    #: Bug 11: a fresh attachment is live before the early buffer's replay.
    NO_DEFERRED_DELIVERY = "no-deferred-delivery"
    #: Issue 17: the generator, told of an abort, publishes its own terminal first.
    ABORT_SIGNALLED_BEFORE_FENCE = "abort-signalled-before-fence"
    #: Issue 17: a channel message of another generation ends readers as superseded.
    FORGED_GENERATION_SUPERSEDES = "forged-generation-supersedes"
    #: Issue 17: an abort signal nobody claimed stops the generator.
    FORGED_ABORT_OBEYED = "forged-abort-obeyed"


#: The canaries the seed commit (LibreChat e646a3615e, 2026-02-10) still had that
#: this implementation can reproduce (docs/librechat.md): bugs 3 (fixed 02-18), 6 and
#: 7 (03-14), 8 (04-08), 13 (08-03), 17 (later) and the force-flush (never removed).
#: Not bug 2 (the seed's own fix), 4 (#11372, January) nor 10 and 11, bugs of the
#: shared counter and its asynchronous sync, which came in April.
PROFILES: dict[str, frozenset[Canary]] = {
    "none": frozenset(),
    "librechat-2026-02-10": frozenset(
        {
            Canary.FORCE_FLUSH_SKIPS_GAP,
            Canary.STATE_DELETED_ON_LEAVE,
            Canary.EARLY_BUFFER_ON_RESUME,
            Canary.CREATED_LOST_CROSS_REPLICA,
            Canary.PER_PROCESS_COUNTERS,
            Canary.UNBOUNDED_EARLY_BUFFER,
            Canary.ABORT_CHANNEL_DROPPED,
        }
    ),
}


def parse_canaries(names: str) -> frozenset[Canary]:
    """``"a,b"`` -> the canaries; raises ValueError naming the unknown one."""
    chosen: set[Canary] = set()
    for name in filter(None, (n.strip() for n in names.split(","))):
        try:
            chosen.add(Canary(name))
        except ValueError:
            known = ", ".join(c.value for c in Canary)
            raise ValueError(f"unknown canary {name!r}; known: {known}") from None
    return frozenset(chosen)


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
    Canary.ABORT_SIGNALLED_BEFORE_FENCE: abort_signalled_before_fence.BUG,
    Canary.FORGED_GENERATION_SUPERSEDES: forged_generation_supersedes.BUG,
    Canary.FORGED_ABORT_OBEYED: forged_abort_obeyed.BUG,
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
