"""streamcheck: resumable LLM generation streams and the harness that judges them.

One namespace, three packages, each depending only on the ones above it:

* :mod:`streamcheck.model`: the event vocabulary, histories and the checker;
* :mod:`streamcheck.impl`: the reference implementation (memory, Redis, Redis Cluster);
* :mod:`streamcheck.properties`: the simulation, state machines, real-Redis tier, CLI,
  reports and benchmarks (installed with the ``harness`` extra).
"""

__version__ = "0.2.0"
