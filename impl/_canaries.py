"""Canaries: named switches that put back one historical LibreChat bug each.

They exist to measure the harness (spec §5; the Kimberlite "canary" pattern): a
checker that cannot find a canary cannot be trusted to find a new bug. All are off by
default; a replica reads them once at construction, so an unused canary costs nothing
on the event path.

Where this design has a second line of defence that LibreChat lacked (the chunk log
repairs gaps, catch-up reads the log), a canary that would otherwise be masked also
restores LibreChat's behaviour on that path, as its description says.
"""

from __future__ import annotations

import enum


class Canary(enum.StrEnum):
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
    #: §5 #13: the early buffer has no caps and keeps buffering after attachments, so
    #: a long detached run grows without bound (a 2 GiB heap in production).
    UNBOUNDED_EARLY_BUFFER = "unbounded-early-buffer"
    #: §5 #6: after a disconnect the producer buffers again, and a resume on its replica
    #: replays that buffer on top of the snapshot that already holds those events.
    EARLY_BUFFER_ON_RESUME = "early-buffer-on-resume"


#: The canaries the seed commit (LibreChat e646a3615e, 2026-02-10) still had that
#: this implementation can reproduce.
PROFILES: dict[str, frozenset[Canary]] = {
    "none": frozenset(),
    "librechat-2026-02-10": frozenset({Canary.FORCE_FLUSH_SKIPS_GAP}),
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
