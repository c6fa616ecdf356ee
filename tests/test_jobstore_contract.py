"""The JobStore contract, run against MemoryJobStore and RedisJobStore alike.

The Redis variant needs the RedisLike adapter (``tests.redis_support.open_redis``) and a
real Redis; each test uses its own key prefix (its keys are removed when it ends).
Redis-only checks (hash layout, TTLs, the chunk log) are at the end.
"""

from __future__ import annotations

import gc
import importlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import cast

import pytest

from streamcheck.impl._errors import IllegalTransition
from streamcheck.impl._seams import ManualWallClock
from streamcheck.impl._status import ALLOWED_TRANSITIONS, JobStatus
from streamcheck.impl._types import JobUpdate, UsageMetadata, UserMessage
from streamcheck.impl.jobstore import JobStore, MemoryJobStore, RedisJobStore
from streamcheck.impl.jobstore._redis import USER_JOBS_TTL_S
from streamcheck.impl.redis import Keys, LuaScript, RedisClientName, RedisLike
from streamcheck.impl.redis._protocol import ScriptArg
from streamcheck.model import JSONValue
from tests.backends import NEEDS_GLIDE

MINUTE = 60_000

OpenRedis = Callable[[str], AbstractAsyncContextManager[RedisLike]]

_TTL = LuaScript("test_ttl", "return redis.call('TTL', KEYS[1])")
_SET = LuaScript("test_set", "return redis.call('SET', KEYS[1], ARGV[1])")
_HSET = LuaScript("test_hset", "return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])")
_XADD = LuaScript(
    "test_xadd",
    "return redis.call('XADD', KEYS[1], ARGV[1], 'seq', ARGV[2], 'type', ARGV[3], "
    "'gen', ARGV[4], 'event', ARGV[5])",
)


@dataclass(frozen=True)
class Backend:
    name: str
    clock: ManualWallClock
    make: Callable[[int], JobStore]  # stale_job_timeout_ms -> store
    redis: RedisLike | None
    keys: Keys

    def store(self, *, stale_job_timeout_ms: int = 20 * MINUTE) -> JobStore:
        return self.make(stale_job_timeout_ms)


@dataclass(frozen=True)
class RedisSpec:
    url: str
    key_prefix: str
    open_redis: OpenRedis


def _redis_spec(request: pytest.FixtureRequest, client: RedisClientName) -> RedisSpec:
    try:
        module = importlib.import_module("tests.redis_support")
    except ImportError as exc:
        pytest.skip(f"redis adapter not available: {exc}")
    open_as = cast(Callable[..., AbstractAsyncContextManager[RedisLike]], module.open_redis_as)
    return RedisSpec(
        url=request.getfixturevalue("redis_url"),
        key_prefix=request.getfixturevalue("key_prefix"),
        open_redis=lambda url: open_as(url, client=client),
    )


#: The Redis clients the Redis variants run on (glide where it is installed).
CLIENTS = ["coredis", pytest.param("glide", marks=NEEDS_GLIDE)]


@asynccontextmanager
async def _redis_backend(spec: RedisSpec, clock: ManualWallClock) -> AsyncIterator[Backend]:
    keys = Keys(prefix=spec.key_prefix)
    async with spec.open_redis(spec.url) as redis:

        def make(stale: int) -> JobStore:
            return RedisJobStore(redis, keys=keys, wall_clock=clock, stale_job_timeout_ms=stale)

        # The key_prefix fixture removes the test's keys when it ends.
        yield Backend(name="redis", clock=clock, make=make, redis=redis, keys=keys)


@pytest.fixture(params=["memory", "redis", pytest.param("redis-glide", marks=NEEDS_GLIDE)])
def backend_spec(request: pytest.FixtureRequest) -> RedisSpec | None:
    if request.param == "memory":
        return None
    return _redis_spec(request, "glide" if request.param == "redis-glide" else "coredis")


