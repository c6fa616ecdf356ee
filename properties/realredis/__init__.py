"""The real-Redis verification tier: tools that put real sockets and a real Redis under
the harness. :func:`open_fault_proxy` sits between a replica and Redis and injects
latency, cuts, blackholes and a slow reader on cue (see :mod:`._proxy`)."""

from streamcheck.properties.realredis._proxy import (
    LOOPBACK,
    Blackhole,
    Cut,
    Direction,
    Fault,
    FaultKind,
    FaultProxy,
    Latency,
    ProxyStatistics,
    SlowReader,
    open_fault_proxy,
)

__all__ = [
    "LOOPBACK",
    "Blackhole",
    "Cut",
    "Direction",
    "Fault",
    "FaultKind",
    "FaultProxy",
    "Latency",
    "ProxyStatistics",
    "SlowReader",
    "open_fault_proxy",
]
