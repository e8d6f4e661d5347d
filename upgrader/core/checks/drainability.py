"""Drainability: what would stop (or hurt) the drain of each node the plan drains.

Owns the findings, per node to be drained, built on :mod:`upgrader.core.drain` (the same
pod selection and PodDisruptionBudget matching the drain itself uses):

* ``DRAIN_EMPTYDIR`` — pods with emptyDir volumes (their data is lost): blocker passed by
  ``--delete-emptydir-data``;
* ``DRAIN_UNMANAGED_POD`` — pods no controller manages (they are not recreated): blocker
  passed by ``--force``;
* ``DRAIN_ORPHANED_DAEMONSET_POD`` — pods of a DaemonSet that no longer exists: blocker
  passed by ``--force``;
* ``DRAIN_PDB_BLOCKS`` — pods whose PodDisruptionBudget can never allow an eviction
  (``maxUnavailable`` 0, or ``minAvailable`` equal to the pods it covers): blocker passed
  by ``--disable-eviction`` (pods are then deleted, the budget ignored), or on a node
  whose drain fallback is ``delete`` (they are deleted once the drain timeout ran out);
* ``DRAIN_MULTIPLE_PDBS`` — pods matched by several budgets, which the eviction
  subresource refuses outright (HTTP 500): blocker passed the same ways;
* ``DRAIN_PDB_NO_DISRUPTION_NOW`` — the budget allows no disruption right now
  (``status.disruptionsAllowed`` 0, e.g. pods not ready): warning; the drain waits for it.

One finding per node and cause (per budget for the PDB ones), naming every pod; on a node
with a pod selector, only the pods it matches count (the others stay).
Terminal and pending pods are not held by budgets (the eviction subresource lets them go).

Must not: do I/O, or import paramiko, kubernetes, typer or rich.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from upgrader.core.checks import overridable
from upgrader.core.drain import (
    LOCAL_STORAGE_FATAL,
    UNMANAGED_FATAL,
    Pod,
    PodDecision,
    classify_pods,
    describe_pdb,
    pdbs_for_pod,
    pod_key,
)
from upgrader.core.model import Finding, Severity
from upgrader.core.podselector import parse_selector
from upgrader.core.vocab import Override

_PDB_FREE_PHASES = ("Succeeded", "Failed", "Pending")


@dataclass(frozen=True)
class DrainFlags:
    """The drain flags the operator gave (as for ``upgrader apply``)."""

    delete_emptydir_data: bool = False
    force: bool = False
    disable_eviction: bool = False
    # nodes whose drain falls back to deleting the pods a budget still refuses
    fallback_delete: frozenset[str] = frozenset()
    # node -> --pod-selector: only the pods it matches are drained there
    pod_selectors: Mapping[str, str] = field(default_factory=dict)


def _node_of(pod: Pod) -> str | None:
    n = (pod.get("spec") or {}).get("nodeName")
    return str(n) if n else None


def _scaled(value: Any, expected: int) -> int | None:
    """IntOrString as the disruption controller scales it (percentages round up)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
        return math.ceil(int(value[:-1]) * expected / 100)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def pdb_never_allows(pdb: Mapping[str, Any], covered: int) -> str | None:
    """Why ``pdb`` can never allow an eviction (None when it can). ``covered``: the pods it
    selects, used when ``status.expectedPods`` is absent."""
    spec = pdb.get("spec") or {}
    st = pdb.get("status") or {}
    expected = st.get("expectedPods")
    if not isinstance(expected, int) or isinstance(expected, bool):
        expected = covered
    if expected <= 0:
        return None
    if spec.get("maxUnavailable") is not None:
        mu = _scaled(spec["maxUnavailable"], expected)
        if mu is not None and mu <= 0:
            return f"maxUnavailable {spec['maxUnavailable']} lets no pod go"
        return None
    if spec.get("minAvailable") is not None:
        ma = _scaled(spec["minAvailable"], expected)
        if ma is not None and ma >= expected:
            return (
                f"minAvailable {spec['minAvailable']} needs all {expected} of its pods "
                "available, so none may go"
            )
    return None


def _pdb_key(pdb: Mapping[str, Any]) -> str:
    md = pdb.get("metadata") or {}
    return f"{md.get('namespace') or 'default'}/{md.get('name')}"


def check_drainability(
    pods: Sequence[Pod],
    pdbs: Sequence[Mapping[str, Any]],
    nodes: Iterable[str],
    flags: DrainFlags = DrainFlags(),
    *,
    missing_daemonsets: Collection[tuple[str, str]] = (),
) -> list[Finding]:
    """Findings for draining each of ``nodes`` (in the given order, each once), from every
    pod and budget in the cluster (API JSON)."""
    out: list[Finding] = []
    by_node: dict[str, list[Pod]] = {}
    for p in pods:
        n = _node_of(p)
        if n is not None:
            by_node.setdefault(n, []).append(p)
    covered: dict[str, int] = {}
    for p in pods:
        for b in pdbs_for_pod(p, pdbs):
            covered[_pdb_key(b)] = covered.get(_pdb_key(b), 0) + 1

    for node in dict.fromkeys(nodes):
        node_pods = by_node.get(node, [])
        if flags.pod_selectors.get(node):
            chooser = parse_selector(flags.pod_selectors[node])
            node_pods = [p for p in node_pods if chooser.matches_pod(p)]
        if not node_pods:
            continue
        out += _refusals(node, node_pods, flags, missing_daemonsets)
        # What the drain will evict (with the flags given), and the budgets that hold it.
        sel = classify_pods(
            node_pods,
            node=node,
            delete_emptydir_data=flags.delete_emptydir_data,
            force=flags.force,
            missing_daemonsets=missing_daemonsets,
        )
        holds = _budget_holds(sel.to_evict, pdbs, covered)
        out += _budget_findings(node, holds, flags)
    return out