@pytest.fixture
async def backend(backend_spec: RedisSpec | None) -> AsyncIterator[Backend]:
    """Each backend in turn (the contract)."""
    clock = ManualWallClock()
    if backend_spec is None:
        yield Backend(
            name="memory",
            clock=clock,
            make=lambda stale: MemoryJobStore(wall_clock=clock, stale_job_timeout_ms=stale),
            redis=None,
            keys=Keys(),
        )
        return
    async with _redis_backend(backend_spec, clock) as redis_backend:
        yield redis_backend


@pytest.fixture(params=CLIENTS)
def redis_spec(request: pytest.FixtureRequest) -> RedisSpec:
    return _redis_spec(request, request.param)


@dataclass(frozen=True)
class RedisEnv:
    """The Redis backend with direct access to the server, for layout checks."""

    store: RedisJobStore
    redis: RedisLike
    keys: Keys
    clock: ManualWallClock

    async def ttl(self, key: str) -> int:
        return int(cast(int, await self.redis.run_script(_TTL, keys=[key], args=[])))

    async def xadd(self, stream_id: str, seq: int, kind: str, gen: str, event: JSONValue) -> None:
        args: list[ScriptArg] = [f"{seq}-1", seq, kind, gen, json.dumps(event)]
        await self.redis.run_script(_XADD, keys=[self.keys.chunks(stream_id)], args=args)

    async def hset(self, stream_id: str, field: str, value: str) -> None:
        key = self.keys.job(stream_id)
        await self.redis.run_script(_HSET, keys=[key], args=[field, value])


@pytest.fixture
async def redis_env(redis_spec: RedisSpec) -> AsyncIterator[RedisEnv]:
    """The Redis backend only."""
    clock = ManualWallClock()
    async with _redis_backend(redis_spec, clock) as b:
        assert b.redis is not None
        store = RedisJobStore(b.redis, keys=b.keys, wall_clock=clock)
        yield RedisEnv(store=store, redis=b.redis, keys=b.keys, clock=clock)


class Graph:
    def __init__(self, parts: list[JSONValue], steps: list[JSONValue]) -> None:
        self.parts = parts
        self.steps = steps

    def get_content_parts(self) -> list[JSONValue]:
        return list(self.parts)

    def get_run_steps(self) -> list[JSONValue]:
        return list(self.steps)


def illegal(stream_id: str, current: str, requested: str) -> str:
    message = f"can't move stream {stream_id!r} from status {current!r} to {requested!r}"
    return f"^{re.escape(message)}$"


# -- the contract ----------------------------------------------------------------------


async def test_created_job_reads_back_running_with_defaults(backend: Backend) -> None:
    store = backend.store()
    job = await store.create_job("s1", "u1", "conv-1", generation_id="g1")
    assert job == await store.get_job("s1")
    assert (job.stream_id, job.user_id, job.conversation_id) == ("s1", "u1", "conv-1")
    assert (job.status, job.generation_id, job.start_seq) == (JobStatus.RUNNING, "g1", 0)
    assert job.created_at == backend.clock.now_ms()
    assert job.sync_sent is False
    assert await store.has_job("s1")
    assert await store.get_job("nope") is None
    assert not await store.has_job("nope")


async def test_every_field_survives_an_update_round_trip(backend: Backend) -> None:
    store = backend.store()
    await store.create_job("s", "u", generation_id="g")
    update = JobUpdate(
        status=JobStatus.COMPLETE,
        completed_at=backend.clock.now_ms() + 7,
        error="it broke",
        user_message=UserMessage(
            message_id="m1", parent_message_id="p0", conversation_id="c1", text="héllo"
        ),
        response_message_id="r1",
        sender="GPT",
        sync_sent=True,
        final_event=json.dumps({"final": True, "content": []}),
        endpoint="openAI",
        icon_url="https://example.invalid/i.png",
        model="gpt-x",
        prompt_tokens=42,
        last_active_at=backend.clock.now_ms() + 3,
    )
    assert await store.update_job("s", update, expected_generation="g")
    job = await store.get_job("s")
    assert job is not None
    for name in JobUpdate.__slots__:
        assert getattr(job, name) == getattr(update, name), name


