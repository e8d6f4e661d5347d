"""Which workers a run upgrades, how they are grouped and in which order.

Owns :class:`WorkerSelection` (``--nodes``, ``--selector``, ``--group-by``, ``--order-by``,
``--max-unavailable-per-group``, as the plan records them), the choice of workers (the
label selector on the Node objects' labels; with ``--nodes`` too: the workers both name),
their grouping (by the value of the ``group_by`` label; the nodes without it form the group
:func:`missing_group`) and their plan order: within a group by the ``order_by`` label's value
then the name, else in inventory order; groups interleaved in rounds of up to
``per_group`` nodes of each group (groups in sorted order, the unlabelled group last), so
that the executor's batches (:func:`upgrader.execute.engine.batches`) take consecutive
rounds. Must not: do I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from upgrader.core.labelselector import check_key
from upgrader.core.labelselector import parse as parse_selector
from upgrader.core.model import NodeFacts
from upgrader.errors import ConfigError

__all__ = ["WorkerSelection", "group_rounds", "missing_group", "order_workers"]


def check_node_names(
    names: Sequence[str], roles: Mapping[str, bool], source: str, *, known: bool = False
) -> None:
    """``--nodes``: each name must be a worker of ``roles`` (name -> is control plane), read
    from ``source`` ("the inventory" before any node is contacted, "the facts" at plan
    time); one :class:`ConfigError` line naming the first name that is not. ``known``: list
    the known names in the message."""
    if not names:
        raise ConfigError("--nodes: no node names given")
    for name in names:
        if name not in roles:
            listed = f"; known: {', '.join(roles)}" if known else ""
            raise ConfigError(f"--nodes: unknown node {name!r} (not in {source}{listed})")
        if roles[name]:
            raise ConfigError(
                f"--nodes: {name} is a control-plane node; --nodes limits a run to workers"
            )


def missing_group(label: str) -> str:
    """The name of the group of the workers without the ``label`` label."""
    return f"(no {label})"


@dataclass(frozen=True)
class WorkerSelection:
    """How the operator chose, grouped and ordered the workers. ``groups``: filled in by
    the planner (group name -> its selected workers in plan order; one group ``""`` when
    there is no ``group_by``); ``selected``/``total``: how many workers were chosen of how
    many the facts list."""

    nodes: tuple[str, ...] | None = None
    selector: str | None = None
    group_by: str | None = None
    order_by: str | None = None
    per_group: int = 1
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    selected: int = 0
    total: int = 0

    @property
    def active(self) -> bool:
        """Anything beyond the default (every worker, inventory order, one at a time)."""
        return bool(self.nodes is not None or self.selector or self.group_by or self.order_by)

    def validate(self) -> None:
        if self.selector is not None:
            parse_selector(self.selector)
        if self.group_by is not None:
            check_key(self.group_by, "--group-by")
        if self.order_by is not None:
            check_key(self.order_by, "--order-by")
        if self.per_group < 1:
            raise ConfigError(
                f"--max-unavailable-per-group: must be at least 1, not {self.per_group}"
            )

    def visiting(self, nodes: set[str]) -> WorkerSelection:
        """This selection with its groups cut to ``nodes`` (the workers the plan visits;
        a group left empty goes)."""
        groups = {g: tuple(n for n in v if n in nodes) for g, v in self.groups.items()}
        return replace(self, groups={g: v for g, v in groups.items() if v})

    def group_of(self) -> dict[str, str]:
        """Node -> its group name (only with ``group_by``)."""
        if not self.group_by:
            return {}
        return {n: g for g, names in self.groups.items() for n in names}

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": list(self.nodes) if self.nodes is not None else None,
            "selector": self.selector,
            "group_by": self.group_by,
            "order_by": self.order_by,
            "max_unavailable_per_group": self.per_group,
            "groups": {g: list(v) for g, v in self.groups.items()},
            "selected": self.selected,
            "total": self.total,
        }

    @classmethod
    def from_dict(cls, d: Any, where: str) -> WorkerSelection:
        """Read back :meth:`to_dict` (a stored plan); :class:`ConfigError` if malformed."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"{where}: must be an object")

        def opt(key: str) -> str | None:
            v = d.get(key)
            if v is not None and not isinstance(v, str):
                raise ConfigError(f"{where}.{key}: must be a string")
            return v

        nodes = d.get("nodes")
        groups = d.get("groups") or {}
        per = d.get("max_unavailable_per_group", 1)
        ok = (
            (nodes is None or (isinstance(nodes, list) and all(isinstance(x, str) for x in nodes)))
            and isinstance(groups, Mapping)
            and all(
                isinstance(v, list) and all(isinstance(x, str) for x in v) for v in groups.values()
            )
            and isinstance(per, int)
            and not isinstance(per, bool)
            and per >= 1
            and all(
                isinstance(d.get(k, 0), int) and not isinstance(d.get(k, 0), bool)
                for k in ("selected", "total")
            )
        )
        if not ok:
            raise ConfigError(
                f"{where}: nodes, groups, counts or max_unavailable_per_group malformed"
            )
        return cls(
            nodes=tuple(nodes) if nodes is not None else None,
            selector=opt("selector"),
            group_by=opt("group_by"),
            order_by=opt("order_by"),
            per_group=per,
            groups={str(g): tuple(v) for g, v in groups.items()},
            selected=d.get("selected", 0),
            total=d.get("total", 0),
        )


