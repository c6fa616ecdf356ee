"""What a silent subscriber learns from the job record (pure).

Called when a subscriber has heard nothing for a while and the chunk log holds nothing
beyond its frontier. The terminal must then be decided from the job itself, or the
reader would hang for ever.
"""

from __future__ import annotations

import json
from typing import Final

from streamcheck.impl._reorder import SUPERSEDED
from streamcheck.impl._types import JobStatus, SerializableJobData
from streamcheck.model import Done, Failure

STREAM_LOST: Final = "stream expired or lost before its end was delivered"
PRODUCER_LOST: Final = "producer lost: the generating replica stopped responding"


def silent_subscriber_verdict(
    job: SerializableJobData | None,
    *,
    generation: str,
    next_seq: int,
    now_ms: int,
    producer_timeout_ms: int,
) -> Done | Failure | None:
    """The terminal to deliver, or ``None`` to keep waiting."""
    if job is None:
        return Failure(seq=next_seq, generation=generation, message=STREAM_LOST)
    if job.generation_id != generation:
        return Failure(seq=next_seq, generation=generation, message=SUPERSEDED)
    if job.status is JobStatus.ERROR:
        return Failure(seq=next_seq, generation=generation, message=job.error or "Unknown error")
    if job.status.is_terminal:
        data = None
        if job.final_event is not None:
            try:
                data = json.loads(job.final_event)
            except ValueError:
                data = None
        return Done(seq=next_seq, generation=generation, data=data)
    last_alive = job.last_active_at if job.last_active_at is not None else job.created_at
    if now_ms - last_alive > producer_timeout_ms:
        return Failure(seq=next_seq, generation=generation, message=PRODUCER_LOST)
    return None