@pytest.mark.parametrize("bad_id", ["", "a{b}", "tab\there"])
async def test_invalid_ids_are_refused_before_any_io(backend: Backend, bad_id: str) -> None:
    store = backend.store()
    with pytest.raises(ValueError, match=r"^stream id must"):
        await store.create_job(bad_id, "u", generation_id="g")
    with pytest.raises(ValueError, match=r"^user id must"):
        await store.create_job("s", bad_id, generation_id="g")
    assert not await store.has_job("s")


async def test_update_never_resurrects_a_missing_or_deleted_job(backend: Backend) -> None:
    store = backend.store()
    assert not await store.update_job("s", JobUpdate(sender="AI"))
    assert not await store.has_job("s")
    await store.create_job("s", "u", generation_id="g")
    assert await store.delete_job("s")
    assert not await store.update_job("s", JobUpdate(status=JobStatus.COMPLETE))
    assert not await store.has_job("s")
    assert not await store.delete_job("s")


async def test_update_with_another_generation_changes_nothing(backend: Backend) -> None:
    store = backend.store()
    await store.create_job("s", "u", generation_id="g1")
    update = JobUpdate(status=JobStatus.ABORTED, error="late")
    assert not await store.update_job("s", update, expected_generation="g0")
    job = await store.get_job("s")
    assert job is not None
    assert (job.status, job.error) == (JobStatus.RUNNING, None)


@pytest.mark.parametrize("current", list(JobStatus))
@pytest.mark.parametrize("requested", list(JobStatus))
async def test_transitions_follow_the_status_table(
    backend: Backend, current: JobStatus, requested: JobStatus
) -> None:
    store = backend.store()
    await store.create_job("s", "u", generation_id="g")
    await store.update_job("s", JobUpdate(status=current))
    if requested in ALLOWED_TRANSITIONS[current]:
        assert await store.update_job("s", JobUpdate(status=requested), expected_generation="g")
        expected = requested
    else:
        with pytest.raises(IllegalTransition, match=illegal("s", current.value, requested.value)):
            await store.update_job("s", JobUpdate(status=requested, sender="x"))
        expected = current
    job = await store.get_job("s")
    assert job is not None
    assert job.status is expected
    assert job.sender is None
    assert (job.completed_at is not None) == expected.is_terminal


async def test_create_replaces_a_reused_stream_id_without_inherited_fields(
    backend: Backend,
) -> None:
    # Fields of the previous turn used to survive on the re-created hash (docs/librechat.md bug 16).
    store = backend.store()
    await store.create_job("s", "u", "conv", generation_id="g1")
    await store.update_job(
        "s",
        JobUpdate(
            status=JobStatus.ERROR,
            error="boom",
            sender="AI",
            sync_sent=True,
            final_event="{}",
            prompt_tokens=3,
            response_message_id="r",
            user_message=UserMessage(message_id="m"),
        ),
    )
    await store.save_run_steps("s", [{"id": "old-step"}])
    backend.clock.advance(10)
    new = await store.create_job("s", "u", generation_id="g2")
    job = await store.get_job("s")
    assert job == new
    assert (job.status, job.generation_id) == (JobStatus.RUNNING, "g2")
    assert job.created_at == backend.clock.now_ms()
    assert job.sync_sent is False
    unset = (job.error, job.sender, job.final_event, job.prompt_tokens, job.conversation_id)
    assert unset == (None,) * 5
    assert (job.response_message_id, job.user_message, job.completed_at) == (None,) * 3
    assert await store.get_run_steps("s") == []
    # The predecessor's late writes cannot touch the replacement.
    assert not await store.update_job("s", JobUpdate(sender="x"), expected_generation="g1")
    assert not await store.delete_job("s", expected_generation="g1")
    assert await store.has_job("s")


