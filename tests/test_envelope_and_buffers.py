"""Wire envelope decoding (bad input is typed, never fatal) and the early buffer core."""

from __future__ import annotations

import json

import pytest

from streamcheck.impl._early_buffer import EarlyBuffer
from streamcheck.impl.transport._envelope import AbortSignal, MalformedPayload, decode, encode_split
from streamcheck.model import Chunk, Done, Failure


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"type": "chunk", "seq": 1}', "missing generationId"),
        (
            '{"type": "chunk", "seq": "7", "generationId": "g"}',
            "seq is not an integer in 0..9007199254740991: '7'",
        ),
        (
            '{"type": "chunk", "seq": 1.5, "generationId": "g"}',
            "seq is not an integer in 0..9007199254740991: 1.5",
        ),
        (
            '{"type": "chunk", "seq": -1, "generationId": "g"}',
            "seq is not an integer in 0..9007199254740991: -1",
        ),
        (
            '{"type": "chunk", "seq": true, "generationId": "g"}',
            "seq is not an integer in 0..9007199254740991: True",
        ),
        (
            '{"type": "chunk", "seq": 9007199254740992, "generationId": "g"}',
            "seq is not an integer in 0..9007199254740991: 9007199254740992",
        ),
        ('{"type": "bogus", "seq": 1, "generationId": "g"}', "unknown type 'bogus'"),
    ],
)
def test_malformed_payloads_raise_a_typed_error_naming_the_reason(
    payload: str, reason: str
) -> None:
    with pytest.raises(MalformedPayload) as info:
        decode(payload)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("kind", "body", "expected"),
    [
        ("chunk", {"a": [], "f": 0.1}, Chunk(seq=42, generation="g", data={"a": [], "f": 0.1})),
        ("done", {"final": True}, Done(seq=42, generation="g", data={"final": True})),
        ("error", "boom", Failure(seq=42, generation="g", message="boom")),
    ],
)
def test_split_envelope_round_trips_with_the_seq_spliced_in(
    kind: str, body: object, expected: object
) -> None:
    prefix, suffix = encode_split(kind, "g", body)
    wire = f"{prefix}42{suffix}"
    assert json.loads(wire)["seq"] == 42
    assert decode(wire) == expected


def test_the_split_envelope_is_compact_json_in_librechats_field_order() -> None:
    prefix, suffix = encode_split("chunk", "g-1", {"a": [], "t": "é"})
    assert f"{prefix}7{suffix}" == (
        '{"type":"chunk","seq":7,"generationId":"g-1","data":{"a":[],"t":"\\u00e9"}}'
    )


def test_abort_is_unsequenced() -> None:
    assert decode('{"type": "abort", "generationId": "g"}') == AbortSignal("g")


def test_early_buffer_hands_over_once_and_closes() -> None:
    buf = EarlyBuffer(max_events=10, max_bytes=1000)
    buf.record(Chunk(seq=0, generation="g", data=1), 10)
    buf.record(Chunk(seq=1, generation="g", data=2), 10)
    assert [e.seq for e in buf.take()] == [0, 1]
    buf.record(Chunk(seq=2, generation="g", data=3), 10)
    assert buf.take() == []
    assert buf.closed


@pytest.mark.parametrize(("max_events", "max_bytes"), [(2, 10_000), (100, 25)])
def test_early_buffer_overflow_discards_everything_so_the_log_is_used(
    max_events: int, max_bytes: int
) -> None:
    buf = EarlyBuffer(max_events=max_events, max_bytes=max_bytes)
    for seq in range(3):
        buf.record(Chunk(seq=seq, generation="g", data=seq), 10)
    assert buf.overflowed
    assert buf.take() == []
