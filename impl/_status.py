"""Job lifecycle: the one table of legal status transitions.

Rules of this module:
1. Every status change anywhere in impl/ is checked here; no other module compares
   status strings.
2. A terminal status never changes again within a generation. A new generation on the
   same stream id is a *replacement* (a new job), not a transition.
"""

from __future__ import annotations

import enum

from streamcheck.impl._errors import IllegalTransition


class JobStatus(enum.StrEnum):
    RUNNING = "running"
    COMPLETE = "complete"
    ERROR = "error"
    ABORTED = "aborted"

    @property
    def is_terminal(self) -> bool:
        return self is not JobStatus.RUNNING


_ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.RUNNING: frozenset(
        {JobStatus.RUNNING, JobStatus.COMPLETE, JobStatus.ERROR, JobStatus.ABORTED}
    ),
    JobStatus.COMPLETE: frozenset({JobStatus.COMPLETE}),
    JobStatus.ERROR: frozenset({JobStatus.ERROR}),
    JobStatus.ABORTED: frozenset({JobStatus.ABORTED}),
}

#: The Lua CAS in the Redis job store encodes the same table; keep them in step
#: (tests/test_status.py checks that they agree).
ALLOWED_TRANSITIONS = _ALLOWED


def check_transition(stream_id: str, current: JobStatus, requested: JobStatus) -> None:
    """Raise :class:`IllegalTransition` unless ``current -> requested`` is allowed."""
    if requested not in _ALLOWED[current]:
        raise IllegalTransition(
            stream_id=stream_id, current=current.value, requested=requested.value
        )