async def test_delete_with_a_generation_only_deletes_that_generation(backend: Backend) -> None:
    store = backend.store()
    await store.create_job("s", "u", generation_id="g1")
    assert not await store.delete_job("s", expected_generation="other")
    assert await store.has_job("s")
    assert [job.stream_id for job in await store.get_running_jobs()] == ["s"]
    assert await store.delete_job("s", expected_generation="g1")
    assert not await store.has_job("s")
    assert await store.get_running_jobs() == []


async def test_running_jobs_and_counts_leave_out_terminal_jobs(backend: Backend) -> None:
    store = backend.store()
    await store.create_job("a", "u", generation_id="g1")
    backend.clock.advance(1)
    await store.create_job("b", "u", generation_id="g2")
    await store.create_job("c", "u", generation_id="g3")
    await store.update_job("c", JobUpdate(status=JobStatus.COMPLETE))
    assert [job.stream_id for job in await store.get_running_jobs()] == ["a", "b"]
    assert await store.get_job_count_by_status(JobStatus.RUNNING) == 2
    assert await store.get_job_count_by_status(JobStatus.ABORTED) == 0


async def test_user_index_heals_missing_terminal_and_reassigned_ids(backend: Backend) -> None:
    store = backend.store()
    for stream_id in ("a", "b", "c", "d"):
        await store.create_job(stream_id, "u1", generation_id=f"g-{stream_id}")
    await store.create_job("e", "u2", generation_id="g-e")
    await store.update_job("a", JobUpdate(status=JobStatus.COMPLETE))
    await store.delete_job("b")
    await store.create_job("c", "u2", generation_id="g-c2")  # now another user's turn
    assert await store.get_active_job_ids_by_user("u1") == ["d"]
    assert await store.get_active_job_ids_by_user("u2") == ["c", "e"]
    assert await store.get_active_job_ids_by_user("nobody") == []
    if backend.redis is not None:
        members = await backend.redis.smembers(backend.keys.user_jobs("u1"))
        assert members == {"d"}


async def test_cleanup_reaps_idle_running_jobs_only(backend: Backend) -> None:
    store = backend.store(stale_job_timeout_ms=20 * MINUTE)
    await store.create_job("idle", "u", generation_id="g-idle")
    await store.create_job("busy", "u", generation_id="g-busy")
    backend.clock.advance(19 * MINUTE)
    await store.record_activity("busy", "g-busy")
    backend.clock.advance(MINUTE + 1)
    assert await store.cleanup() == 1
    assert not await store.has_job("idle")
    assert await store.has_job("busy")
    assert await store.get_active_job_ids_by_user("u") == ["busy"]
    assert await take_reaped(store) == [("idle", "g-idle")]
    assert await take_reaped(store) == []


async def test_cleanup_does_not_reap_a_replacement_of_a_stale_job(backend: Backend) -> None:
    # Reaping used to act on whatever job held the stream id, replacements included.
    store = backend.store(stale_job_timeout_ms=MINUTE)
    await store.create_job("s", "u", generation_id="old")
    backend.clock.advance(MINUTE + 1)
    await store.create_job("s", "u", generation_id="new")
    await store.record_activity("s", "old")  # the predecessor's activity is ignored
    assert await store.cleanup() == 0
    job = await store.get_job("s")
    assert job is not None
    assert (job.generation_id, job.last_active_at) == ("new", None)
    assert await take_reaped(store) == []


async def test_stale_timeout_zero_never_reaps(backend: Backend) -> None:
    store = backend.store(stale_job_timeout_ms=0)
    await store.create_job("s", "u", generation_id="g")
    backend.clock.advance(10**8)
    await store.cleanup()
    assert await store.has_job("s")


async def test_content_comes_from_the_graph_until_it_is_collected(backend: Backend) -> None:
    store = backend.store()
    await store.create_job("s", "u", generation_id="g")
    assert await store.get_content_parts("s") is None
    graph = Graph([{"type": "text", "text": "hi"}], [{"id": "step-1"}])
    store.set_graph("s", graph)
    assert await store.get_content_parts("s") == [{"type": "text", "text": "hi"}]
    assert await store.get_run_steps("s") == [{"id": "step-1"}]
    del graph
    gc.collect()
    assert await store.get_content_parts("s") is None
    assert await store.get_run_steps("s") == []
    await store.save_run_steps("s", [{"id": "saved"}])
    assert await store.get_run_steps("s") == [{"id": "saved"}]
    await store.clear_content_state("s")
    assert await store.get_run_steps("s") == []


