"""Python's garbage-collector pauses while a block runs, for reading latency outliers.

A full (generation 2) collection walks every tracked object in the process and stops
everything else meanwhile: with a hundred thousand objects alive it takes tens of
milliseconds on a 2-core VM, which lands in a latency benchmark's tail. Recording the
pauses beside the percentiles tells such an outlier from one of ours.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

FULL_GENERATION = 2


@dataclass(slots=True)
class GcPauses:
    #: Seconds each collection took, in the order they ran.
    seconds: list[float] = field(default_factory=list)
    full_collections: int = 0

    @property
    def longest(self) -> float:
        return max(self.seconds, default=0.0)


@contextmanager
def recording_gc_pauses() -> Iterator[GcPauses]:
    """Record every collection that runs while the block runs."""
    pauses = GcPauses()
    started_at = 0.0

    def on_collection(phase: str, info: dict[str, int]) -> None:
        nonlocal started_at
        if phase == "start":
            started_at = time.perf_counter()
            return
        pauses.seconds.append(time.perf_counter() - started_at)
        if info["generation"] == FULL_GENERATION:
            pauses.full_collections += 1

    gc.callbacks.append(on_collection)
    try:
        yield pauses
    finally:
        gc.callbacks.remove(on_collection)
