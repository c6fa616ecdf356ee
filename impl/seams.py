"""The seams of the reference implementation, for test harnesses and ports' test suites.

Applications need none of this: they use :mod:`streamcheck.impl`. A harness that
restores a historical bug (streamcheck's own harness keeps one module per bug under
``streamcheck.properties``) subclasses one of the classes below or hands the bus
another script; each seam has exactly one production implementation, in impl/, and
no flag that switches a bug on.

Template methods a subclass may override (names with an underscore are for subclasses,
never for callers; the state they read, such as ``StreamActor._subscribers`` and
``_producer``, is the actor's own and is touched only under its turn):

* :class:`StreamActor` (one stream on one replica): ``emit``, ``incoming`` and
  ``statistics``; ``_handle`` (one :data:`Command`), ``_loop``, ``_tell``;
  publishing: ``_publish``, ``_publish_batch_on_bus`` (a coalesced batch),
  ``_publish_on_bus`` (one event), ``_refused_here``, ``_floor``, ``_mark_lost``;
  readers: ``_attach``, ``_reorder_buffer``, ``_catch_up``,
  ``_catch_up_from_log``, ``_remove``; aborts: ``_obey_abort``,
  ``_abort_confirmed``.
* :class:`EventTransport`: ``start_producing``, ``emit_abort``, ``remove_abort``,
  ``cleanup``; ``_subscribe_channel``, ``_attach_reader``, ``_last_reader_left``.
* :class:`GenerationJobManager`: ``abort_job``; ``_accept_abort``, ``_early_buffer``,
  ``_keep_error``, ``_record_end``, ``_forget_idle_stream``.
* :class:`RedisBus`: ``publish`` (and ``publish_batch``), with the publish script's three steps
  (:data:`FENCE_LUA`, :data:`RAISE_TO_FLOOR_LUA`, :data:`LOG_AND_PUBLISH_LUA`) to
  build another script from.
* :class:`ReorderBuffer`: ``_gap_timed_out``; :class:`EarlyBuffer`: ``record``, ``take``.
* The replica's parts (:class:`~streamcheck.impl.ReplicaParts`) name the classes a
  replica is built from, and :class:`WallClock` / :class:`IdSource` its sources of
  nondeterminism.

Anything else with an underscore may change without notice.
"""

from streamcheck.impl._early_buffer import EarlyBuffer
from streamcheck.impl._log import LostWrites
from streamcheck.impl._manager import GenerationJobManager
from streamcheck.impl._reorder import SUPERSEDED, ReorderBuffer, Step
from streamcheck.impl._seams import IdSource, WallClock
from streamcheck.impl._service import ReplicaParts
from streamcheck.impl.transport._actor import (
    ActorStats,
    ActorTimings,
    DeliveryTotals,
    JobRecords,
    LocalSubscriber,
    StreamActor,
)
from streamcheck.impl.transport._bus import (
    Bus,
    EventKind,
    Published,
    PublishOutcome,
    PublishRefused,
)
from streamcheck.impl.transport._commands import (
    AbortCallback,
    Acknowledgement,
    Attach,
    Audit,
    Command,
    Continue,
    Detach,
    Emit,
    Flush,
    Incoming,
    OnAbort,
    Produce,
    Rearm,
    Reply,
    Restored,
    StopProducing,
)
from streamcheck.impl.transport._envelope import AbortSignal, SequencedEvent
from streamcheck.impl.transport._lua import FENCE_LUA, LOG_AND_PUBLISH_LUA, RAISE_TO_FLOOR_LUA
from streamcheck.impl.transport._redis_bus import RedisBus
from streamcheck.impl.transport._transport import EventTransport

__all__ = [
    "FENCE_LUA",
    "LOG_AND_PUBLISH_LUA",
    "RAISE_TO_FLOOR_LUA",
    "SUPERSEDED",
    "AbortCallback",
    "AbortSignal",
    "Acknowledgement",
    "ActorStats",
    "ActorTimings",
    "Attach",
    "Audit",
    "Bus",
    "Command",
    "Continue",
    "DeliveryTotals",
    "Detach",
    "EarlyBuffer",
    "Emit",
    "EventKind",
    "EventTransport",
    "Flush",
    "GenerationJobManager",
    "IdSource",
    "Incoming",
    "JobRecords",
    "LocalSubscriber",
    "LostWrites",
    "OnAbort",
    "Produce",
    "PublishOutcome",
    "PublishRefused",
    "Published",
    "Rearm",
    "RedisBus",
    "ReorderBuffer",
    "ReplicaParts",
    "Reply",
    "Restored",
    "SequencedEvent",
    "Step",
    "StopProducing",
    "StreamActor",
    "WallClock",
]
