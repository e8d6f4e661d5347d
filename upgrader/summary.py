"""The post-flight summary of a run: what ``apply`` prints last and writes beside the state
file (``<state file>.summary.json``).

Owns: per node, the versions before the run (the facts it started from) and after (facts
gathered again, else the API's kubelet version), the drained windows (from the state: the
``drain`` step's start, when the node was cordoned, to the ``uncordon`` step's end), the
kubelet hardening result when ``--harden-kubelet`` was given, the warnings of the plan,
the pods a drain fallback deleted (and the budgets it overrode);
for the run, the post-flight problems (those passed in, and a control-plane node whose
components are not at the target) and the etcd snapshot record. Its text form and its
JSON form (atomic write, mode 0600).

Must not: reach a node or the API (the caller passes what it read), decide exit codes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from upgrader import safefile
from upgrader import state as st
from upgrader.core.drain import fallback_text
from upgrader.core.fields import field_values
from upgrader.core.model import Facts, Finding, NodeFacts, PlanEntry, Severity
from upgrader.core.vocab import StepKind

HARDEN_VERIFY_STEP = "verify-kubelet-hardening"


def summary_path(state_path: str | Path) -> Path:
    """``<state file>.summary.json``."""
    p = Path(state_path)
    return p.with_name(p.name + ".summary.json")


def versions_of(node: NodeFacts | None) -> dict[str, str | None]:
    if node is None:
        return {"kubelet": None, "kubeadm": None, "kubectl": None, "control_plane": None}
    cp = node.control_plane.apiserver if node.control_plane is not None else None
    return {
        "kubelet": None if node.kubelet is None else str(node.kubelet),
        "kubeadm": None if node.kubeadm is None else str(node.kubeadm),
        "kubectl": None if node.kubectl is None else str(node.kubectl),
        "control_plane": None if cp is None else str(cp),
    }


def _seconds(start: str | None, end: str | None) -> float | None:
    if start is None or end is None:
        return None
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return None


def drained_windows(
    state: st.RunState, entries: Iterable[PlanEntry]
) -> dict[str, list[dict[str, Any]]]:
    """Per node, each visit's drained window: ``{"hop", "start", "end", "seconds"}`` from
    the drain step's start (it cordons first) to the uncordon step's end; ``end`` is None
    when the node stays cordoned (cordoned before the run) or was not uncordoned."""
    out: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        drain = next((s for s in e.steps if s.kind == StepKind.DRAIN), None)
        if drain is None or drain.id not in state.steps:
            continue
        start = state.step(drain.id).started
        uncordon = next((s for s in e.steps if s.kind == StepKind.UNCORDON), None)
        end = None
        if uncordon is not None and uncordon.id in state.steps:
            rec = state.step(uncordon.id)
            if rec.status == st.StepStatus.SUCCEEDED:
                end = rec.stopped
        out.setdefault(e.node, []).append(
            {"hop": e.hop, "start": start, "end": end, "seconds": _seconds(start, end)}
        )
    return out


@dataclass(frozen=True)
class NodeSummary:
    node: str
    role: str
    before: Mapping[str, str | None]
    after: Mapping[str, str | None]
    drained: Sequence[Mapping[str, Any]] = ()
    drained_seconds: float | None = None
    hardening: str | None = None  # "verified" | "<step status>" | None (not requested)
    warnings: Sequence[str] = ()
    # --drain-fallback delete: pods deleted regardless of their budget, and those budgets
    fallback_deleted: Sequence[str] = ()
    overridden_budgets: Sequence[str] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "role": self.role,
            "before": dict(self.before),
            "after": dict(self.after),
            "drained": [dict(w) for w in self.drained],
            "drained_seconds": self.drained_seconds,
            "hardening": self.hardening,
            "warnings": list(self.warnings),
            "fallback_deleted": list(self.fallback_deleted),
            "overridden_budgets": list(self.overridden_budgets),
        }


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    cluster: str
    target: str
    ok: bool
    created: str
    finished: str
    nodes: Sequence[NodeSummary]
    warnings: Sequence[str] = ()  # not about one node
    problems: Sequence[str] = ()  # what the post-flight found wrong
    etcd_snapshot: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = field_values(self, skip=("extra",))  # run_id, cluster, ... as they are
        out.update(
            nodes=[n.to_dict() for n in self.nodes],
            warnings=list(self.warnings),
            problems=list(self.problems),
            etcd_snapshot=None if self.etcd_snapshot is None else dict(self.etcd_snapshot),
        )
        return {**out, **dict(self.extra)}

    def text(self) -> str:
        from upgrader.execute.snapshot import restore_guidance

        lines = [
            f"Summary of run {self.run_id} ({self.cluster} -> {self.target}): "
            + ("post-flight checks passed" if self.ok else "post-flight checks FAILED")
        ]
        width = max((len(n.node) for n in self.nodes), default=4)
        for n in self.nodes:

            def v(d: Mapping[str, str | None]) -> str:
                parts = [f"kubelet {d.get('kubelet') or '?'}"]
                if d.get("control_plane"):
                    parts.append(f"control plane {d['control_plane']}")
                return ", ".join(parts)

            drained = (
                "not drained"
                if not n.drained
                else (
                    f"drained {n.drained_seconds:.1f}s"
                    if n.drained_seconds is not None
                    else "drained (left cordoned)"
                )
            )
            extra = f"; hardening {n.hardening}" if n.hardening else ""
            lines.append(f"  {n.node:<{width}}  {v(n.before)} -> {v(n.after)}; {drained}{extra}")
            if n.fallback_deleted:
                lines.append(
                    f"  {'':<{width}}  {fallback_text(n.fallback_deleted, n.overridden_budgets)}"
                )
            for w in n.warnings:
                lines.append(f"  {'':<{width}}  warning: {w}")
        for w in self.warnings:
            lines.append(f"  warning: {w}")
        for p in self.problems:
            lines.append(f"  problem: {p}")
        if self.etcd_snapshot:
            lines.append(restore_guidance(self.etcd_snapshot))
        return "\n".join(lines) + "\n"


def build_summary(
    state: st.RunState,
    entries: Sequence[PlanEntry],
    before: Facts,
    after: Facts | None,
    after_kubelet: Mapping[str, str | None],
    findings: Iterable[Finding],
    problems: Sequence[str],
    *,
    harden_kubelet: bool = False,
) -> RunSummary:
    """The summary of a finished run. ``after`` are facts gathered after the run (None if
    that failed); ``after_kubelet`` the API's kubelet versions (used when ``after`` lacks
    a node)."""
    windows = drained_windows(state, entries)
    node_warnings: dict[str, list[str]] = {}
    general: list[str] = []
    for f in findings:
        if f.severity != Severity.WARNING:
            continue
        text = f"{f.code}: {f.message}"
        if f.node is None:
            general.append(text)
        else:
            node_warnings.setdefault(f.node, []).append(text)
    roles = {e.node: e.role for e in entries}
    problems = list(problems)
    nodes: list[NodeSummary] = []
    for name in dict.fromkeys(e.node for e in entries):
        b = next((n for n in before.nodes if n.name == name), None)
        # the versions the run started from, recorded at its first attempt (a resume's own
        # facts already show what the earlier attempts changed)
        before_v = state.versions_before.get(name) or versions_of(b)
        a = next((n for n in after.nodes if n.name == name), None) if after else None
        after_v = versions_of(a)
        if a is None or not a.reachable:
            after_v = {**versions_of(None), "kubelet": after_kubelet.get(name)}
        cp_after = after_v.get("control_plane")
        if cp_after is not None and cp_after != state.target:
            problems.append(f"{name} runs control-plane components {cp_after}, not {state.target}")
        hardening = None
        if harden_kubelet:
            recs = [r for r in st.iter_records(state, name) if r.name == HARDEN_VERIFY_STEP]
            hardening = (
                "verified"
                if recs and all(r.status == st.StepStatus.SUCCEEDED for r in recs)
                else ", ".join(r.status.value for r in recs) or "not run"
            )
        fallbacks = [r for r in state.drain_fallbacks.values() if r.get("node") == name]
        wins = windows.get(name, [])
        secs = [w["seconds"] for w in wins]
        nodes.append(
            NodeSummary(
                node=name,
                role=roles[name],
                before=dict(before_v),
                after=after_v,
                drained=wins,
                drained_seconds=sum(secs) if wins and None not in secs else None,
                hardening=hardening,
                warnings=node_warnings.get(name, []),
                fallback_deleted=[p for r in fallbacks for p in r.get("pods", ())],
                overridden_budgets=sorted({b for r in fallbacks for b in r.get("budgets", ())}),
            )
        )
    return RunSummary(
        run_id=state.run_id,
        cluster=state.cluster,
        target=state.target,
        ok=not problems,
        created=state.created,
        finished=st.now_iso(),
        nodes=nodes,
        warnings=general,
        problems=problems,
        etcd_snapshot=state.etcd_snapshot,
    )


def write_summary(path: Path, summary: RunSummary) -> None:
    """Write atomically (mode 0600)."""
    safefile.atomic_write(path, json.dumps(summary.to_dict(), indent=1).encode() + b"\n")
