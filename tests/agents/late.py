"""streamcheck's own agent, carrying out its plan late.

It runs the real agent as a child and moves the plan's t=0 (the ``start`` line's ``at``)
``--late S`` seconds on: every action then happens S seconds after its planned time, as
with an implementation whose every call lags (a server that syncs each write to disk, on a
loaded machine). What the agent answers and what its readers receive stay correct; only
when changes. The harness must wait for such a plan before it judges liveness.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--late", type=float, required=True)
    args = parser.parse_args()
    # The child's stdout is ours: its lines reach the harness unchanged.
    child = subprocess.Popen(
        [sys.executable, "-m", "streamcheck.properties.protocol.python_agent"],
        stdin=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None
    stdin = child.stdin

    def forward() -> None:
        for line in sys.stdin:
            message = json.loads(line) if line.strip() else None
            if isinstance(message, dict) and message.get("type") == "start":
                line = json.dumps({**message, "at": message["at"] + args.late}) + "\n"
            stdin.write(line)
            stdin.flush()
        stdin.close()

    # The agent exits on the harness's stop line: so does this one, whatever stdin does.
    threading.Thread(target=forward, daemon=True).start()
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())
