"""The RESP front: the simulated Redis served on loopback TCP to replicas in other
processes (any language, through the replica protocol), with every command, reply,
SUBSCRIBE acknowledgement and pub/sub message a step the state machine draws.

:mod:`._front` serves the ports, :mod:`._world` runs one example's agents and decisions,
:mod:`._simulation` hosts it in a trio thread for the synchronous state machine, and
:mod:`._machine` holds the rules, the campaign, replays and minimization.
"""

from streamcheck.properties.sim.resp._front import FrontStatistics, RespFront
from streamcheck.properties.sim.resp._machine import (
    DEFAULT_REPRODUCTION,
    ForeignCampaign,
    ReplayVerdict,
    ReproductionRule,
    replay_foreign,
    run_foreign_campaign,
)
from streamcheck.properties.sim.resp._simulation import ForeignSimulation, Judged
from streamcheck.properties.sim.resp._world import FOREIGN_SETTINGS, WorldFailed

__all__ = [
    "DEFAULT_REPRODUCTION",
    "FOREIGN_SETTINGS",
    "ForeignCampaign",
    "ForeignSimulation",
    "FrontStatistics",
    "Judged",
    "ReplayVerdict",
    "ReproductionRule",
    "RespFront",
    "WorldFailed",
    "replay_foreign",
    "run_foreign_campaign",
]
