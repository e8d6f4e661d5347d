"""Plan -> text: what ``upgrader plan`` prints (the JSON form is ``Plan.to_dict()``).

Owns the detailed plain-text layout of a plan (``plan --detail``): a header (current ->
target, hops, strategy), every visit in execution order with its numbered steps (the exact
shell command and its skip check, or what an API step does), the findings grouped by
severity, and a last line saying whether the plan can run and which override flag would
pass which blocker. The header, findings and verdict are shared with the brief layout
(:mod:`upgrader.core.render_brief`). Also :func:`describe_step`, the one-line account of an
API step that progress output can reuse.

Must not: print, colour (the CLI may), do I/O, or import paramiko, kubernetes, typer or rich.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace

from upgrader.core import nodeenv, nodelock
from upgrader.core.model import Finding, Plan, Severity, Step
from upgrader.core.playbook import PKGS_K8S_IO
from upgrader.core.vocab import StepKind
from upgrader.core.workers import WorkerSelection
from upgrader.errors import SSH_UNREACHABLE_CODES


def _seconds(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value}s"


def _drain_text(step: Step) -> str:
    p = step.params
    extra = ""
    if p.get("grace_period") is not None:
        extra += f", grace period {_seconds(p['grace_period'])}"
    if p.get("delete_emptydir_data"):
        extra += ", emptyDir data deleted"
    if p.get("allow_unmanaged"):
        extra += ", pods without a controller deleted"
    if p.get("pod_selector"):
        extra += f", only pods matching {p['pod_selector']}"
    pdbs = "PDBs respected"
    if p.get("fallback") == "delete":
        pdbs += " until the timeout, then the pods they still hold are deleted"
    return (
        f"drain {step.node} via the Eviction API "
        f"(timeout {_seconds(p.get('timeout', step.timeout))}, {pdbs}{extra})"
    )


def _wait_ready_text(step: Step) -> str:
    return (
        f"wait until {step.node} is Ready with kubelet "
        f"{step.params.get('kubelet_version', step.hop)} (timeout {_seconds(step.timeout)})"
    )


def _wait_control_plane_text(step: Step) -> str:
    comps = step.params.get("components") or ["control-plane"]
    return (
        f"wait until the {', '.join(comps)} pods of {step.node} run "
        f"{step.params.get('version', step.hop)} (timeout {_seconds(step.timeout)})"
    )


# What a step of each kind does, in one line (:func:`describe_step`).
_DESCRIBE: Mapping[str, Callable[[Step], str]] = {
    StepKind.SHELL: lambda s: s.command or "(no command for this node's package manager)",
    StepKind.DRAIN: _drain_text,
    StepKind.CORDON: lambda s: f"cordon {s.node} (mark it unschedulable)",
    StepKind.UNCORDON: lambda s: f"uncordon {s.node} (unless it was cordoned before the run)",
    StepKind.WAIT_READY: _wait_ready_text,
    StepKind.WAIT_CONTROL_PLANE: _wait_control_plane_text,
    StepKind.ETCD_SNAPSHOT: lambda s: (
        f"etcdctl snapshot save inside the etcd static pod's container on {s.node} (crictl "
        "exec, kubeadm's etcd certificates, https://127.0.0.1:2379) into etcd's own data "
        "directory, its status checked, streamed to this machine and its sha256 compared"
    ),
}


def describe_step(step: Step) -> str:
    """What a step does, in one line: the command for shell steps, else the API action."""
    describe = _DESCRIBE.get(step.kind)
    return describe(step) if describe is not None else f"{step.kind} {step.node}"


def _finding_lines(f: Finding, overrides: tuple[str, ...]) -> list[str]:
    where = f" [{f.node}]" if f.node else ""
    lines = [f"  - {f.code}{where}: {f.message}"]
    if f.fix:
        lines.append(f"      fix: {f.fix}")
    if f.severity == Severity.BLOCKER and f.override:
        state = "given" if f.override in overrides else "not given"
        lines.append(f"      override: {f.override} ({state})")
    return lines


def _names(findings: Iterable[Finding]) -> str:
    return ", ".join(f"{f.code} ({f.node})" if f.node else f.code for f in findings)


def _verdict(plan: Plan) -> str:
    blockers = plan.blockers
    steps = sum(len(e.steps) for e in plan.entries)
    nodes = len({e.node for e in plan.entries})
    passed = [
        f
        for f in plan.findings
        if f.severity == Severity.BLOCKER and f.override and f.override in plan.overrides
    ]
    if blockers:
        by_flag: dict[str, list[Finding]] = {}
        fixed: list[Finding] = []
        for f in blockers:
            if f.override:
                by_flag.setdefault(f.override, []).append(f)
            else:
                fixed.append(f)
        parts = [f"{flag} would pass {_names(fs)}" for flag, fs in by_flag.items()]
        if fixed:
            parts.append(f"no flag passes {_names(fixed)}")
        n = len(blockers)
        why = "; ".join(parts)
        return f"Cannot run: {n} blocker{'s' if n != 1 else ''}. {why[0].upper()}{why[1:]}."
    if not plan.entries:
        return f"Nothing to do: the cluster and every node are at {plan.target}."
    line = f"Can run: {steps} step{'s' if steps != 1 else ''} on {nodes} node"
    line += "s" if nodes != 1 else ""
    if passed:
        flags = sorted({f.override for f in passed if f.override})
        line += f" ({', '.join(flags)} passes {_names(passed)})"
    return line + "."


def header_lines(plan: Plan) -> list[str]:
    """The plan's first lines: current -> target, hops and strategy, the overrides given,
    the node environment's names and the package mirror, and the node-lock rule (shared
    by the detailed and the brief layout)."""
    out: list[str] = []
    hops = ", ".join(str(h) for h in plan.hops) or "none"
    out.append(f"Upgrade plan: {plan.current} -> {plan.target}")
    out.append(f"Hops: {hops}    Worker strategy: {plan.strategy}")
    if plan.strategy == "drain-once" and plan.entries:
        out.append(
            f"(the control plane walks every hop; each worker is drained once and goes "
            f"straight to {plan.hops[-1] if plan.hops else plan.target})"
        )
    if plan.overrides:
        out.append(f"Overrides given: {' '.join(plan.overrides)}")
    if plan.selection is not None and plan.selection.active:
        out.append(selection_text(plan.selection))
    if plan.node_env:
        out.append(nodeenv.summary(plan.node_env))
    if plan.package_mirror:
        out.append(f"Package mirror: {plan.package_mirror} (stands for {PKGS_K8S_IO})")
    if any(s.kind == StepKind.SHELL for e in plan.entries for s in e.steps):
        out.append(
            f"Each $ command run as root, and its check, runs under `flock "
            f"{nodelock.LOCK_PATH}` on its node: one at a time, and a command a killed run "
            "left running is waited for."
        )
    return out


def selection_text(sel: WorkerSelection) -> str:
    """One line: which workers the run upgrades, their groups and their order, e.g.
    ``Workers: 2 of 4 selected by zone=a; groups by zone: a (w-1), b (w-2); at most 1
    down per group; order within a group: inventory order``."""
    how = []
    if sel.selector:
        how.append(f"selected by {sel.selector}")
    if sel.nodes is not None:
        how.append(f"named by --nodes ({', '.join(sel.nodes)})")
    parts = [f"Workers: {sel.selected} of {sel.total}" + (f" {' and '.join(how)}" if how else "")]
    if sel.group_by:
        groups = ", ".join(f"{g} ({', '.join(names)})" for g, names in sel.groups.items())
        parts.append(f"groups by {sel.group_by}: {groups}")
        parts.append(f"at most {sel.per_group} down per group")
    order = f"by {sel.order_by}, then name" if sel.order_by else "inventory order"
    parts.append(f"order{' within a group' if sel.group_by else ''}: {order}")
    return "; ".join(parts)


def unreached_nodes(plan: Plan) -> dict[str, str]:
    """Node -> the finding code that says it was not reached: its steps are guesses (its
    facts are missing), so neither layout lists them."""
    return {f.node: f.code for f in plan.blockers if f.code in SSH_UNREACHABLE_CODES and f.node}


def _same_on_many_nodes(fs: list[Finding]) -> list[Finding]:
    """Findings that differ only in their node (the node's name in the message too) become
    one, ``node`` naming them all (``cp-1, cp-2, cp-3``) and the message saying "the node"."""
    groups: dict[tuple[str, str, str | None, str | None], list[Finding]] = {}
    for f in fs:
        text = f.message
        if f.node:
            text = re.sub(rf"(?<![\w.-]){re.escape(f.node)}(?![\w.-])", "the node", text)
        key = (f.code, text, f.fix, f.override)
        groups.setdefault(key, []).append(f)
    out: list[Finding] = []
    for (_, text, _, _), members in groups.items():
        first = members[0]
        nodes = [m.node for m in members if m.node]
        if len(members) > 1 and len(nodes) == len(members):
            out.append(replace(first, node=", ".join(nodes), message=text))
        else:
            out.extend(members)
    return out


def tail_lines(plan: Plan, *, merge_nodes: bool = False) -> list[str]:
    """The findings grouped by severity, then the verdict line (shared by both layouts).
    ``merge_nodes``: a finding that several nodes share is one entry naming them all."""
    out: list[str] = []
    groups = (
        ("Blockers", Severity.BLOCKER),
        ("Warnings", Severity.WARNING),
        ("Notes", Severity.INFO),
    )
    for title, sev in groups:
        fs = [f for f in plan.findings if f.severity == sev]
        if fs:
            out.append("")
            out.append(f"{title} ({len(fs)}):")
            for f in _same_on_many_nodes(fs) if merge_nodes else fs:
                out.extend(_finding_lines(f, plan.overrides))
    out.append("")
    out.append(_verdict(plan))
    return out


def render_text(plan: Plan) -> str:
    """The detailed plan (``plan --detail``): every step of every visit with its exact
    command and skip check, as plain text ending with a newline."""
    out = header_lines(plan)
    unreached = unreached_nodes(plan)
    prestage_noted = False
    for e in plan.entries:
        out.append("")
        if e.phase == "prestage" and not prestage_noted:
            prestage_noted = True
            out.append("(prestage: every node at once, before the first drain: downloads only)")
        out.append(f"[{e.hop}] {e.node} ({e.role}, {e.phase})")
        if e.node in unreached:
            out.append(f"      (not reached, {unreached[e.node]}: its steps are not listed)")
            continue
        for i, s in enumerate(e.steps, 1):
            out.append(f"  {i:>2}. {s.description}")
            if s.kind == StepKind.SHELL:
                out.append(f"      $ {describe_step(s)}")
                if s.check:
                    out.append(f"      skipped when: {s.check}")
            else:
                out.append(f"      > {describe_step(s)}")
    out.extend(tail_lines(plan))
    return "\n".join(out) + "\n"
