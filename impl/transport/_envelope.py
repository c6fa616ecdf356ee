"""The pub/sub envelope: LibreChat's ``{type, seq, data | error}`` plus ``generationId``.

A coalesced publish sends a JSON array of such envelopes in one message (a batch, of
one generation, in seq order); a single event is always sent as a plain envelope.

Decoding is strict: anything that is not a well-formed envelope for the expected
stream raises :class:`MalformedPayload`, which the receiver counts and drops without
disturbing the stream.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamcheck.impl._log import SequencedEvent as SequencedEvent
from streamcheck.model import Chunk, Done, Failure


@dataclass(frozen=True, slots=True)
class AbortSignal:
    """Cross-replica request to stop the generation ``generation`` (unsequenced)."""

    generation: str


Incoming = Chunk | Done | Failure | AbortSignal


#: The largest seq: every integer up to it is exact in a double (JSON readers, Lua
#: 5.1 numbers), so no path rounds a seq or writes it in float notation.
MAX_SEQ = 2**53 - 1


class MalformedPayload(ValueError):
    """A channel payload that is not a valid envelope; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


#: json.dumps with options builds an encoder per call; this one is built once.
_COMPACT = json.JSONEncoder(separators=(",", ":"))
#: The C encoder that ``_COMPACT.encode`` makes on each call, after Python-level
#: set-up (a closure per call, a type check, the join of an iterator) that costs a
#: third of encoding an event; None where the C accelerator is missing.
_C_MAKE_ENCODER: Callable[..., Callable[[Any, int], list[str]]] | None = getattr(
    json.encoder, "c_make_encoder", None
)


def encode_body(body: Any) -> str:
    """The event's JSON as the envelope and the chunk log carry it (compact, ASCII, so
    its length is its size in bytes)."""
    if _C_MAKE_ENCODER is None:
        return _COMPACT.encode(body)
    # The same arguments ``JSONEncoder.iterencode`` passes, with a fresh dict of the
    # containers being encoded (circular references are still refused).
    encode = _C_MAKE_ENCODER(
        {},
        _COMPACT.default,
        json.encoder.encode_basestring_ascii,
        None,
        ":",
        ",",
        False,
        False,
        True,
    )
    return "".join(encode(body, 0))


def encode_split(
    event_type: str, generation: str, body: Any, *, encoded_body: str | None = None
) -> tuple[str, str]:
    """The envelope as ``(prefix, suffix)`` around the seq, which only Redis knows.

    The publish script concatenates ``prefix .. seq .. suffix`` instead of re-encoding
    with cjson (which would turn ``[]`` into ``{}`` and alter floats). Pass
    ``encoded_body`` (from :func:`encode_body`) when the caller has it already.
    """
    if encoded_body is None:
        encoded_body = encode_body(body)
    prefix, suffix_head = envelope_parts(event_type, generation)
    return prefix, f"{suffix_head}{encoded_body}}}"


def envelope_parts(event_type: str, generation: str) -> tuple[str, str]:
    """The envelope's text before the seq, and after it up to the body (which then
    closes it with ``}``): the same for every event of one kind of a generation."""
    key = "error" if event_type == "error" else "data"
    return (
        f'{{"type":{json.dumps(event_type)},"seq":',
        f',"generationId":{json.dumps(generation)},"{key}":',
    )


def encode_abort(generation: str) -> str:
    return json.dumps({"type": "abort", "generationId": generation}, separators=(",", ":"))


#: The most events one batch message may carry (a publish batch is far smaller).
MAX_BATCH_EVENTS = 10_000


def decode(payload: str) -> Incoming | tuple[SequencedEvent, ...]:
    """One envelope, or a batch's events (a JSON array of envelopes, in seq order, all
    of one generation), parsed once."""
    try:
        raw = json.loads(payload)
    except (ValueError, TypeError):
        raise MalformedPayload("not JSON") from None
    if isinstance(raw, list):
        return _decode_batch(raw)
    return _decode_object(raw)


def _decode_batch(raw: list[Any]) -> tuple[SequencedEvent, ...]:
    if not raw or len(raw) > MAX_BATCH_EVENTS:
        raise MalformedPayload(f"a batch of {len(raw)} envelopes")
    events: list[SequencedEvent] = []
    for item in raw:
        event = _decode_object(item)
        if isinstance(event, AbortSignal):
            raise MalformedPayload("an abort signal inside a batch")
        if events and (event.generation != events[0].generation or event.seq <= events[-1].seq):
            raise MalformedPayload("a batch mixing generations or out of seq order")
        events.append(event)
    return tuple(events)


def _decode_object(raw: Any) -> Incoming:
    if not isinstance(raw, dict):
        raise MalformedPayload("not a JSON object")
    kind = raw.get("type")
    generation = raw.get("generationId")
    if not isinstance(generation, str) or not generation:
        raise MalformedPayload("missing generationId")
    if kind == "abort":
        return AbortSignal(generation=generation)
    seq = raw.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ:
        raise MalformedPayload(f"seq is not an integer in 0..{MAX_SEQ}: {seq!r}")
    if kind == "chunk":
        return Chunk(seq=seq, generation=generation, data=raw.get("data"))
    if kind == "done":
        return Done(seq=seq, generation=generation, data=raw.get("data"))
    if kind == "error":
        message = raw.get("error")
        return Failure(
            seq=seq,
            generation=generation,
            message=message if isinstance(message, str) else "Unknown error",
        )
    raise MalformedPayload(f"unknown type {kind!r}")
