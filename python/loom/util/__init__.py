"""loom.util — placement groups and scheduling strategies, with Ray's names
(``ray.util.placement_group``, ``ray.util.scheduling_strategies``)."""
from __future__ import annotations

from .placement_group import PlacementGroup, placement_group, placement_group_table, remove_placement_group
from .scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

__all__ = ["NodeAffinitySchedulingStrategy", "PlacementGroup", "PlacementGroupSchedulingStrategy",
           "placement_group", "placement_group_table", "remove_placement_group"]
