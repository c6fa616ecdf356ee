"""Format of the chunk log ``stream:{id}:chunks`` (a Redis Stream).

Each sequenced envelope (chunk, done, error) is appended by the publish script with the
explicit entry id ``<seq>-1``, so the log can be read by seq with XRANGE and an entry id
can never be reused for a different seq. Fields:

* ``seq``   decimal seq (also in the id)
* ``type``  ``chunk`` | ``done`` | ``error``
* ``gen``   generation id of the turn that emitted it
* ``event`` JSON of the chunk's SSE event object or the done payload (LibreChat's field)
* ``error`` the error message (``error`` entries only)

A replica that finds the counter behind a seq it has seen (Redis lost writes) appends
one marker row with the id ``<last>-2`` and the fields ``seq`` (= ``last``),
``type`` = ``lost`` and ``first``: seqs ``first..last`` exist nowhere any more.
"""

from __future__ import annotations


def entry_id(seq: int) -> str:
    return f"{seq}-1"
