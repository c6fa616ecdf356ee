"""Small readers of untrusted JSON values, and the words the timeline uses for names,
seqs and pub/sub payloads (see :mod:`._layout`)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def _text(value: object, default: str = "?") -> str:
    return default if value is None else str(value)


def _int_or_none(value: object) -> int | None:
    # bool is an int in Python; a JSON true is never a seq or an index.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _float_or_none(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _dicts(value: object) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def _natural_key(name: str) -> tuple[str, int, str]:
    """``r2`` before ``r10``: a prefix, then the number, then the rest."""
    match = re.fullmatch(r"([^\d]*)(\d+)(.*)", name)
    if match is None:
        return (name, -1, "")
    return (match.group(1), int(match.group(2)), match.group(3))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def replica_of_client(client: str) -> str:
    """The replica a simulated client belongs to: ``r0.1`` (replica r0, incarnation 1)
    -> ``r0``; a connection name (``r0.1/s0``) works too."""
    return client.split("/", 1)[0].split(".", 1)[0]


def stream_of_key(key: str) -> str | None:
    """The stream id a Redis key or channel names in its hash tag (``stream:{s0}:...``)."""
    match = re.search(r"\{([^}]*)\}", key)
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class _Message:
    """What a pub/sub payload says about itself (an event envelope, a batch of them
    from a coalesced publish, or neither)."""

    type: str | None
    seq: int | None
    generation: str | None
    #: A batch's last seq (``seq`` is its first); ``None`` for one envelope.
    last_seq: int | None = None
    events: int = 1

    def words(self) -> str:
        if self.type is None:
            return "a message that is not an event"
        if self.last_seq is not None:
            return (
                f"a batch of {self.events} events, seqs {_text(self.seq)}\u2013"
                f"{self.last_seq} of {_text(self.generation)}"
            )
        return f"{self.type} seq {_text(self.seq)} of {_text(self.generation)}"

    def carries(self, generation: str, seq: int) -> bool:
        """Whether the message carries ``seq`` of ``generation`` (alone or in a batch)."""
        if self.generation != generation or self.seq is None:
            return False
        last = self.last_seq if self.last_seq is not None else self.seq
        return self.seq <= seq <= last


def _message(payload: str) -> _Message:
    try:
        data = json.loads(payload)
    except ValueError:
        return _Message(None, None, None)
    if isinstance(data, list) and data and all(isinstance(d, Mapping) for d in data):
        first, last = _envelope(data[0]), _envelope(data[-1])
        if first.type is None or first.seq is None or last.seq is None:
            return _Message(None, None, None)
        return _Message("batch", first.seq, first.generation, last.seq, len(data))
    return _envelope(data)


def _envelope(data: object) -> _Message:
    if not isinstance(data, Mapping):
        return _Message(None, None, None)
    return _Message(
        _optional_str(data.get("type")),
        _int_or_none(data.get("seq")),
        _optional_str(data.get("generationId")),
    )


def _seq_of_entry(entry_id: str) -> int | None:
    head = entry_id.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _seqs_words(seqs: Sequence[int]) -> str:
    if not seqs:
        return "nothing"
    if seqs == list(range(seqs[0], seqs[-1] + 1)) and len(seqs) > 2:
        return f"seqs {seqs[0]}\u2013{seqs[-1]}"
    return f"seq{'s' if len(seqs) > 1 else ''} {', '.join(str(s) for s in seqs)}"