async def test_collected_usage_is_kept_per_stream(backend: Backend) -> None:
    store = backend.store()
    usage = [UsageMetadata(input_tokens=5, output_tokens=7, model="m")]
    store.set_collected_usage("a", usage)
    assert store.get_collected_usage("a") == usage
    assert store.get_collected_usage("b") == []


async def take_reaped(store: JobStore) -> list[tuple[str, str]]:
    assert isinstance(store, MemoryJobStore | RedisJobStore)
    return await store.take_reaped()


# -- Redis only: LibreChat's layout, TTLs and the chunk log --------------------------------


async def test_job_hash_uses_librechat_field_names(redis_env: RedisEnv) -> None:
    store, now = redis_env.store, redis_env.clock.now_ms()
    await store.create_job("s", "u", "conv", generation_id="g")
    await store.update_job(
        "s",
        JobUpdate(
            status=JobStatus.COMPLETE,
            completed_at=now + 5,
            user_message=UserMessage(message_id="m", parent_message_id="p", text="hi"),
            response_message_id="r",
            sender="AI",
            sync_sent=True,
            final_event='{"final":true}',
            endpoint="agents",
            icon_url="icon",
            model="gpt",
            prompt_tokens=9,
            last_active_at=now + 1,
        ),
    )
    assert await redis_env.redis.hgetall(redis_env.keys.job("s")) == {
        "streamId": "s",
        "userId": "u",
        "status": "complete",
        "createdAt": str(now),
        "completedAt": str(now + 5),
        "conversationId": "conv",
        "userMessage": '{"messageId":"m","parentMessageId":"p","text":"hi"}',
        "responseMessageId": "r",
        "sender": "AI",
        "syncSent": "1",
        "finalEvent": '{"final":true}',
        "endpoint": "agents",
        "iconURL": "icon",
        "model": "gpt",
        "promptTokens": "9",
        "lastActiveAt": str(now + 1),
        "generationId": "g",
        "startSeq": "0",
    }


async def test_ttls_are_1200_s_while_running_and_300_s_once_terminal(redis_env: RedisEnv) -> None:
    store, keys = redis_env.store, redis_env.keys
    await store.create_job("s", "u", generation_id="g")
    await redis_env.xadd("s", 0, "chunk", "g", {"event": "on_message_delta", "data": {}})
    await store.save_run_steps("s", [{"id": "step"}])
    assert await redis_env.ttl(keys.job("s")) == 1200
    assert await redis_env.ttl(keys.run_steps("s")) == 1200
    assert await redis_env.redis.smembers(keys.running) == {"s"}
    await store.update_job("s", JobUpdate(status=JobStatus.COMPLETE), expected_generation="g")
    for key in (keys.job("s"), keys.chunks("s"), keys.run_steps("s")):
        assert await redis_env.ttl(key) == 300, key
    # The chunk log is kept (not deleted) so a late subscriber can still replay it.
    assert len(await redis_env.redis.xrange(keys.chunks("s"), "-", "+")) == 1
    assert await redis_env.redis.smembers(keys.running) == set()


async def test_the_user_index_expires_24_h_after_the_users_last_create(
    redis_env: RedisEnv,
) -> None:
    # It outlives its jobs (1200 s while running, 300 s once ended) but not for ever: a
    # user who never lists their jobs left the set behind without a TTL.
    store, key = redis_env.store, redis_env.keys.user_jobs("u")
    await store.create_job("s", "u", generation_id="g")
    assert await redis_env.ttl(key) == USER_JOBS_TTL_S
    await redis_env.redis.expire(key, 10)
    await store.create_job("t", "u", generation_id="g")
    assert await redis_env.ttl(key) == USER_JOBS_TTL_S
    await store.update_job("s", JobUpdate(status=JobStatus.COMPLETE), expected_generation="g")
    assert await store.get_active_job_ids_by_user("u") == ["t"]
    assert await redis_env.ttl(key) > 0


