"""How many replicas of impl/ a run may put in its world (no heavy imports: the CLI
reads these before it loads the simulation)."""

from __future__ import annotations

#: Replicas in a simulated world unless told otherwise.
DEFAULT_REPLICAS = 2
#: A stream read on another replica than its producer's needs two; more than eight
#: only multiplies tasks (and, against real Redis, agent processes) without new paths.
MIN_REPLICAS = 2
MAX_REPLICAS = 8
