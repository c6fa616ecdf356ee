"""One history from many processes: merge each agent's records by time.

Every agent reports what happened on its own replica (generators, aborts, client
sessions it served) with ``time.monotonic()`` timestamps, which all processes on one
machine share. Merging sorts by time (ties keep each agent's own order) and re-indexes.

A replica that the harness killed never closed its sessions: they are closed here with
``REPLICA_CRASHED`` at the kill time, as the simulation's crash does, so the checker
judges them as readers whose replica died (they are expected to resume elsewhere).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from streamcheck.model import History, Record, SessionClosed, SessionEnd, SessionOpened


def merge_histories(
    parts: Iterable[list[Record]], *, killed_at: Mapping[str, float] | None = None
) -> History:
    """One history in time order. ``killed_at`` maps a replica name to the time the
    harness killed it: its sessions still open are closed as ``REPLICA_CRASHED``."""
    tagged = [
        (record.time, part_no, i, record)
        for part_no, part in enumerate(parts)
        for i, record in enumerate(part)
    ]
    tagged.sort(key=lambda t: (t[0], t[1], t[2]))
    records = [t[3] for t in tagged]
    closed = {r.session for r in records if isinstance(r, SessionClosed)}
    for replica, at in sorted((killed_at or {}).items(), key=lambda kv: kv[1]):
        for opened in [r for r in records if isinstance(r, SessionOpened)]:
            if opened.replica == replica and opened.time <= at and opened.session not in closed:
                closed.add(opened.session)
                records.append(
                    SessionClosed(
                        time=max(at, opened.time),
                        session=opened.session,
                        reason=SessionEnd.REPLICA_CRASHED,
                    )
                )
    records.sort(key=lambda r: r.time)  # stable: merged order kept among equal times
    history = History()
    for record in records:
        history.append(record)
    return history
