"""Format of the chunk log ``stream:{id}:chunks`` (a Redis Stream).

Each sequenced envelope (chunk, done, error) is appended by the publish script with the
explicit entry id ``<seq>-1``, so the log can be read by seq with XRANGE and an entry id
can never be reused for a different seq. Fields:

* ``seq``   decimal seq (also in the id)
* ``type``  ``chunk`` | ``done`` | ``error``
* ``gen``   generation id of the turn that emitted it
* ``event`` JSON of the chunk's SSE event object or the done payload (LibreChat's field)
* ``error`` the error message (``error`` entries only)
"""

from __future__ import annotations


def entry_id(seq: int) -> str:
    return f"{seq}-1"
