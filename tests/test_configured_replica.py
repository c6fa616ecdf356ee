"""A replica built from LibreChat-style environment variables."""

from __future__ import annotations

import gc

import pytest

from streamcheck.impl import (
    BackendUnavailable,
    MemoryBackend,
    ReplicaSettings,
    StreamConfig,
    open_configured_replica,
    open_replica,
)
from tests.backends import collect, delta, texts


@pytest.mark.parametrize("use_redis", [False, True])
async def test_replica_from_environment_streams(
    use_redis: bool, request: pytest.FixtureRequest
) -> None:
    env = {"STREAMCHECK_REORDER_TIMEOUT_MS": "200"}
    if use_redis:
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("key_prefix")
        env |= {"USE_REDIS": "true", "REDIS_URI": url, "REDIS_KEY_PREFIX": prefix}
    config = StreamConfig.from_env(env)
    assert config.use_redis_streams is use_redis
    async with open_configured_replica(config) as manager:
        await manager.create_job("s1", "u1")
        sub = await manager.subscribe("s1", "u1")
        await manager.emit_chunk("s1", delta("hi"))
        await manager.emit_done("s1", {"final": True})
        assert texts(await collect(sub)) == ["hi"]


async def test_unreachable_redis_is_one_clear_error_without_the_password() -> None:
    config = StreamConfig.from_env(
        {"USE_REDIS": "true", "REDIS_URI": "redis://app:hunter2@127.0.0.1:9"}
    )
    with pytest.raises(BackendUnavailable) as info:
        async with open_configured_replica(config):
            pass
    assert "hunter2" not in str(info.value)
    assert "redis://app:***@127.0.0.1:9" in str(info.value)


@pytest.mark.parametrize("freeze", [False, True])
async def test_a_replica_freezes_the_heap_only_when_asked(freeze: bool) -> None:
    gc.unfreeze()
    try:
        settings = ReplicaSettings(freeze_heap_at_start=freeze)
        async with open_replica(MemoryBackend(), settings=settings) as manager:
            assert (gc.get_freeze_count() > 0) is freeze
            # Frozen or not, the replica streams.
            await manager.create_job("s1", "u1")
            sub = await manager.subscribe("s1", "u1")
            await manager.emit_chunk("s1", delta("hi"))
            await manager.emit_done("s1", {"final": True})
            assert texts(await collect(sub)) == ["hi"]
    finally:
        gc.unfreeze()