async def test_a_running_ttl_over_a_day_keeps_the_user_index_as_long(
    redis_env: RedisEnv,
) -> None:
    store = RedisJobStore(
        redis_env.redis, keys=redis_env.keys, wall_clock=redis_env.clock, running_ttl_s=100_000
    )
    await store.create_job("s", "u", generation_id="g")
    assert await redis_env.ttl(redis_env.keys.user_jobs("u")) == 100_000


async def test_activity_slides_the_running_ttl_for_the_current_generation_only(
    redis_env: RedisEnv,
) -> None:
    store, key = redis_env.store, redis_env.keys.job("s")
    await store.create_job("s", "u", generation_id="g")
    await redis_env.redis.expire(key, 10)
    await store.record_activity("s", "other")
    assert await redis_env.ttl(key) == 10
    redis_env.clock.advance(50)
    await store.record_activity("s", "g")
    assert await redis_env.ttl(key) == 1200
    job = await store.get_job("s")
    assert job is not None
    assert job.last_active_at == redis_env.clock.now_ms()


async def test_start_seq_is_the_stream_counter_at_creation(redis_env: RedisEnv) -> None:
    set_script = _SET
    await redis_env.redis.run_script(set_script, keys=[redis_env.keys.seq("s")], args=["7"])
    job = await redis_env.store.create_job("s", "u", generation_id="g")
    assert job.start_seq == 7
    assert (await redis_env.redis.hgetall(redis_env.keys.job("s")))["startSeq"] == "7"
    assert await redis_env.redis.get(redis_env.keys.seq("s")) == "7"  # read, never written


async def test_delete_is_guarded_by_generation_and_removes_every_stream_key(
    redis_env: RedisEnv,
) -> None:
    store, keys = redis_env.store, redis_env.keys
    await store.create_job("s", "u", generation_id="g")
    await redis_env.xadd("s", 0, "chunk", "g", {})
    await store.save_run_steps("s", [])
    stream_keys = (keys.job("s"), keys.chunks("s"), keys.run_steps("s"))
    assert not await store.delete_job("s", expected_generation="h")
    assert [await redis_env.redis.exists(key) for key in stream_keys] == [True] * 3
    assert await store.delete_job("s", expected_generation="g")
    assert [await redis_env.redis.exists(key) for key in stream_keys] == [False] * 3
    assert await redis_env.redis.smembers(keys.running) == set()


async def test_content_is_folded_from_the_log_of_the_current_generation(
    redis_env: RedisEnv,
) -> None:
    store = redis_env.store

    def delta(text: str) -> JSONValue:
        return {"event": "on_message_delta", "data": {"index": 0, "delta": {"content": text}}}

    await redis_env.xadd("s", 0, "chunk", "old", delta("previous turn "))
    await redis_env.redis.run_script(_SET, keys=[redis_env.keys.seq("s")], args=["1"])
    await store.create_job("s", "u", generation_id="new")
    assert await store.get_content_parts("s") is None  # nothing of this turn yet
    await redis_env.xadd("s", 1, "chunk", "new", {"event": "on_run_step", "data": {"id": "r1"}})
    for seq in range(2, 2 + 1200):  # more than two XRANGE pages
        await redis_env.xadd("s", seq, "chunk", "new", delta("x"))
    await redis_env.xadd("s", 1202, "chunk", "stale-writer", delta("!"))
    await redis_env.xadd("s", 1203, "done", "new", {"final": True})
    assert await store.get_content_parts("s") == [{"type": "text", "text": "x" * 1200}]
    assert await store.get_run_steps("s") == [{"id": "r1"}]
    await store.save_run_steps("s", [{"id": "saved"}])
    assert await store.get_run_steps("s") == [{"id": "saved"}]


