"""loom.util.placement_group — bundles of resources reserved together across
the cluster's nodes (loom_pg_* of the C API), with Ray's names:

    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    loom.get(pg.ready(), timeout=10)
    f.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0)).remote()
    remove_placement_group(pg)
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

from .. import _loom
from .. import _runtime
from ..exceptions import ObjectLostError

STRATEGIES = {"PACK": _loom.PG_PACK, "SPREAD": _loom.PG_SPREAD, "STRICT_PACK": _loom.PG_STRICT_PACK,
              "STRICT_SPREAD": _loom.PG_STRICT_SPREAD}
_READY_CPUS = 0.01   # py_pg_ready: a wait in plain C, no interpreter
_STATES = {"pending": "PENDING", "placed": "CREATED", "created": "CREATED", "removed": "REMOVED",
           "infeasible": "INFEASIBLE"}


def _bundle(spec: Dict[str, float]) -> tuple:
    """A bundle {"CPU": n, "GPU": n, "memory": bytes, other: amount} as
    _loom.pg_create wants it."""
    if not isinstance(spec, dict) or not spec:
        raise ValueError(f"a bundle is a non-empty dict of resources, e.g. {{'CPU': 1}}: got {spec!r}")
    custom = {}
    for k, v in spec.items():
        if not isinstance(k, str) or not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
            raise ValueError(f"bundle {spec!r}: {k!r} must be a resource name with an amount >= 0")
        if k not in ("CPU", "GPU", "memory"):
            custom[k] = float(v)
    return (float(spec.get("CPU", 0)), int(spec.get("memory", 0)), float(spec.get("GPU", 0)), custom or None)


class PlacementGroup:
    """A placement group: ``.ready()`` (an ObjectRef that becomes ready, with
    True, when the group is placed), ``.wait(timeout_seconds)``,
    ``.bundle_specs``, ``.bundle_count``.  Travels to tasks by id."""

    def __init__(self, pg_id: bytes, bundle_specs: Optional[List[Dict[str, float]]] = None,
                 strategy: str = "PACK", name: str = "") -> None:
        self.id = pg_id
        self.bundle_specs = [dict(b) for b in (bundle_specs or [])]
        self.strategy = strategy
        self.name = name

    @property
    def bundle_count(self) -> int:
        return len(self.bundle_specs)

    def ready(self) -> _runtime.ObjectRef:
        """An ObjectRef ready (with True) once the group is placed; use it
        with loom.get or loom.wait.  Getting it raises InfeasibleError-like
        TaskError with the head's reason if the group can never be placed."""
        lib, _ = _runtime._require()
        return _loom.submit(lib, "py_pg_ready", [self.id], name=f"pg.ready {self.id.hex()[:8]}",
                            num_cpus=_READY_CPUS)

    def wait(self, timeout_seconds: float = 30) -> bool:
        """Wait until the group is placed: True, or False after timeout_seconds."""
        _runtime._require()
        return bool(_loom.pg_wait(self.id, int(timeout_seconds * 1000)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroup) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"PlacementGroup(id={self.id.hex()}, bundles={self.bundle_specs}, strategy={self.strategy})"

    def __reduce__(self):  # by id, as Ray's does
        return (PlacementGroup, (self.id, self.bundle_specs, self.strategy, self.name))


def placement_group(bundles: List[Dict[str, float]], strategy: str = "PACK", name: str = "",
                    lifetime: Optional[str] = None) -> PlacementGroup:
    """Reserve ``bundles`` (each ``{"CPU": n, "GPU": n, "memory": bytes,
    custom: amount}``) together: strategy ``"PACK"`` (as few nodes as
    possible), ``"SPREAD"``, ``"STRICT_PACK"`` (one node) or
    ``"STRICT_SPREAD"`` (one node each).  Returns at once; the group is
    placed as soon as resources allow (``.ready()``).  A group that no node
    set of this cluster could hold raises InfeasibleError."""
    _runtime._require()
    if strategy not in STRATEGIES:
        raise ValueError(f"placement group strategy {strategy!r}: one of {', '.join(STRATEGIES)}")
    if lifetime not in (None, "detached"):
        raise ValueError("lifetime: None or 'detached'")
    if not isinstance(bundles, (list, tuple)) or not bundles:
        raise ValueError("placement_group: want a non-empty list of bundles")
    specs = [_bundle(b) for b in bundles]
    pg_id = _loom.pg_create(specs, STRATEGIES[strategy], name or None)
    return PlacementGroup(pg_id, list(bundles), strategy, name)


def remove_placement_group(pg: PlacementGroup) -> None:
    """Free the group's resources; its running tasks are cancelled and its
    actors killed."""
    _runtime._require()
    try:
        _loom.pg_remove(pg.id)
    except ObjectLostError:   # removed already: nothing to free
        pass


def placement_group_table(pg: Optional[PlacementGroup] = None) -> Dict[str, Any]:
    """The group as the head sees it: ``state`` (``"PENDING"``, ``"CREATED"``,
    ``"REMOVED"``, ...), ``strategy``, ``bundles`` {index: resources} and
    ``bundles_to_node_id`` {index: node id}, plus loom's own fields."""
    if pg is None:
        raise ValueError("placement_group_table: give the group (a table of all groups is not built)")
    _runtime._require()
    try:
        t = json.loads(_loom.pg_json(pg.id))
    except ObjectLostError:   # the head forgets a group once removed
        return {"placement_group_id": pg.id.hex(), "name": pg.name, "strategy": pg.strategy,
                "state": "REMOVED", "bundles": dict(enumerate(pg.bundle_specs)), "bundles_to_node_id": {}}
    state = str(t.get("state", ""))
    t["state"] = _STATES.get(state.lower(), state.upper())
    t["placement_group_id"] = pg.id.hex()
    t.setdefault("name", pg.name)
    bundles = t.get("bundles")
    if isinstance(bundles, list):
        t["bundles"] = {i: pg.bundle_specs[i] if i < len(pg.bundle_specs) else b for i, b in enumerate(bundles)}
        t["bundles_to_node_id"] = {i: str(b.get("node")) for i, b in enumerate(bundles)
                                   if isinstance(b, dict) and b.get("node") is not None}
    return t

