"""Session-wide Redis fixtures.

All fixtures are synchronous on purpose: pytest-trio reuses an async fixture's value
across Hypothesis examples (docs/redis.md), so tests take a URL
here and open their client inside the test body with ``async with open_redis(url)``.

Tests that use ``redis_url`` are marked ``redis`` and tests that use
``redis_cluster_url`` are marked ``cluster`` automatically, so ``-m "not cluster"``
deselects them.

A developer's Redis on 127.0.0.1:6379 (another port with
``STREAMCHECK_SHARED_REDIS_PORT``) is shared with whoever else uses it, so the suite
leaves nothing there: every key a test writes is under its ``key_prefix``, which starts
with this run's :data:`RUN_KEY_PREFIX`; the test's keys are removed when it ends, and
any key left under the run's prefix when the session ends. Removal goes by SCAN, never
FLUSH. Tests that count connections, kill clients or read server-wide figures start
their own server (``tests.redis_support.RedisServer``) instead.
"""

from __future__ import annotations

import gc
import itertools
import os
import sys
import uuid
from collections.abc import Iterator

import pytest

from tests.redis_support import (
    RedisClusterServers,
    RedisServer,
    answers_ping,
    delete_keys,
    have_redis_binaries,
)

#: The port of a Redis the suite may share; used when it answers this fast.
SHARED_REDIS_PORT = int(os.environ.get("STREAMCHECK_SHARED_REDIS_PORT", "6379"))
SHARED_REDIS_PROBE_S = 0.5
#: Every key this pytest process writes to the shared Redis starts with this.
RUN_KEY_PREFIX = f"t:{uuid.uuid4().hex[:8]}:"

_MARKER_FOR_FIXTURE = {"redis_url": "redis", "redis_cluster_url": "cluster"}
_test_numbers = itertools.count(1)
#: The shared Redis's port once a test has used it (the cleanups look here).
_shared_in_use: list[int] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        for fixture, marker in _MARKER_FOR_FIXTURE.items():
            if fixture in fixtures and item.get_closest_marker(marker) is None:
                item.add_marker(getattr(pytest.mark, marker))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A standalone Redis: the shared one if it answers (the run's keys are removed at
    the end), else a private server."""
    if answers_ping(SHARED_REDIS_PORT, timeout=SHARED_REDIS_PROBE_S):
        _shared_in_use.append(SHARED_REDIS_PORT)
        try:
            yield f"redis://127.0.0.1:{SHARED_REDIS_PORT}"
        finally:
            delete_keys(SHARED_REDIS_PORT, RUN_KEY_PREFIX)
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
def key_prefix() -> Iterator[str]:
    """A prefix unique to this test, under the run's, so tests sharing one Redis never
    see each other's keys; the test's keys on the shared Redis go when it ends."""
    prefix = f"{RUN_KEY_PREFIX}{next(_test_numbers)}:"
    yield prefix
    for port in _shared_in_use:
        delete_keys(port, prefix)


@pytest.fixture
def collect_crashed_worlds() -> Iterator[None]:
    """After a test that crashes simulated worlds on purpose, finalize what they left."""
    yield
    for _ in range(3):
        gc.collect()


#: What the garbage collector's finalizers say about a trio run abandoned mid-way (a
#: simulated world that crashed or that Hypothesis stopped): nothing about the test that
#: happens to be running when the collector gets to it.
_ABANDONED_RUN = ("Nursery misnesting", "Cancel scope stack corrupted", "ignored GeneratorExit")


@pytest.fixture(autouse=True)
def _finalize_abandoned_trio_runs() -> Iterator[None]:
    """After each test, finalize the trio runs it abandoned, dropping only their noise;
    any other unraisable exception still reaches pytest (and fails the test)."""
    yield
    original = sys.unraisablehook

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        if not any(text in str(unraisable.exc_value) for text in _ABANDONED_RUN):
            original(unraisable)

    sys.unraisablehook = hook
    try:
        gc.collect()
    finally:
        sys.unraisablehook = original
