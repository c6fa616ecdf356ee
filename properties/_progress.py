"""A one-line progress bar for long campaigns (``streamcheck run`` and ``canaries``).

It draws on stderr, in place (``\\r``, then erase to the end of the line), and only
when stderr is a terminal: in CI logs, pipes and tests it writes nothing at all. It is
a :data:`streamcheck.properties._campaign.ProgressCallback`::

    bar = ProgressBar("correct implementation")
    run_campaign(examples=500, on_progress=bar)

Redraws are throttled (at most ten a second); the campaign's last report
(``finished=True``) erases the line, so the summary printed next starts on a clean one.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import TextIO

from streamcheck.properties._campaign import Progress

#: Seconds between two redraws (the last report always redraws).
REDRAW_INTERVAL_S = 0.1
BAR_WIDTH = 24
_ERASE_LINE = "\r\x1b[K"


def wants_progress(stream: TextIO) -> bool:
    """Draw only on a terminal that understands ``\\r`` and ANSI erase (not TERM=dumb)."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False
    return tty and os.environ.get("TERM", "") != "dumb"


def render(progress: Progress, *, label: str = "", width: int = 80) -> str:
    """The bar's text for one report (no control characters), at most ``width - 1``
    characters so that the terminal never wraps it (``\\r`` only rewinds one line)."""
    budget = max(progress.budget, 1)
    if progress.found:
        # Past the first failure Hypothesis shrinks it: the count may pass the budget.
        bar = "#" * BAR_WIDTH
        count = f"{progress.examples} examples"
        kinds = ", ".join(k.value for k in progress.anomaly_kinds) or "?"
        doing = "shrinking, " if progress.shrink else ""
        anomalies = f"FOUND {kinds} ({doing}{progress.failing_examples} failing)"
    else:
        done = min(progress.examples, budget) / budget
        count = f"{progress.examples}/{progress.budget} examples"
        if progress.budget_seconds is not None:
            # Bounded by time (and maybe examples): whichever runs out first.
            spent = min(progress.elapsed / progress.budget_seconds, 1.0)
            done = max(done, spent) if progress.budget else spent
            if not progress.budget:
                count = f"{progress.examples} examples"
        filled = int(BAR_WIDTH * done)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        anomalies = "anomalies: 0"
    seconds = f"{progress.elapsed:.0f} s"
    if progress.budget_seconds is not None:
        seconds += f"/{progress.budget_seconds:g} s"
    text = f"[{bar}] {count}, {seconds}, {anomalies}"
    if label:
        text = f"{label}: {text}"
    limit = max(width - 1, 10)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ProgressBar:
    """Callable progress sink; silent unless ``stream`` (default stderr) is a TTY."""

    def __init__(self, label: str = "", *, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.enabled = wants_progress(self.stream)
        self._last_draw = 0.0
        self._drawn = False

    def __call__(self, progress: Progress) -> None:
        if not self.enabled:
            return
        if progress.finished:
            self.clear()
            return
        now = time.monotonic()
        if self._drawn and now - self._last_draw < REDRAW_INTERVAL_S:
            return
        self._last_draw = now
        width = shutil.get_terminal_size(fallback=(80, 24)).columns
        self._write(_ERASE_LINE + render(progress, label=self.label, width=width))
        self._drawn = True

    def clear(self) -> None:
        """Erase the bar's line, if one is drawn."""
        if self.enabled and self._drawn:
            self._write(_ERASE_LINE)
            self._drawn = False

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            # A closed or broken terminal must not turn into a failing example.
            self.enabled = False
