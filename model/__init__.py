"""The vocabulary every subscriber sees, shared by impl/ and the harness.

A stream delivers, per subscriber, an ordered sequence of :class:`StreamEvent`:
chunks, then exactly one terminal (:class:`Done` or :class:`Failure`). When the
system can prove that events were lost for good it says so with a :class:`Gap`
instead of staying silent.
"""

from streamcheck.model._anomalies import (
    Anomaly,
    AnomalyKind,
    CheckReport,
    CheckStatistics,
    Verdict,
)
from streamcheck.model._checker import check
from streamcheck.model._events import (
    Chunk,
    Done,
    Failure,
    Gap,
    GapReason,
    JSONValue,
    SequencedEvent,
    StreamEvent,
    Terminal,
    is_terminal,
)
from streamcheck.model._history import (
    AbortRequested,
    BoundExceeded,
    Delivered,
    EmitKind,
    Emitted,
    FaultInjected,
    FaultKind,
    FaultsRecorded,
    GenerationStarted,
    GeneratorStopped,
    Healed,
    History,
    OpOutcome,
    Record,
    SessionClosed,
    SessionEnd,
    SessionMode,
    SessionOpened,
    SlowPath,
    WritesLost,
    digest,
)
from streamcheck.model._reference import (
    HistoryIndex,
    SessionExpectation,
    expectation_from_index,
    expected_for_session,
    index_history,
)

__all__ = [
    "AbortRequested",
    "Anomaly",
    "AnomalyKind",
    "BoundExceeded",
    "CheckReport",
    "CheckStatistics",
    "Chunk",
    "Delivered",
    "Done",
    "EmitKind",
    "Emitted",
    "Failure",
    "FaultInjected",
    "FaultKind",
    "FaultsRecorded",
    "Gap",
    "GapReason",
    "GenerationStarted",
    "GeneratorStopped",
    "Healed",
    "History",
    "HistoryIndex",
    "JSONValue",
    "OpOutcome",
    "Record",
    "SequencedEvent",
    "SessionClosed",
    "SessionEnd",
    "SessionExpectation",
    "SessionMode",
    "SessionOpened",
    "SlowPath",
    "StreamEvent",
    "Terminal",
    "Verdict",
    "WritesLost",
    "check",
    "digest",
    "expectation_from_index",
    "expected_for_session",
    "index_history",
    "is_terminal",
]
