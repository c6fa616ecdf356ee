"""The simulated Redis's trace as typed records: one frozen record per step it made.

Every command executed, SUBSCRIBE acknowledged, pub/sub message delivered or dropped,
log read, replication, connection opened or cut and failover is one
:class:`TraceRecord` in :attr:`SimRedis.records
<streamcheck.properties.sim.SimRedis.records>`, in the order Redis made them. A report
reads the fields it needs (which connections a publish reached, which log entries an
XRANGE returned) instead of parsing text; :meth:`TraceRecord.line` is the one-line
human-readable form (what :attr:`SimRedis.trace` lists), and :meth:`TraceRecord.to_json`
/ :func:`record_from_json` carry a record through a replay file.

Each record holds the simulated time in seconds since the simulation's first record,
the id of the step's item (``None`` for what is not a queued item: opening or closing a
connection, a failover) and ``position``: what the harness's position source returned
when the record was made (see :meth:`SimRedis.set_position_source
<streamcheck.properties.sim.SimRedis.set_position_source>`; the simulation passes the
length of its history, so a report places each record among the history's records
exactly, not by time, at which most of a run happens at once).

Connections are named ``<client>/c<n>`` (commands) and ``<client>/s<n>`` (pub/sub); the
client is one replica's (``r0.1``: replica ``r0``, incarnation 1), which ``client``
repeats so a reader needs no parsing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

__all__ = [
    "CommandExecuted",
    "ConnectionClosed",
    "ConnectionOpened",
    "FailedOver",
    "LogRead",
    "MessageDelivered",
    "MessageDropped",
    "PubSubRelayed",
    "Publication",
    "SubscribeAcknowledged",
    "SubscribeExecuted",
    "TraceRecord",
    "TraceRecordError",
    "UnsubscribeExecuted",
    "WriteReplicated",
    "record_from_json",
]

#: Characters of a message payload shown in :meth:`TraceRecord.line` (the record keeps
#: the whole payload).
LINE_PAYLOAD_CHARS: Final = 120


class TraceRecordError(ValueError):
    """A JSON object that is not a trace record this version knows."""


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[: limit - 1]}\u2026"


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceRecord:
    """What every record holds; see the module docstring."""

    #: The verb of :meth:`line` (``exec``, ``deliver``, ...).
    verb: ClassVar[str] = "?"

    time: float
    item: int | None = None
    position: int | None = None

    def line_verb(self) -> str:
        return self.verb

    def where(self) -> str:
        """The connection (or ``primary``, ``replica``, ``cluster``) the line names."""
        return "primary"

    def text(self) -> str:
        """The line's words after the connection."""
        return ""

    def line(self) -> str:
        """``<time> [#<item>] <verb> <where> [<text>]``, the trace line of old."""
        head = f"{self.time:.3f}{f' #{self.item}' if self.item else ''}"
        head = f"{head} {self.line_verb()} {self.where()}"
        text = self.text()
        return f"{head} {text}" if text else head

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": type(self).__name__}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, tuple):
                value = [v.to_json() if isinstance(v, Publication) else v for v in value]
            data[field.name] = value
        return data


@dataclass(frozen=True, slots=True, kw_only=True)
class _OnConnection(TraceRecord):
    connection: str
    client: str

    def where(self) -> str:
        return self.connection


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionOpened(_OnConnection):
    verb: ClassVar[str] = "open"
    pubsub: bool


@dataclass(frozen=True, slots=True)
class Publication:
    """One PUBLISH a command made (a client's or a script's): the connections the
    message was queued for, those subscribed to ``channel`` when it ran (none: lost)."""

    channel: str
    message: str
    receivers: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"channel": self.channel, "message": self.message, "receivers": list(self.receivers)}


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandExecuted(_OnConnection):
    """Redis ran a command and sent its reply (or its error reply)."""

    verb: ClassVar[str] = "exec"
    #: The command's name as sent (``EVALSHA``, ``HGETALL``, ...).
    command: str
    #: The script's name for EVAL and EVALSHA (``publish``, ``jobstore_create``...).
    script: str | None = None
    description: str
    #: The reply in short (``[0, 0]``, ``<hash of 7 fields>``); empty for an error.
    reply: str = ""
    #: The error reply (``NoScriptError: ...``), if any.
    error: str | None = None
    published: tuple[Publication, ...] = ()

    def text(self) -> str:
        outcome = f"error {self.error}" if self.error is not None else self.reply
        return f"{self.description} -> {outcome}"


@dataclass(frozen=True, slots=True, kw_only=True)
class LogRead(_OnConnection):
    """An XRANGE on a log (a stream key) and the entry ids it returned, in order.
    ``sent`` is the time at which the client sent the read (``None``: not known), on
    the records' scale."""

    verb: ClassVar[str] = "exec"
    key: str
    start: str
    end: str
    count: int | None = None
    ids: tuple[str, ...] = ()
    sent: float | None = None

    def text(self) -> str:
        count = "" if self.count is None else f" COUNT {self.count}"
        return f"XRANGE {self.key} {self.start} {self.end}{count} -> <{len(self.ids)} entries>"


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscribeExecuted(_OnConnection):
    """Redis ran SUBSCRIBE: from now on a PUBLISH on ``channel`` reaches the connection.
    The client learns it only when the acknowledgement is delivered."""

    verb: ClassVar[str] = "exec"
    channel: str

    def text(self) -> str:
        return f"SUBSCRIBE {self.channel}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscribeAcknowledged(_OnConnection):
    """The SUBSCRIBE's acknowledgement reached the client (its ``subscribe()`` returns)."""

    verb: ClassVar[str] = "deliver"
    channel: str

    def text(self) -> str:
        return f"ack subscribe {self.channel}"


