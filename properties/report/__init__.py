"""Human-readable reports of a run, made from its replay file (``properties/_replay.py``).

* :func:`render_timeline` turns a replay file's JSON into one self-contained HTML page:
  a lane per client session, per replica and for Redis, every emit and delivery an
  arrow in history order, the first anomalous record highlighted and explained.
* :func:`write_timeline` reads a replay file and writes that page next to it (or where
  asked).
"""

from streamcheck.properties.report._timeline import (
    TIMELINE_FILENAME,
    render_timeline,
    write_timeline,
)

__all__ = ["TIMELINE_FILENAME", "render_timeline", "write_timeline"]
