"""STEVE-1's programmatic evaluation of a rollout: what the agent collected and how far it went.

Facts from the original (`steve1/run_agent/programmatic_eval.py`), re-implemented:
- after every env step, for each of logs, dirt and seeds, the inventory count is the SUM of the counts of
  every inventory item whose name contains "_log", "dirt" or "seed" (oak_log + birch_log, dirt + coarse_dirt,
  wheat_seeds + ...); the metric is the largest such count seen in the episode (a lower bound of what was
  gathered: items used or dropped are not counted);
- travel distance is the largest Euclidean distance on the horizontal (x, z) plane between the position
  after a step and the position in the observation returned by reset().
MineRL's HumanSurvival puts these in the observation: `obs["inventory"]` (item name -> count) and
`obs["location_stats"]` (`xpos`, `zpos`, ...).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

# metric name -> the substring the original matched item names against
ITEM_FILTERS: dict[str, str] = {"max_logs": "_log", "max_dirt": "dirt", "max_seeds": "seed"}


def has_programmatic_observations(obs: Mapping[str, Any]) -> bool:
    """True for observations that carry an inventory and a position (MineRL's HumanSurvival)."""
    return isinstance(obs.get("inventory"), Mapping) and isinstance(obs.get("location_stats"), Mapping)


def _horizontal_position(obs: Mapping[str, Any]) -> tuple[float, float]:
    stats = obs["location_stats"]
    return float(stats["xpos"]), float(stats["zpos"])


class ProgrammaticMetrics:
    """Largest log, dirt and seed counts held and largest horizontal distance from the start, over an episode."""

    def __init__(self, first_obs: Mapping[str, Any]) -> None:
        self.start = _horizontal_position(first_obs)
        self.values: dict[str, float] = {name: 0 for name in ITEM_FILTERS}
        self.values["max_travel_distance"] = 0.0

    def update(self, obs: Mapping[str, Any]) -> None:
        """Take the observation after one env step into account."""
        inventory = obs["inventory"]
        for name, part in ITEM_FILTERS.items():
            count = sum(int(inventory[item]) for item in inventory if part in item)
            self.values[name] = max(self.values[name], count)
        x, z = _horizontal_position(obs)
        distance = math.hypot(x - self.start[0], z - self.start[1])  # blocks
        self.values["max_travel_distance"] = max(self.values["max_travel_distance"], distance)

    def as_dict(self) -> dict[str, float]:
        """max_logs, max_dirt, max_seeds (items) and max_travel_distance (blocks)."""
        return dict(self.values)