async def test_malformed_hash_reads_as_absent_or_without_the_bad_fields(
    redis_env: RedisEnv,
) -> None:
    store = redis_env.store
    await store.create_job("s", "u", generation_id="g")
    await redis_env.hset("s", "promptTokens", "lots")
    await redis_env.hset("s", "userMessage", "{not json")
    await redis_env.hset("s", "error", "")
    job = await store.get_job("s")
    assert job is not None
    assert (job.prompt_tokens, job.user_message, job.error) == (None, None, None)
    await redis_env.hset("s", "status", "requires_action")  # a status we don't know
    assert await store.get_job("s") is None
    assert not await store.update_job("s", JobUpdate(status=JobStatus.COMPLETE))
    assert await store.cleanup() == 1  # leaves the running index
    assert await redis_env.redis.smembers(redis_env.keys.running) == set()


async def test_cleanup_drops_ids_of_missing_jobs_from_the_running_index(
    redis_env: RedisEnv,
) -> None:
    store, keys = redis_env.store, redis_env.keys
    await store.create_job("live", "u", generation_id="g")
    await redis_env.redis.sadd(keys.running, "ghost")
    assert await store.get_job_count() == 2
    assert await store.cleanup() == 1
    assert await redis_env.redis.smembers(keys.running) == {"live"}
    assert await store.get_job_count() == 1


async def test_local_state_is_per_replica_and_swept_once_the_job_is_gone(
    redis_env: RedisEnv,
) -> None:
    store = redis_env.store
    other = RedisJobStore(redis_env.redis, keys=redis_env.keys, wall_clock=redis_env.clock)
    await store.create_job("s", "u", generation_id="g")
    store.set_collected_usage("s", [UsageMetadata(input_tokens=1, output_tokens=1)])
    assert other.get_collected_usage("s") == []
    assert (await other.get_job("s")) == (await store.get_job("s"))
    await other.delete_job("s")
    await store.cleanup()
    assert store.get_collected_usage("s") == []
    assert repr(store) == (
        f"<RedisJobStore prefix={redis_env.keys.prefix!r} local_graphs=0 usage_entries=0 "
        "reaped=0 pending_reaped=0>"
    )


class SremHook:
    """Delegates to a RedisLike but runs ``hook`` once just before the first SREM."""

    def __init__(self, inner: RedisLike, hook: Callable[[], Awaitable[object]]) -> None:
        self._inner = inner
        self._hook: Callable[[], Awaitable[object]] | None = hook

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def srem(self, key: str, *members: str) -> int:
        hook, self._hook = self._hook, None
        if hook is not None:
            await hook()
        return await self._inner.srem(key, *members)


async def test_healing_an_index_never_unindexes_a_replacement_created_meanwhile(
    redis_env: RedisEnv,
) -> None:
    # The index SREMs are separate commands (cross-slot): a replacement created between
    # the read that found the old turn terminal and the SREM used to drop out of the index.
    keys, clock = redis_env.keys, redis_env.clock
    plain = redis_env.store
    await plain.create_job("s", "u", generation_id="g1")

    async def replace() -> object:
        return await plain.create_job("s", "u", generation_id="g2")

    racing = RedisJobStore(
        cast(RedisLike, SremHook(redis_env.redis, replace)), keys=keys, wall_clock=clock
    )
    await racing.update_job("s", JobUpdate(status=JobStatus.ABORTED), expected_generation="g1")
    assert await redis_env.redis.smembers(keys.running) == {"s"}

    await plain.update_job("s", JobUpdate(status=JobStatus.COMPLETE), expected_generation="g2")

    async def replace_again() -> object:
        return await plain.create_job("s", "u", generation_id="g3")

    racing = RedisJobStore(
        cast(RedisLike, SremHook(redis_env.redis, replace_again)), keys=keys, wall_clock=clock
    )
    assert await racing.get_active_job_ids_by_user("u") == []  # it read the terminal turn
    assert await redis_env.redis.smembers(keys.user_jobs("u")) == {"s"}
    assert await plain.get_active_job_ids_by_user("u") == ["s"]
