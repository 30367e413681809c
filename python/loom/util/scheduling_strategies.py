"""loom.util.scheduling_strategies — where a task or actor runs, as Ray says it:
``.options(scheduling_strategy=...)`` takes ``"DEFAULT"`` (data locality,
then pack), ``"SPREAD"`` (the least loaded node), a
:class:`NodeAffinitySchedulingStrategy` or a
:class:`PlacementGroupSchedulingStrategy`."""
from __future__ import annotations

from typing import Any, Optional, Union


class PlacementGroupSchedulingStrategy:
    """Run inside a placement group's reserved resources: in bundle
    ``placement_group_bundle_index``, or any of its bundles (-1)."""

    def __init__(self, placement_group: Any, placement_group_bundle_index: int = -1,
                 placement_group_capture_child_tasks: Optional[bool] = None) -> None:
        if not hasattr(placement_group, "id") or not isinstance(getattr(placement_group, "id"), bytes):
            raise TypeError("PlacementGroupSchedulingStrategy: want a PlacementGroup "
                            "(loom.util.placement_group(...))")
        if not isinstance(placement_group_bundle_index, int) or placement_group_bundle_index < -1:
            raise ValueError("placement_group_bundle_index: a bundle's index, or -1 for any")
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        # child tasks of a task in the group are not captured into it (as with
        # Ray's default); accepted so that Ray programs run
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks

    def __repr__(self) -> str:
        return (f"PlacementGroupSchedulingStrategy({self.placement_group!r}, "
                f"placement_group_bundle_index={self.placement_group_bundle_index})")


class NodeAffinitySchedulingStrategy:
    """Run on the node ``node_id`` (its id in :func:`loom.nodes`: ``"NodeID"``);
    with ``soft=True`` anywhere else when that node cannot run it."""

    def __init__(self, node_id: Union[str, int], soft: bool) -> None:
        try:
            self.node = int(node_id)
        except (TypeError, ValueError):
            raise ValueError(f"NodeAffinitySchedulingStrategy: {node_id!r} is not a node id "
                             "(the NodeID of loom.nodes())") from None
        if self.node < 0 or self.node > 0xFFFFFFFF:
            raise ValueError(f"NodeAffinitySchedulingStrategy: {node_id!r} is not a node id")
        self.node_id = str(node_id)
        self.soft = bool(soft)

    def __repr__(self) -> str:
        return f"NodeAffinitySchedulingStrategy(node_id={self.node_id!r}, soft={self.soft})"
