"""The suite leaves nothing in a Redis it shares: Redis-using tests run in a pytest
subprocess against a private server posing as the shared one
(``STREAMCHECK_SHARED_REDIS_PORT``), which must have served them and hold no key
afterwards."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.redis_support import RedisServer, have_redis_binaries, resp_call, scan_keys

ROOT = Path(__file__).parent.parent
#: Tests that write through impl/ (jobs, indices, chunk logs, counters) and the
#: LibreChat-style configuration, which prefixes keys its own way.
WRITERS = [
    "tests/test_streams_contract.py::test_events_emitted_before_subscribe_are_replayed_in_order",
    "tests/test_jobstore_contract.py",
    "tests/test_configured_replica.py",
]
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not cluster"]
RUN_TIMEOUT_S = 300


def _commands_served(port: int) -> int:
    info = resp_call(port, "INFO", "stats")
    assert isinstance(info, str), info
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    return int(fields["total_commands_processed"])


@pytest.mark.skipif(not have_redis_binaries(), reason="redis-server is not on PATH")
def test_redis_tests_leave_no_key_in_the_shared_redis() -> None:
    with RedisServer() as server:
        before = _commands_served(server.port)
        env = os.environ | {"STREAMCHECK_SHARED_REDIS_PORT": str(server.port)}
        run = subprocess.run(
            [*PYTEST, *WRITERS],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        # Hundreds of commands: the tests ran against this server, not another.
        assert _commands_served(server.port) - before > 500
        assert scan_keys(server.port) == []


#: What a test on the shared Redis must not do: other clients change what it reads or
#: see what it does (connections, server-wide counters, keys outside its prefix).
SERVER_WIDE = (
    '"CLIENT"',
    "client_",
    '"INFO"',
    ".info(",
    "DBSIZE",
    "dbsize",
    "FLUSH",
    "flush",
    '"KEYS"',
    '"CONFIG"',
    "max_connections",
    '"bench"',
)


#: A top-level function: its name, its parameters, and its body (up to the next line
#: that starts in the first column). Text, not ``ast``: parsing allocates enough to run
#: the garbage collector, and CPython 3.11's AST builder fails if finalizers run inside.
_FUNCTION = re.compile(
    r"^(?:async )?def (\w+)\((.*?)\)[^:\n]*:\n(.*?)(?=^\S|\Z)", re.DOTALL | re.MULTILINE
)


def _tests_on_the_shared_redis() -> list[tuple[str, str]]:
    return [
        (f"{path.name}::{match[1]}", match[3])
        for path in sorted((ROOT / "tests").glob("test_*.py"))
        for match in _FUNCTION.finditer(path.read_text())
        if re.search(r"\bredis_url\b", match[2])
    ]


def test_tests_on_the_shared_redis_do_not_depend_on_having_it_to_themselves() -> None:
    tests = _tests_on_the_shared_redis()
    assert len(tests) >= 5, "the search found too few tests to mean anything"
    offending = {
        name: [marker for marker in SERVER_WIDE if marker in text]
        for name, text in tests
        if any(marker in text for marker in SERVER_WIDE)
    }
    assert offending == {}, "use a private RedisServer for these"
