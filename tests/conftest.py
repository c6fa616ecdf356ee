"""Session-wide Redis fixtures.

All fixtures are synchronous on purpose: pytest-trio reuses an async fixture's value
across Hypothesis examples (docs/redis.md), so tests take a URL
here and open their client inside the test body with ``async with open_redis(url)``.

Tests that use ``redis_url`` are marked ``redis`` and tests that use
``redis_cluster_url`` are marked ``cluster`` automatically, so ``-m "not cluster"``
deselects them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.redis_support import (
    RedisClusterServers,
    RedisServer,
    answers_ping,
    have_redis_binaries,
)

# A developer's (or CI's) Redis on the default port is used when it answers this fast.
SHARED_REDIS_PORT = 6379
SHARED_REDIS_PROBE_S = 0.5

_MARKER_FOR_FIXTURE = {"redis_url": "redis", "redis_cluster_url": "cluster"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        for fixture, marker in _MARKER_FOR_FIXTURE.items():
            if fixture in fixtures and item.get_closest_marker(marker) is None:
                item.add_marker(getattr(pytest.mark, marker))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A standalone Redis: 127.0.0.1:6379 if it answers, else a private server."""
    if answers_ping(SHARED_REDIS_PORT, timeout=SHARED_REDIS_PROBE_S):
        yield f"redis://127.0.0.1:{SHARED_REDIS_PORT}"
        return
    if not have_redis_binaries():
        pytest.skip("no Redis on 127.0.0.1:6379 and redis-server/redis-cli are not on PATH")
    with RedisServer() as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A private 3-master Redis Cluster (no replicas) for the whole session."""
    if not have_redis_binaries():
        pytest.skip("redis-server/redis-cli are not on PATH: can't start a Redis Cluster")
    with RedisClusterServers(masters=3) as cluster:
        yield cluster.url


@pytest.fixture
def key_prefix() -> str:
    """A prefix unique to this test, so tests sharing one Redis never see each other's keys."""
    return f"t:{uuid.uuid4().hex[:8]}:"
