"""Human-readable reports of a run, made from its replay file (``properties/_replay.py``).

* :func:`render_timeline` turns a replay file's JSON into one self-contained HTML page:
  a summary box with the first anomaly and its mechanism, then a lane per client
  session, per replica and for Redis, every emit and delivery an arrow, and Redis's
  SUBSCRIBEs, acknowledgements, publishes, log reads and faults as rows where they
  happened; the first anomalous record highlighted and explained.
* :func:`layout_timeline` is the same page as data (lanes, rows, words), no HTML.
* :func:`write_timeline` reads a replay file and writes that page next to it (or where
  asked).
"""

from streamcheck.properties.report._layout import layout_timeline
from streamcheck.properties.report._shapes import TimelineLayout
from streamcheck.properties.report._timeline import (
    TIMELINE_FILENAME,
    render_timeline,
    write_timeline,
)

__all__ = [
    "TIMELINE_FILENAME",
    "TimelineLayout",
    "layout_timeline",
    "render_timeline",
    "write_timeline",
]
