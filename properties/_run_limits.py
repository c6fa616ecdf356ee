"""How big a run may be: replicas of impl/ in its world, worker processes (no heavy
imports: the CLI reads these before it loads the simulation)."""

from __future__ import annotations

import enum

#: Replicas in a simulated world unless told otherwise.
DEFAULT_REPLICAS = 2
#: A stream read on another replica than its producer's needs two; more than eight
#: only multiplies tasks (and, against real Redis, agent processes) without new paths.
MIN_REPLICAS = 2
MAX_REPLICAS = 8
#: Most worker processes of one simulation run (each holds a simulation, ~100 MB).
MAX_WORKERS = 32


class SimBackend(enum.Enum):
    """What the simulated replicas share (``streamcheck run --backend``)."""

    #: The simulated Redis (properties/sim/), with its faults.
    REDIS = "sim"
    #: impl's in-process memory backend (properties/_memory_sim.py).
    MEMORY = "memory"
