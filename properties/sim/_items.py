"""The simulated Redis's queued items and connections: what a step acts on (see
:mod:`streamcheck.properties.sim._redis`).

Every nondeterministic event is one item with an id from one counter: a :class:`_Command`
queued on a connection, a :class:`_Delivery` queued on a subscriber connection's inbound
FIFO, or a :class:`_Replication` queued for the replica. :class:`PendingItem` is the
public view of one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import trio

from streamcheck.impl.redis import PubSubMessage

if TYPE_CHECKING:
    from streamcheck.properties.sim._client import SimClient

ItemKind = Literal["command", "delivery", "replication"]
_PLAIN, _SUBSCRIBE, _UNSUBSCRIBE = 0, 1, 2


class RedisCommandError(Exception):
    """Redis answered with an error (a Lua error, WRONGTYPE, ...): a programming error,
    as the coredis adapter lets its ResponseError propagate."""


@dataclass(frozen=True, slots=True)
class PendingItem:
    """One runnable step: a command to execute, a delivery, or a replication."""

    id: int
    kind: ItemKind
    connection: str
    description: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SimRedisStatistics:
    #: Commands executed (SUBSCRIBE/UNSUBSCRIBE included).
    commands: int
    #: Commands that failed with RedisConnectionError (not executed, or reply lost).
    commands_failed: int
    #: Message deliveries queued by PUBLISH (one per receiving connection).
    messages_published: int
    messages_delivered: int
    #: Lost by :meth:`SimRedis.drop`.
    messages_dropped: int
    #: PUBLISHes that found no subscriber.
    messages_unheard: int
    #: Queued deliveries lost with their connection (disconnect, failover, close).
    messages_lost: int
    #: Delivered for a channel the subscriber had already unsubscribed.
    messages_discarded: int
    disconnects: int
    failovers: int
    #: Writes waiting for the replica.
    replication_lag: int
    #: Unreplicated writes discarded by failovers.
    writes_lost: int
    connections: int


class _Connection:
    __slots__ = ("client", "closed", "commands", "name")

    def __init__(self, name: str, client: SimClient) -> None:
        self.name = name
        self.client = client
        self.commands: deque[_Command] = deque()
        self.closed = False


class _SubConnection(_Connection):
    __slots__ = ("inbound", "ready", "receiver", "server_channels", "wanted")

    def __init__(self, name: str, client: SimClient) -> None:
        super().__init__(name, client)
        self.inbound: deque[_Delivery] = deque()
        self.ready: deque[PubSubMessage] = deque()
        self.wanted: set[str] = set()
        self.server_channels: set[str] = set()
        self.receiver: trio.Event | None = None

    def lane_heads(self) -> list[_Delivery]:
        """The deliverable items: the first queued delivery of each lane."""
        heads: list[_Delivery] = []
        lanes: set[str] = set()
        for delivery in self.inbound:
            if delivery.lane not in lanes:
                lanes.add(delivery.lane)
                heads.append(delivery)
        return heads


class _Command:
    __slots__ = (
        "channel",
        "connection",
        "description",
        "done",
        "error",
        "event",
        "fields",
        "id",
        "kind",
        "public",
        "result",
        "sent",
        "shape",
    )

    def __init__(
        self,
        item_id: int,
        connection: _Connection,
        fields: list[bytes],
        shape: Callable[[Any], Any],
        description: str,
        kind: int,
        channel: str,
        event: trio.Event | None,
    ) -> None:
        self.id = item_id
        self.connection = connection
        self.fields = fields
        self.shape = shape
        self.description = description
        self.kind = kind
        self.channel = channel
        self.event = event
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False
        self.public: PendingItem | None = None
        #: The simulated time at which the client sent the command (``None``: not
        #: known), so a log read's record can say what arrived while it was on its way.
        self.sent: float | None = None


class _Delivery:
    __slots__ = ("ack", "channel", "connection", "data", "id", "lane", "public")

    def __init__(
        self,
        item_id: int,
        connection: _SubConnection,
        channel: str,
        data: str,
        ack: _Command | None,
        lane: str = "",
    ) -> None:
        self.id = item_id
        self.connection = connection
        self.channel = channel
        self.data = data
        self.ack = ack
        #: Deliveries of one lane arrive in order; lanes are independent (see
        #: SimRedis.relay_pubsub).
        self.lane = lane
        self.public: PendingItem | None = None


class _Replication:
    __slots__ = ("at", "description", "fields", "id", "public")

    def __init__(self, item_id: int, fields: list[bytes], at: float, description: str) -> None:
        self.id = item_id
        self.fields = fields
        self.at = at
        self.description = description
        self.public: PendingItem | None = None


_Item = _Command | _Delivery | _Replication


class _NoScript(Exception):
    """Internal: EVALSHA answered NOSCRIPT; run_script retries with EVAL."""


def _item_id(item: _Item) -> int:
    return item.id