def group_rounds(groups: Mapping[str, Sequence[str]], per_group: int) -> list[str]:
    """The nodes of ``groups`` interleaved: the first ``per_group`` of each group (in the
    mapping's order), then the next ``per_group`` of each, and so on."""
    out: list[str] = []
    longest = max((len(v) for v in groups.values()), default=0)
    for start in range(0, longest, per_group):
        for names in groups.values():
            out.extend(names[start : start + per_group])
    return out


def order_workers(
    workers: Sequence[NodeFacts], sel: WorkerSelection
) -> tuple[list[str], WorkerSelection]:
    """The selected workers of ``workers`` (inventory order) in plan order, and ``sel``
    with its groups and counts filled in. :class:`ConfigError` when a selector or
    ``--nodes`` leaves no worker."""
    chosen = list(workers)
    if sel.nodes is not None:
        wanted = set(sel.nodes)
        chosen = [w for w in chosen if w.name in wanted]
    if sel.selector is not None:
        selector = parse_selector(sel.selector)
        by_selector = [w for w in chosen if selector.matches(w.labels)]
        if not by_selector:
            known = ", ".join(w.name for w in chosen) or "none"
            also = " among the workers --nodes names" if sel.nodes is not None else ""
            raise ConfigError(
                f"--selector: {selector} matches no worker{also} (checked: {known}); "
                "the labels come from the Node objects (kubectl get nodes --show-labels)"
            )
        chosen = by_selector
    if sel.order_by:
        key = sel.order_by
        chosen.sort(key=lambda w: (key not in w.labels, w.labels.get(key, ""), w.name))
    groups: dict[str, list[str]] = {}
    if sel.group_by:
        label = sel.group_by
        values = sorted({w.labels[label] for w in chosen if label in w.labels})
        groups = {v: [] for v in values}
        for w in chosen:
            groups.setdefault(w.labels.get(label, missing_group(label)), []).append(w.name)
        order = group_rounds(groups, sel.per_group)
    else:
        groups = {"": [w.name for w in chosen]}
        order = groups[""]
    filled = WorkerSelection(
        nodes=sel.nodes,
        selector=sel.selector,
        group_by=sel.group_by,
        order_by=sel.order_by,
        per_group=sel.per_group,
        groups={g: tuple(v) for g, v in groups.items()},
        selected=len(chosen),
        total=len(workers),
    )
    return order, filled