def _refusals(
    node: str,
    node_pods: Sequence[Pod],
    flags: DrainFlags,
    missing_daemonsets: Collection[tuple[str, str]],
) -> list[Finding]:
    """The drain's refusals as if no flag were given: which flag passes which pods."""
    strict_sel = classify_pods(node_pods, node=node, missing_daemonsets=missing_daemonsets)
    emptydir: list[str] = []
    unmanaged: list[str] = []
    orphaned: list[str] = []
    for d in strict_sel.refused:
        for reason in d.reasons:
            if reason == LOCAL_STORAGE_FATAL:
                emptydir.append(d.key)
            elif reason == UNMANAGED_FATAL:
                unmanaged.append(d.key)
            elif "daemonsets.apps" in reason:
                orphaned.append(d.key)
    out: list[Finding] = []
    if emptydir:
        out.append(
            overridable(
                "DRAIN_EMPTYDIR",
                f"draining {node} would delete emptyDir data of {', '.join(emptydir)}",
                node=node,
                fix=f"pass {Override.DELETE_EMPTYDIR} if that data may be lost, or move the "
                "pods' data to a persistent volume",
                flag=Override.DELETE_EMPTYDIR,
                given=flags.delete_emptydir_data,
            )
        )
    if unmanaged:
        out.append(
            overridable(
                "DRAIN_UNMANAGED_POD",
                f"draining {node} would delete {', '.join(unmanaged)}, which no "
                "controller manages (they will not be recreated)",
                node=node,
                fix=f"run them under a Deployment/StatefulSet/Job, delete them, or pass "
                f"{Override.FORCE}",
                flag=Override.FORCE,
                given=flags.force,
            )
        )
    if orphaned:
        out.append(
            overridable(
                "DRAIN_ORPHANED_DAEMONSET_POD",
                f"draining {node} meets {', '.join(orphaned)}, whose DaemonSet no longer exists",
                node=node,
                fix=f"delete those pods, or pass {Override.FORCE}",
                flag=Override.FORCE,
                given=flags.force,
            )
        )
    return out


@dataclass
class _Holds:
    """The budgets that hold a node's pods: never (budget key -> (budget, why, pods)), not
    now (budget key -> (budget, pods)), and pods several budgets match."""

    never: dict[str, tuple[Mapping[str, Any], str, list[str]]] = field(default_factory=dict)
    now: dict[str, tuple[Mapping[str, Any], list[str]]] = field(default_factory=dict)
    multi: list[tuple[str, list[Mapping[str, Any]]]] = field(default_factory=list)


def _budget_holds(
    to_evict: Iterable[PodDecision], pdbs: Sequence[Mapping[str, Any]], covered: Mapping[str, int]
) -> _Holds:
    holds = _Holds()
    for d in to_evict:
        phase = (d.pod.get("status") or {}).get("phase")
        if phase in _PDB_FREE_PHASES or (d.pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        matched = pdbs_for_pod(d.pod, pdbs)
        if len(matched) > 1:
            holds.multi.append((pod_key(d.pod), matched))
            continue
        if not matched:
            continue
        b = matched[0]
        key = _pdb_key(b)
        why = pdb_never_allows(b, covered.get(key, 0))
        if why is not None:
            holds.never.setdefault(key, (b, why, []))[2].append(pod_key(d.pod))
            continue
        allowed = (b.get("status") or {}).get("disruptionsAllowed")
        if isinstance(allowed, int) and allowed <= 0:
            holds.now.setdefault(key, (b, []))[1].append(pod_key(d.pod))
    return holds


def _budget_findings(node: str, holds: _Holds, flags: DrainFlags) -> list[Finding]:
    passed_by = Override.DISABLE_EVICTION
    if node in flags.fallback_delete and not flags.disable_eviction:
        passed_by = Override.DRAIN_FALLBACK_DELETE
    budget_given = flags.disable_eviction or node in flags.fallback_delete
    out: list[Finding] = []
    for b, why, keys in holds.never.values():
        out.append(
            overridable(
                "DRAIN_PDB_BLOCKS",
                f"draining {node} cannot finish: {describe_pdb(b)} never allows evicting "
                f"{', '.join(keys)} ({why})",
                node=node,
                fix="relax the budget (maxUnavailable >= 1, or minAvailable below the "
                "replica count) or scale the workload up; or pass "
                f"{Override.DISABLE_EVICTION} to delete the pods regardless of the budget "
                f"(or {Override.DRAIN_FALLBACK_DELETE} to delete them once --drain-timeout "
                "ran out)",
                flag=passed_by,
                given=budget_given,
            )
        )
    for key, matched in holds.multi:
        names = ", ".join(_pdb_key(b) for b in matched)
        out.append(
            overridable(
                "DRAIN_MULTIPLE_PDBS",
                f"draining {node} cannot evict {key}: it is matched by several "
                f"PodDisruptionBudgets ({names}), which the eviction API refuses",
                node=node,
                fix="make the budgets' selectors disjoint so each pod has at most one, or "
                f"pass {Override.DISABLE_EVICTION} (or {Override.DRAIN_FALLBACK_DELETE})",
                flag=passed_by,
                given=budget_given,
            )
        )
    if not flags.disable_eviction:
        for b, keys in holds.now.values():
            out.append(
                Finding(
                    "DRAIN_PDB_NO_DISRUPTION_NOW",
                    Severity.WARNING,
                    f"{describe_pdb(b)} allows no disruption right now: draining {node} "
                    f"would wait for {', '.join(keys)} until the budget recovers or the "
                    "drain times out",
                    node,
                    "make the workload's pods Ready (kubectl get pods) before the run",
                )
            )
    return out
