"""The lifecycle table: Python's and the Redis script's must agree."""

from __future__ import annotations

import pytest

from streamcheck.impl._errors import IllegalTransition
from streamcheck.impl._status import ALLOWED_TRANSITIONS, JobStatus, check_transition
from streamcheck.impl.jobstore._lua import lua_status_tables


def test_terminal_statuses_never_change() -> None:
    for status in JobStatus:
        if status.is_terminal:
            assert ALLOWED_TRANSITIONS[status] == frozenset({status})


def test_illegal_transition_names_the_stream_and_both_states() -> None:
    with pytest.raises(
        IllegalTransition, match=r"^can't move stream 's1' from status 'complete' to 'running'$"
    ):
        check_transition("s1", JobStatus.COMPLETE, JobStatus.RUNNING)


def test_lua_table_evaluates_like_the_python_table() -> None:
    # Run the generated Lua in a real Lua 5.1 (the version Redis embeds).
    lua51 = pytest.importorskip("lupa.lua51")
    runtime = lua51.LuaRuntime()
    allowed = runtime.execute(
        lua_status_tables()
        + "return function(c, r) return allowed[c] ~= nil and allowed[c][r] == true end"
    )
    for current in JobStatus:
        for requested in JobStatus:
            expected = requested in ALLOWED_TRANSITIONS[current]
            assert allowed(current.value, requested.value) is expected, (current, requested)
