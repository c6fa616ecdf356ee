"""streamcheck's own agent, seen through an implementation that has no seqs.

It runs the real agent as a child and rewrites what it says: the hello declares no seqs
and resume by text offset; results lose their seqs and generations; chunks reach the
harness as text only (their marker), as a text-streaming library would deliver them. The
harness must then judge the run from its own payload ids alone.

``--drop N`` also drops every N-th chunk a reader receives: a broken implementation, which
the harness must catch.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
from typing import Any

NATIVE_ONLY = ("seq", "generation", "start_seq", "first_seq")


def rewrite(line: dict[str, Any], drop_every: int, counter: list[int]) -> dict[str, Any] | None:
    kind = line.get("type")
    if kind == "hello":
        line["implementation"]["name"] += "-seqless"
        line["capabilities"].update(seqs=False, resume="offset", gap_events=False)
        return line
    if kind in ("result", "stopped"):
        for name in NATIVE_ONLY:
            line.pop(name, None)
        snapshot = line.get("snapshot")
        if snapshot is not None:
            line["snapshot"] = {"text": snapshot.get("text", "")}
        return line
    if kind == "event":
        event = line["event"]
        if event["kind"] == "chunk":
            counter[0] += 1
            if drop_every and counter[0] % drop_every == 0:
                return None
            line["event"] = {"kind": "text", "text": event["data"]["text"]}
        else:
            line["event"] = {k: v for k, v in event.items() if k not in NATIVE_ONLY}
        return line
    return line


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--drop", type=int, default=0)
    args = parser.parse_args()
    child = subprocess.Popen(
        [sys.executable, "-m", "streamcheck.properties.protocol.python_agent"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    stdin = child.stdin

    def forward() -> None:
        for line in sys.stdin:
            stdin.write(line)
            stdin.flush()
        stdin.close()

    threading.Thread(target=forward, daemon=True).start()
    counter = [0]
    for text in child.stdout:
        rewritten = rewrite(json.loads(text), args.drop, counter)
        if rewritten is not None:
            sys.stdout.write(json.dumps(rewritten) + "\n")
            sys.stdout.flush()
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())
