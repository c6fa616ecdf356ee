"""The canaries' parts (properties/canaries/) on their own: each restores its bug in a
subclass of impl's part, and any set of them composes into one replica build."""

from __future__ import annotations

from pathlib import Path

import streamcheck.impl
from streamcheck.impl import ReplicaParts
from streamcheck.impl._reorder import ReorderBuffer
from streamcheck.model import Chunk
from streamcheck.properties.canaries import BUGS, Canary, replica_build
from streamcheck.properties.canaries._build import subclass
from streamcheck.properties.canaries.force_flush_skips_gap import SkipsGaps
from streamcheck.properties.canaries.no_deferred_delivery import LiveAtOnce
from streamcheck.properties.canaries.unbounded_early_buffer import UnboundedEarlyBuffer

G = "g1"


def chunk(seq: int) -> Chunk:
    return Chunk(seq=seq, generation=G, data={"n": seq})


def _buffer(*mixins: type[ReorderBuffer]) -> ReorderBuffer:
    return subclass(ReorderBuffer, mixins)(
        generation=G, start_seq=0, now=0.0, timeout=0.5, capacity=100, idle_probe=2.0
    )


def test_the_force_flush_skips_the_gap_silently() -> None:
    buf = _buffer(SkipsGaps)
    buf.begin(0.0)
    buf.apply_log([], exhausted=True, now=0.0)
    buf.offer(chunk(2), 1.0)
    step = buf.on_timer(1.5)
    assert step.fetch_from is None  # impl's buffer reads the log here
    assert step.deliver == [chunk(2)]


def test_a_buffer_live_at_once_delivers_before_any_catch_up() -> None:
    buf = _buffer(LiveAtOnce)
    assert buf.offer(chunk(0), 0.0).deliver == [chunk(0)]
    # LibreChat's raw replay passed seqs 1-2 by: the frontier moves past them.
    assert isinstance(buf, LiveAtOnce)
    buf.replayed(2, 0.1)
    assert buf.offer(chunk(2), 0.2).deliver == []
    assert buf.offer(chunk(3), 0.3).deliver == [chunk(3)]


def test_the_unbounded_early_buffer_neither_overflows_nor_closes() -> None:
    early = UnboundedEarlyBuffer(max_events=2, max_bytes=100)
    for seq in range(5):
        early.record(chunk(seq), 10)
    assert not early.overflowed
    assert early.take() == [chunk(s) for s in range(5)]
    early.record(chunk(5), 10)
    assert early.take() == [chunk(5)]


def test_every_canary_restores_a_bug_and_none_is_impl_itself() -> None:
    assert set(BUGS) == set(Canary)
    assert replica_build(frozenset()).parts == ReplicaParts()
    for canary in Canary:
        assert replica_build(frozenset({canary})).parts != ReplicaParts(), canary


def test_all_canaries_compose_into_one_build() -> None:
    parts = replica_build(frozenset(Canary)).parts
    for part, base in zip(
        (parts.manager, parts.transport, parts.actor, parts.redis_bus),
        (
            ReplicaParts().manager,
            ReplicaParts().transport,
            ReplicaParts().actor,
            ReplicaParts().redis_bus,
        ),
        strict=True,
    ):
        assert issubclass(part, base)
    # A mechanism two canaries share is applied once.
    assert len(parts.transport.__mro__) == len(set(parts.transport.__mro__))


def test_impl_holds_no_canary() -> None:
    impl = Path(streamcheck.impl.__file__).parent
    mentions = [
        path.relative_to(impl)
        for path in sorted(impl.rglob("*.py"))
        if "canar" in path.read_text(encoding="utf-8").lower()
    ]
    assert mentions == []