@dataclass(frozen=True, slots=True, kw_only=True)
class UnsubscribeExecuted(_OnConnection):
    verb: ClassVar[str] = "exec"
    channel: str

    def text(self) -> str:
        return f"UNSUBSCRIBE {self.channel}"


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageDelivered(_OnConnection):
    """A pub/sub message reached the client; ``discarded`` if it had stopped wanting
    the channel (the client drops it unread)."""

    channel: str
    message: str
    discarded: bool = False

    verb: ClassVar[str] = "deliver"

    def line_verb(self) -> str:
        return "discard" if self.discarded else "deliver"

    def text(self) -> str:
        return f"message {self.channel} {_short(self.message, LINE_PAYLOAD_CHARS)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageDropped(_OnConnection):
    """Redis lost a queued pub/sub message for this connection (at-most-once)."""

    verb: ClassVar[str] = "drop"
    channel: str
    message: str

    def text(self) -> str:
        return f"message {self.channel} {_short(self.message, LINE_PAYLOAD_CHARS)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed(_OnConnection):
    """A connection ended: its queued commands failed (``failed``: their ids) and its
    queued messages were lost (``lost``); ``fault`` unless the client closed it."""

    verb: ClassVar[str] = "close"
    reason: str
    fault: bool
    failed: tuple[int, ...] = ()
    lost: tuple[int, ...] = ()

    def text(self) -> str:
        return f"{self.reason}; failed {list(self.failed)}, lost {list(self.lost)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteReplicated(TraceRecord):
    """The replica received a write (applied when it is next read)."""

    verb: ClassVar[str] = "replicate"
    description: str

    def where(self) -> str:
        return "replica"

    def text(self) -> str:
        return f"{self.description} -> ok"


@dataclass(frozen=True, slots=True, kw_only=True)
class FailedOver(TraceRecord):
    """The replica was promoted: ``writes_lost`` writes it had not received are gone;
    the connections it drops follow as :class:`ConnectionClosed` records."""

    verb: ClassVar[str] = "failover"
    writes_lost: int

    def text(self) -> str:
        return f"{self.writes_lost} unreplicated writes lost"


@dataclass(frozen=True, slots=True, kw_only=True)
class PubSubRelayed(TraceRecord):
    """From here on pub/sub is relayed by other nodes (Redis Cluster)."""

    verb: ClassVar[str] = "topology"

    def where(self) -> str:
        return "cluster"

    def text(self) -> str:
        return "pub/sub relayed by other nodes"


_TYPES: Final[Mapping[str, type[TraceRecord]]] = {
    cls.__name__: cls
    for cls in (
        ConnectionOpened,
        CommandExecuted,
        LogRead,
        SubscribeExecuted,
        SubscribeAcknowledged,
        UnsubscribeExecuted,
        MessageDelivered,
        MessageDropped,
        ConnectionClosed,
        WriteReplicated,
        FailedOver,
        PubSubRelayed,
    )
}

_FIELD_TYPES: Final[Mapping[str, tuple[type, ...]]] = {
    "time": (int, float),
    "item": (int, type(None)),
    "position": (int, type(None)),
    "count": (int, type(None)),
    "sent": (int, float, type(None)),
    "script": (str, type(None)),
    "error": (str, type(None)),
    "pubsub": (bool,),
    "fault": (bool,),
    "discarded": (bool,),
    "writes_lost": (int,),
}


def _publication(value: object) -> Publication:
    if not isinstance(value, Mapping):
        raise TraceRecordError(f"a publication is an object, not {value!r:.60}")
    channel, message, receivers = value.get("channel"), value.get("message"), value.get("receivers")
    if not isinstance(channel, str) or not isinstance(message, str):
        raise TraceRecordError("a publication has a string channel and message")
    if not isinstance(receivers, list) or not all(isinstance(r, str) for r in receivers):
        raise TraceRecordError("a publication's receivers are a list of strings")
    return Publication(channel, message, tuple(receivers))


def record_from_json(data: object) -> TraceRecord:
    """The record :meth:`TraceRecord.to_json` wrote; :class:`TraceRecordError` if
    ``data`` is not one (an unknown type, a missing or mistyped field)."""
    if not isinstance(data, Mapping):
        raise TraceRecordError(f"a trace record is an object, not {data!r:.60}")
    cls = _TYPES.get(str(data.get("type")))
    if cls is None:
        raise TraceRecordError(f"unknown trace record type {data.get('type')!r:.60}")
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name not in data:
            continue  # a missing field with no default fails below
        value = data[field.name]
        if field.name == "published":
            if not isinstance(value, list):
                raise TraceRecordError("published is a list")
            value = tuple(_publication(v) for v in value)
        elif field.name in ("ids", "failed", "lost"):
            wanted: type = str if field.name == "ids" else int
            if not isinstance(value, list) or not all(
                isinstance(v, wanted) and not isinstance(v, bool) for v in value
            ):
                raise TraceRecordError(f"{field.name} is a list of {wanted.__name__}")
            value = tuple(value)
        else:
            allowed = _FIELD_TYPES.get(field.name, (str,))
            if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
                raise TraceRecordError(f"{cls.__name__}.{field.name}: unexpected {value!r:.60}")
        values[field.name] = value
    try:
        return cls(**values)
    except TypeError as exc:
        raise TraceRecordError(f"{cls.__name__}: {exc}") from None
