"""Canaries: named switches that put back one historical LibreChat bug each.

They exist to measure the harness (spec §5; the Kimberlite "canary" pattern): a
checker that cannot find a canary cannot be trusted to find a new bug. All are off by
default; a replica reads them once at construction, so an unused canary costs nothing
on the event path.

Where this design has a second line of defence that LibreChat lacked (the chunk log
repairs gaps, catch-up reads the log), a canary that would otherwise be masked also
restores LibreChat's behaviour on that path, as its description says.

Every bug of spec §5's list 1-13 and 17 has a canary; #12 shows as a resource bound
(events parked on a replica with no reader), since nothing wrong is delivered.
"""

from __future__ import annotations

import enum


class Canary(enum.StrEnum):
    #: §5 #1: ``emit_chunk`` (and the terminals) start the publish and return without
    #: awaiting it, as before #11650, so a generator's consecutive events race to
    #: Redis on separate connections. Each seq is allocated when its script runs, so
    #: every reader sees one order, Redis's, which need not be the generator's.
    UNAWAITED_PUBLISHES = "unawaited-publishes"
    #: §5 #5: an abort pressed on a replica that does not run the generator is not
    #: sent across (no pub/sub abort, as before #11233): it ends the turn for readers
    #: and in the job, but the generator elsewhere never hears of it. LibreChat had no
    #: publish fence then either, so this canary also turns the fence off (else the
    #: fence would stop the generator at its next chunk and hide the bug).
    NO_CROSS_REPLICA_ABORT = "no-cross-replica-abort"
    #: §5 #2: the subscriber is marked live before Redis acknowledged SUBSCRIBE; its
    #: catch-up is the early buffer only (no log read), as in LibreChat before #11710.
    SUBSCRIBER_BEFORE_ACK = "subscriber-before-ack"
    #: LibreChat's 500 ms force-flush: a gap that does not fill in time is skipped
    #: silently instead of being repaired from the log (no Gap event either).
    FORCE_FLUSH_SKIPS_GAP = "force-flush-skips-gap"
    #: §5 #8: each replica numbers a stream's events with its own counter (from 0), as
    #: before #12578; an abort's final event published elsewhere reuses a seq.
    PER_PROCESS_COUNTERS = "per-process-counters"
    #: §5 #17: the last unsubscribe drops the channel and the abort callbacks, so a
    #: Stop pressed elsewhere never reaches the generator. LibreChat had no publish
    #: fence either, so this canary also turns the fence off (else the fence would stop
    #: the generator at its next chunk and hide the bug).
    ABORT_CHANNEL_DROPPED = "abort-channel-dropped"
    #: §5 #12: a replica holding a stream's channel for the generator's abort listener
    #: only (no reader there) still runs the sequenced traffic through a reorder state
    #: whose frontier went back to 0 when its last reader left, as before #14557: every
    #: later event parks, waiting for seqs long gone, until the cap (100, LibreChat's)
    #: skips them all ("skipping 16,119 missing messages"). Nothing reaches a reader;
    #: the world's resource bound "events parked with no reader" reports it.
    SEQUENCED_ON_ABORT_ONLY = "sequenced-on-abort-only"
    #: §5 #13: the early buffer has no caps and keeps buffering after attachments, so
    #: a long detached run grows without bound (a 2 GiB heap in production).
    UNBOUNDED_EARLY_BUFFER = "unbounded-early-buffer"
    #: §5 #6: after a disconnect the producer buffers again, and a resume on its replica
    #: replays that buffer on top of the snapshot that already holds those events.
    EARLY_BUFFER_ON_RESUME = "early-buffer-on-resume"
    #: §5 #3: the last unsubscribe deletes the stream's state on that replica, and with
    #: it the abort callbacks and the manager's all-subscribers-left hook, as before
    #: #11842. The first reconnect is fine (the hook still resets ``hasSubscriber``); from
    #: the second disconnect on nothing resets it, so later attachments there are not
    #: synchronised: no early-buffer replay and no log read at their start seq (this
    #: design's sync), and their first gap is skipped after the reorder timeout, as
    #: LibreChat's fresh ``nextSeq`` was. The publish fence stays on, so the lost abort
    #: callback shows only as a later stop (``abort-channel-dropped`` measures that).
    STATE_DELETED_ON_LEAVE = "state-deleted-on-leave"
    #: §5 #4: an error is neither stored on the job nor kept: ``complete_job`` with an
    #: error deletes the job, and with it the chunk log (LibreChat's ``deleteJob``), as
    #: before #11372. A client arriving later is refused (the 404, which the history
    #: does not record); one caught attaching finds neither log nor job and ends with
    #: "stream lost" instead of the error, without the chunks it was owed.
    ERROR_NOT_KEPT = "error-not-kept"
    #: §5 #7: a subscriber on a replica with no local buffer for the turn (not its
    #: producer) gets nothing published before its SUBSCRIBE took effect, the turn's
    #: first event (LibreChat's ``created``) first; its first gap is skipped after the
    #: reorder timeout, as the Feb-10 sync to that replica's own counter did, before
    #: #12231. The log catch-up is the defence this removes, on that path only: the
    #: producer's replica and resumes (whose snapshot covers the start) keep it.
    CREATED_LOST_CROSS_REPLICA = "created-lost-cross-replica"
    #: §5 #9: a replica keeps a stream's frontier after its last reader left (the state
    #: kept since #11842) and starts the next turn's first attachment there, as before
    #: #13117. The frontier is stale only once the counter went back, so this canary
    #: also deletes the counter on cleanup (#10's mechanism, which the bug needed in
    #: production too): the next turn restarts below the old frontier, and its events
    #: are dropped as already seen.
    STALE_FRONTIER_ACROSS_TURNS = "stale-frontier-across-turns"
    #: §5 #10: a replica's cleanup of an idle stream whose turn has ended deletes the
    #: shared counter, as ``resetSequence`` did until #14411, so the next turn restarts
    #: at seq 0 and reuses the previous turn's seqs (a subscriber that kept its
    #: frontier then dropped that whole turn; here every subscription is one turn's,
    #: so what the harness sees is the seqs reused). LibreChat had no publish floor, so
    #: this canary also turns the floor off (else a replica that saw the old seqs would
    #: push the counter back past them), and a seq behind the log's tail is appended by
    #: arrival (``XADD *``, as LibreChat's log always was).
    COUNTER_DELETED_ON_CLEANUP = "counter-deleted-on-cleanup"
    #: §5 #11: a fresh attachment is live at once (no deferred delivery), and waits for
    #: a Redis round trip (the counter GET, standing for LibreChat's wait on its early
    #: publishes) before the producer's early buffer is replayed, straight to the
    #: client as LibreChat's ``onChunk`` replay was; pub/sub copies of early events
    #: that land in that wait reach the client first, so they arrive twice (before
    #: ``deliveryDeferred``). Resumes clear the buffer unreplayed (#12225), as then.
    NO_DEFERRED_DELIVERY = "no-deferred-delivery"


#: The canaries the seed commit (LibreChat e646a3615e, 2026-02-10) still had that
#: this implementation can reproduce: spec §5 #3 (fixed 02-18), #6 and #7 (03-14), #8
#: (04-08), #13 (08-03), #17 (later) and the force-flush (never removed). Not #2 (the
#: seed's own fix), #4 (#11372, January) nor #10 and #11, bugs of the shared counter
#: and its asynchronous sync, which came in April.
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
