"""The replica protocol: how the harness drives an implementation in any language.

An agent process hosts one replica; the harness sends it JSON lines (init, start, do,
clock, stop) and reads its JSON lines (hello, ready, invoked, result, event, closed, stopped,
error). ``docs/port-protocol.md`` is the contract; ``python -m
streamcheck.properties.protocol.python_agent`` is streamcheck's own agent.
"""

from streamcheck.properties.protocol._driver import (
    PYTHON_AGENT,
    Agent,
    AgentFailed,
    agent_command,
    finish_plan,
    read_hello,
    spawn_agent,
    start_agent,
    start_plan,
    stop_agents,
)
from streamcheck.properties.protocol._messages import (
    PROTOCOL_VERSION,
    Action,
    Capabilities,
    Hello,
    Init,
    Op,
    Outcome,
    ProtocolError,
    ResumeBy,
    Storage,
    clock_line,
    do_line,
)
from streamcheck.properties.protocol._transcript import Transcript, read_transcript

__all__ = [
    "PROTOCOL_VERSION",
    "PYTHON_AGENT",
    "Action",
    "Agent",
    "AgentFailed",
    "Capabilities",
    "Hello",
    "Init",
    "Op",
    "Outcome",
    "ProtocolError",
    "ResumeBy",
    "Storage",
    "Transcript",
    "agent_command",
    "clock_line",
    "do_line",
    "finish_plan",
    "read_hello",
    "read_transcript",
    "spawn_agent",
    "start_agent",
    "start_plan",
    "stop_agents",
]
