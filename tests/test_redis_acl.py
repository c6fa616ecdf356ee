"""README, "Confining who may publish": the ACL commands it gives, run as written.

ACL changes are server-wide, so the test starts its own ``redis-server`` on a free
loopback port and stops it by pid. It reads the commands out of the README (the fenced
block after the ``acl-commands`` marker), so the README cannot drift from what is tested.
"""

from __future__ import annotations

import shlex
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from streamcheck.impl import Keys
from streamcheck.impl.transport._lua import PUBLISH
from streamcheck.model import Done
from tests.backends import collect, delta, replicas, texts
from tests.redis_support import RedisServer, have_redis_binaries, open_redis, resp_call

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = "<!-- acl-commands:"

pytestmark = pytest.mark.skipif(
    not have_redis_binaries(), reason="redis-server/redis-cli are not on PATH"
)


def acl_commands() -> list[list[str]]:
    """The lines of the fenced block that follows the README's marker, split as a shell
    (and redis-cli) would."""
    text = README.read_text(encoding="utf-8")
    after = text[text.index(MARKER) :].split("```", 2)
    assert len(after) == 3, "the marker must be followed by a fenced block"
    return [shlex.split(line) for line in after[1].strip().splitlines()]


@pytest.fixture
def acl_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        for command in acl_commands():
            assert resp_call(server.port, *command) == "OK", command
        yield server


def test_the_readme_gives_a_replica_user_a_reader_user_and_no_default() -> None:
    users = {cmd[2]: cmd for cmd in acl_commands() if cmd[:2] == ["ACL", "SETUSER"]}
    assert set(users) == {"replica", "reader", "default"}
    assert "off" in users["default"]


async def test_the_replica_user_streams_and_the_reader_user_cannot_publish(
    acl_server: RedisServer,
) -> None:
    port = acl_server.port
    stream = f"acl-{uuid.uuid4().hex}"
    replica_url = f"redis://replica:replica-secret@127.0.0.1:{port}"
    reader_url = f"redis://reader:reader-secret@127.0.0.1:{port}"
    with trio.fail_after(20):
        async with (
            replicas("redis", 2, url=replica_url) as (a, b),
            open_redis(reader_url) as reader,
            reader.subscriber() as listener,
        ):
            await listener.subscribe(Keys.channel(stream))
            await a.create_job(stream, "u1")
            sub = await b.subscribe(stream, "u1")
            await a.emit_chunk(stream, delta("allowed"))
            await a.emit_done(stream, {"final": True})
            events = await collect(sub)
            assert texts(events) == ["allowed"] and isinstance(events[-1], Done)
            # The reader reads: the channel, the chunk log and the job.
            heard = await listener.receive()
            assert '"allowed"' in str(heard)
            rows = await reader.xrange(Keys().chunks(stream), "-", "+", 10)
            assert len(rows) == 2
            assert await reader.hgetall(Keys().job(stream))
            # ... and may not publish, write or run the scripts.
            for attempt in (
                reader.publish(Keys.channel(stream), '{"type":"abort","generationId":"g"}'),
                reader.sadd(Keys().user_jobs("u1"), stream),
                reader.run_script(PUBLISH, keys=[Keys().seq(stream)], args=[]),
            ):
                with pytest.raises(Exception, match=r"NOPERM|no permissions"):
                    await attempt
    # The default user is off: nobody connects without a password.
    with pytest.raises(RuntimeError, match="NOAUTH"):
        resp_call(port, "PING")
