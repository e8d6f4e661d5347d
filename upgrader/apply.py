"""``upgrader apply`` and ``upgrader status`` as library calls.

Owns the order of an apply: file lock -> unfinished run? -> inside a ``--window``? -> gather
facts -> plan -> refuse while a blocker stands -> show the plan -> confirm -> cluster Lease
-> execute -> post-checks -> summary (printed, and written to ``<state>.summary.json``), and
what a resume means. The CLI is a thin shell over :func:`apply` and :func:`status`.

Resume rule (chosen so that a rerun can never skip or reorder what a run still owes): when
a run starts, the plan's entries and steps (ids, nodes, kinds, commands, checks, parameters)
are stored beside the state file (``<state>.plan.json``, see
:mod:`upgrader.execute.stored`). A rerun toward the same target executes the *stored*
steps of the unfinished run (succeeded steps are skipped, a step left running or failed is
re-checked first), not a fresh plan: after a partial run the facts have moved (the control
plane may already be at the hop, a node may be cordoned by us) and a fresh plan would drop
or renumber steps. Facts are still gathered again and planned, for the preflight: a
blocker found now refuses the resume as it would refuse a new run. The stored plan's
sha256 is recorded in the state file (``plan_digest``) and a stored plan that no longer
matches it is refused; so is an unfinished run whose inputs changed (the state records
their digests part by part, :func:`run_inputs`; the error names each changed inventory
field, node, playbook file and step) unless ``--accept-changes``; a transcripts path the
state file names outside its directory is not used. A different target
while a run is unfinished is refused (exit 2); ``--abandon`` marks the old run abandoned
and plans afresh (nodes the abandoned run had cordoned are not mistaken for nodes the
operator cordoned).

Every error that stops or refuses an apply carries :func:`stop_report` as its hint (the
CLI prints it after the ``error:`` line): where it stopped (the failed or running step, the
next one, or "before the first step; nothing was changed"), the nodes cordoned by the run
and before it, and the command that resumes (or, refused, what to do first and the command
that re-runs).

Must not: print or prompt (output goes through the callables of :class:`ApplyIO`), import
typer or rich, or decide exit codes (errors are typed; the CLI maps them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shlex
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from upgrader import safefile
from upgrader import state as st
from upgrader.core import window
from upgrader.core.model import Facts, Finding, Plan, PlanEntry
from upgrader.core.playbook import PHASE_CONTROL_PLANE_KUBELET, PHASE_WORKER
from upgrader.core.render import selection_text
from upgrader.core.versions import KubeVersion
from upgrader.core.window import Window
from upgrader.core.workers import WorkerSelection
from upgrader.errors import (
    ConfigError,
    ExitCode,
    Interrupted,
    LockHeld,
    OutsideWindow,
    PreflightError,
    StepFailed,
    UpgraderError,
    refusal_exit_code,
)
from upgrader.execute import events as ev
from upgrader.execute import notify, pauses, stored
from upgrader.execute.engine import Engine, EngineOptions, precordoned_nodes
from upgrader.execute.ops import ApiKubeOps, KubeOps
from upgrader.execute.pauses import PauseBetween
from upgrader.inventory.model import RUN_ONLY_KEYS
from upgrader.kube import inspect as kinspect
from upgrader.planning import PlanRequest, make_plan
from upgrader.summary import (
    RunSummary,
    build_summary,
    summary_path,
    versions_of,
    write_summary,
)

log = logging.getLogger("upgrader.apply")


@dataclass(frozen=True)
class ApplyRequest:
    inventory: Path
    plan: PlanRequest
    kubeconfig: Path | None = None  # --kubeconfig / --known-hosts: win over the inventory
    known_hosts: Path | None = None
    engine: EngineOptions = field(default_factory=EngineOptions)
    state_path: Path | None = None
    transcripts: Path | None = None
    events: Path | None = None
    yes: bool = False
    break_lock: bool = False
    abandon: bool = False
    accept_changes: bool = False  # resume an unfinished run although its inputs changed
    max_workers: int = 32
    validate_count: int = 1  # the health gate passes this many times in a row between nodes
    detail: bool = False  # show the detailed plan (every command of every node), not the brief
    # --notify / --window / --window-tz (added to the inventory's notify: / window: keys)
    notify: tuple[str, ...] = ()
    windows: tuple[str, ...] = ()
    window_tz: str | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC), compare=False)
    # --canary (in engine.canary), --pause-between, --hold-uncordon: operator pauses
    pause_between: PauseBetween | None = None
    hold_uncordon: bool = False


@dataclass
class ApplyIO:
    """How :func:`apply` talks to the operator. ``confirm`` is None when there is no one to
    ask (no terminal): then only ``--yes`` lets the run go on."""

    show: Callable[[str], None]
    warn: Callable[[str], None]
    confirm: Callable[[str], bool] | None
    reporter: ev.EventHandler | None = None


@dataclass(frozen=True)
class ApplyOutcome:
    status: str  # "succeeded" | "nothing-to-do" | "declined" | "paused"
    run_id: str | None = None
    state_path: Path | None = None
    transcripts: Path | None = None
    resumed: bool = False
    etcd_snapshot: Mapping[str, Any] | None = None  # the run's snapshot record, if it took one


# --------------------------------------------------------------------------- helpers


def run_fingerprint(inventory: Any, req: PlanRequest) -> str:
    """sha256 of the inventory's validated content, the playbooks' files, the target and
    the worker strategy: what the state file calls the run's fingerprint."""
    from upgrader.core.playbook import default_playbook_dir

    h = hashlib.sha256()
    h.update(inventory.fingerprint().encode())
    h.update(f"\0{req.target}\0{req.strategy}\0".encode())
    d = req.playbooks if req.playbooks is not None else default_playbook_dir()
    for p in sorted(d.glob("*.yaml")) if d.is_dir() else ():
        h.update(p.name.encode() + b"\0")
        h.update(p.read_bytes())
    return h.hexdigest()


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def run_inputs(inventory: Any, req: PlanRequest) -> dict[str, str]:
    """The run's inputs digested part by part, recorded in the state so that a resume can
    say exactly what changed: ``inventory.<field>`` (``inventory.nodes.<name>`` per node),
    ``playbook <file>`` per playbook file, ``step <phase>.<pre|steps|post>.<name>`` per
    playbook step, ``target``, ``strategy``."""
    from upgrader.core.playbook import default_playbook_dir, load_playbooks

    out: dict[str, str] = {"target": _digest(str(req.target)), "strategy": _digest(req.strategy)}
    for k, v in inventory.to_dict().items():
        if k in RUN_ONLY_KEYS:
            continue
        if k == "nodes" and isinstance(v, list):
            for n in v:
                name = n.get("name") if isinstance(n, dict) else None
                out[f"inventory.nodes.{name}"] = _digest(n)
        else:
            out[f"inventory.{k}"] = _digest(v)
    d = req.playbooks if req.playbooks is not None else default_playbook_dir()
    for f in sorted(d.glob("*.yaml")) if d.is_dir() else ():
        out[f"playbook {f.name}"] = hashlib.sha256(f.read_bytes()).hexdigest()
    pb = load_playbooks(req.playbooks)
    for pname, phase in pb.phases.items():
        for lname in ("pre", "steps", "post"):
            for spec in getattr(phase, lname):
                fields = dataclasses.asdict(spec)
                fields.pop("origin", None)
                out[f"step {pname}.{lname}.{spec.name}"] = _digest(fields)
    return out


def _transcripts_dir(req: ApplyRequest, run: st.RunState, state_path: Path) -> Path:
    """Where this run's transcripts go: ``--transcripts`` when given; else the path the
    state recorded, only if it lies inside the state file's directory (a path read from
    the state file is never trusted to point elsewhere)."""
    if req.transcripts is not None:
        return Path(req.transcripts)
    recorded = run.transcripts
    if recorded is None:
        return st.default_transcripts_dir(state_path, run.run_id)
    if not safefile.inside(Path(recorded), state_path.parent):
        raise ConfigError(
            f"{state_path}: its transcripts path {recorded} is outside the state directory "
            f"{state_path.parent}; pass --transcripts {recorded} if you chose it"
        )
    return Path(recorded)


def _secrets(inventory: Any, api_client: Any) -> tuple[str, ...]:
    """Values to mask everywhere: sudo passwords (from the variables the inventory names),
    the API bearer token and the kubeconfig's client key."""
    from upgrader.kube.client import credential_values

    found: list[str] = []
    for n in inventory.nodes:
        env = inventory.ssh_target(n).sudo_password_env
        if env and os.environ.get(env):
            found.append(os.environ[env])
    found.extend(credential_values(api_client))
    node_env_secrets = getattr(inventory, "node_env_secrets", None)
    if node_env_secrets is not None:
        found.extend(node_env_secrets())  # a proxy URL's user:password
    return tuple(dict.fromkeys(found))


def _plan_for_display(sp: stored.StoredPlan, fresh: Plan) -> Plan:
    """The stored steps of an unfinished run, with the findings of the fresh preflight."""
    return Plan(
        current=KubeVersion.parse(sp.current),
        target=KubeVersion.parse(sp.target),
        hops=tuple(KubeVersion.parse(h) for h in sp.hops),
        entries=sp.entries,
        findings=fresh.findings,
        strategy=sp.strategy,
        overrides=fresh.overrides,
        selection=sp.selection,
        node_env=fresh.node_env,
        package_mirror=fresh.package_mirror,
    )


def _resume_drain_overrides(
    plan_req: PlanRequest, inv: Any, steps: Any, run_id: str, warn: Callable[[str], None]
) -> dict[str, tuple[str, str | None]]:
    """A resume runs its stored drain steps with the ``fallback`` / ``pod_selector`` they
    recorded, unless ``--drain-fallback`` or ``--pod-selector`` is given now: then, per node
    whose drain would differ, the new setting (said on stderr, one line per node). The
    usual case: a drain timed out, and the operator resumes with ``--drain-fallback
    delete`` for that node."""
    from types import SimpleNamespace

    from upgrader.planning import drain_settings

    if plan_req.drain_fallback is None and plan_req.pod_selector is None:
        return {}
    steps = list(steps)
    now = drain_settings(plan_req, inv, SimpleNamespace(steps=steps))  # type: ignore[arg-type]
    out: dict[str, tuple[str, str | None]] = {}
    for s in steps:
        if s.kind != "drain" or s.node in out:
            continue
        recorded = (str(s.params.get("fallback") or "none"), s.params.get("pod_selector") or None)
        will = now.get(s.node, recorded)
        if will != recorded:
            out[s.node] = will
            warn(
                f"resume of run {run_id}: the drain of {s.node} runs with fallback {will[0]}, "
                f"pod selector {will[1] or 'none'} (recorded: {recorded[0]}, "
                f"{recorded[1] or 'none'})"
            )
    return out


def _precordoned(
    kube: KubeOps, entries: tuple[PlanEntry, ...], abandoned: st.RunState | None
) -> frozenset[str]:
    now = precordoned_nodes(kube, (e.node for e in entries))
    if abandoned is None:
        return now
    ours = set(abandoned.cordoned_by_us) - set(abandoned.precordoned)
    return frozenset(n for n in now if n not in ours)


def _windows_and_hooks(req: ApplyRequest, inv: Any) -> tuple[tuple[Window, ...], list[str]]:
    """The run's maintenance windows and webhook URLs: the inventory's ``window:`` /
    ``notify:`` and the command line's, checked (one line naming the bad one, exit 2)."""
    doc = getattr(inv, "document", None)
    inv_windows = tuple(getattr(doc, "window", ()) or ())
    inv_hooks = tuple(getattr(doc, "notify", ()) or ())
    zone = req.window_tz or getattr(doc, "window_tz", None)
    windows = window.parse_windows((*inv_windows, *req.windows), zone)
    urls = [notify.check_url(u, "inventory notify") for u in inv_hooks]
    urls += [notify.check_url(u) for u in req.notify]
    return windows, list(dict.fromkeys(urls))


def _outside_text(windows: tuple[Window, ...], now: datetime, *, started: bool) -> str:
    head = (
        "the maintenance window closed: the run stopped before its next node"
        if started
        else "outside every maintenance window: no node was started"
    )
    return f"{head}; the next window opens {window.describe_next(windows, now)}"


def _in_window(
    windows: tuple[Window, ...],
    clock: Callable[[], datetime],
    gate: Callable[[Any], None] | None,
) -> Callable[[Any], None] | None:
    """The engine's ``before_batch``: the window first (no new node outside it), then the
    health gate, then the window again (the gate may have waited past the window's end)."""
    if not windows:
        return gate

    def before(batch: Any) -> None:
        for check in (None, gate):
            if check is not None:
                check(batch)
            now = clock()
            if not window.inside(windows, now):
                raise OutsideWindow(_outside_text(windows, now, started=True))

    return before


def post_check(kube: KubeOps, state: st.RunState, entries: tuple[PlanEntry, ...]) -> list[str]:
    """After a run: every node Ready, at the kubelet version of its last kubelet visit,
    cordoned exactly when it was cordoned before the run. One line per problem."""
    want_kubelet: dict[str, str] = {}
    for e in entries:
        if e.phase in (PHASE_CONTROL_PLANE_KUBELET, PHASE_WORKER):
            want_kubelet[e.node] = e.hop
    problems: list[str] = []
    for node in dict.fromkeys(e.node for e in entries):
        ns = kube.node_state(node)
        if not ns.ready:
            problems.append(f"{node} is not Ready")
        want = want_kubelet.get(node)
        if want is not None and ns.kubelet_version != want:
            problems.append(f"{node} reports kubelet {ns.kubelet_version}, expected {want}")
        pre = node in state.precordoned
        if ns.unschedulable != pre:
            problems.append(
                f"{node} is {'cordoned' if ns.unschedulable else 'schedulable'}, expected "
                f"{'cordoned (as before the run)' if pre else 'schedulable'}"
            )
    return problems


def _addons_check(
    api: Any, plan: Plan, facts: Facts, entries: tuple[PlanEntry, ...], pool: Any, inv: Any
) -> list[str]:
    """Post-flight of CoreDNS and kube-proxy, when this run moved a control plane to the
    target (else the addons are not this run's business)."""
    from upgrader import preflight
    from upgrader.core.playbook import PHASE_CONTROL_PLANE, PHASE_FIRST_CONTROL_PLANE

    target = str(plan.target)
    moved = [
        e.node
        for e in entries
        if e.hop == target and e.phase in (PHASE_FIRST_CONTROL_PLANE, PHASE_CONTROL_PLANE)
    ]
    if not moved:
        return []
    transport = pool.get(inv.ssh_target(moved[0]))
    return preflight.addons_after_run(api, transport, plan.target, facts.cluster.image_repository)


def _summary(
    final: st.RunState,
    entries: tuple[PlanEntry, ...],
    before: Facts,
    findings: tuple[Finding, ...],
    problems: list[str],
    *,
    after: Callable[[], Facts],
    kube: KubeOps,
    harden_kubelet: bool,
) -> RunSummary:
    """The post-flight summary: facts gathered again for the versions after the run (the
    API's kubelet versions if that fails)."""
    from upgrader.errors import UpgraderError

    try:
        after_facts: Facts | None = after()
    except UpgraderError as e:
        log.warning("post-flight: could not gather facts again: %s", e)
        after_facts = None
    kubelets: dict[str, str | None] = {}
    for node in dict.fromkeys(e.node for e in entries):
        try:
            kubelets[node] = kube.node_state(node).kubelet_version
        except UpgraderError:
            kubelets[node] = None
    return build_summary(
        final,
        entries,
        before,
        after_facts,
        kubelets,
        findings,
        problems,
        harden_kubelet=harden_kubelet,
    )


def _refused_lead(inventory: Path, *, resume: bool, lock: bool) -> str:
    """What a run refused before its first step says to do before the command that runs
    it again: wait for the lock's holder, or fix the blockers."""
    again = "resume with:" if resume else "re-run:"
    if lock and resume:  # the resume command is followed by where to see the run's state
        return f"once the run holding the lock has finished, {again}"
    if lock:
        status = f"upgrader status -i {shlex.quote(str(inventory))}"
        return f"once the run holding the lock has finished (`{status}` shows it), {again}"
    return f"fix the blockers above, then {again}"


def stop_report(
    state: st.RunState | None,
    inventory: Path,
    target: object,
    *,
    lead: str = "resume with:",
) -> str:
    """What a stopped run left, for the last lines of its output: where it stopped, which
    nodes are cordoned and by whom, and the command that resumes it (after ``lead``, which
    says what to do first when the run was refused: "fix the blockers above, then re-run:").
    ``state`` None: the run was refused before it recorded anything; nothing was changed."""
    inv = shlex.quote(str(inventory))
    lines = []
    if state is None:
        lines.append("stopped at: before the first step; nothing was changed on any node")
        lines.append("cordoned by this run: none")
    else:
        recs = list(state.steps.values())
        at = next((r for r in recs if r.status == st.StepStatus.FAILED), None) or next(
            (r for r in recs if r.status == st.StepStatus.RUNNING), None
        )
        if at is not None:
            failed = at.status == st.StepStatus.FAILED
            how = "failed" if failed else "was running (re-checked first)"
            lines.append(f"stopped at: step {at.id} on {at.node} {how}")
        else:
            nxt = next((r for r in recs if r.status == st.StepStatus.PENDING), None)
            if nxt is not None:
                lines.append(f"stopped at: before step {nxt.id} on {nxt.node} (not started)")
        ours = sorted(state.cordoned_by_us)
        lines.append(
            "cordoned by this run: "
            + (", ".join(ours) if ours else "none")
            + (
                f"; cordoned before it (left so): {', '.join(sorted(state.precordoned))}"
                if state.precordoned
                else ""
            )
        )
    command = f"{lead} upgrader apply -i {inv} --to {target}"
    if state is not None:
        command += f" (see `upgrader status -i {inv}` and the transcripts)"
    lines.append(command)
    return "\n".join(lines)


def continue_command(inventory: Path | str, target: object) -> str:
    return f"upgrader apply -i {shlex.quote(str(inventory))} --to {target}"


def pause_text(state: st.RunState, inventory: Path | str, target: object) -> str:
    """What a paused run prints last: why it paused and the command that continues it."""
    reason = state.paused or "paused"
    cont = continue_command(inventory, target)
    if reason.startswith(st.CANARY_PREFIX):
        done = reason.removeprefix(st.CANARY_PREFIX).removesuffix(" done")
        head = f"paused after canary {done}: inspect it, then continue with: {cont}"
    else:
        head = f"paused ({reason}): continue with: {cont}"
    ours = sorted(state.cordoned_by_us)
    tail = f"\ncordoned by this run: {', '.join(ours)}" if ours else ""
    return f"run {state.run_id} {head}{tail}\n"


# --------------------------------------------------------------------------- apply


def apply(req: ApplyRequest, io: ApplyIO) -> ApplyOutcome:
    """Upgrade (or resume the upgrade of) the inventory's cluster to ``req.plan.target``.
    Raises typed errors: ConfigError (2), PreflightError (3), LockHeld (6), StepFailed (1),
    TransportError (4), KubernetesError (5)."""
    from upgrader import preflight
    from upgrader.core.render import render_text
    from upgrader.core.render_brief import render_brief
    from upgrader.gather import gather_facts
    from upgrader.inventory import load_inventory
    from upgrader.kube import lease
    from upgrader.kube.client import exec_plugin_notice, make_api_client
    from upgrader.transport.ssh import SSHPool

    show_plan = render_text if req.detail else render_brief

    if not req.yes and io.confirm is None:
        # decided before anything is read or contacted: no one can answer the question
        raise ConfigError(
            "apply: no terminal to ask for confirmation; pass --yes (-y) to apply without asking"
        )
    inv = load_inventory(req.inventory, kubeconfig=req.kubeconfig, known_hosts=req.known_hosts)
    target = str(req.plan.target)
    windows, notify_urls = _windows_and_hooks(req, inv)
    state_path = req.state_path or st.default_state_path(req.inventory, inv.cluster_name)
    sf = st.StateFile(state_path)
    fingerprint = run_fingerprint(inv, req.plan)
    inputs = run_inputs(inv, req.plan)

    lock = sf.lock()
    try:
        lock.acquire()
    except LockHeld as e:
        lead = _refused_lead(req.inventory, resume=False, lock=True)
        e.hint = stop_report(None, req.inventory, target, lead=lead)
        raise
    with lock, contextlib.ExitStack() as files:
        # the operator's own output files are opened (or refused) before anything is
        # contacted: a symlinked --events or a --transcripts others can write is exit 2 here,
        # not half-way through the run
        sink: ev.JsonlSink | None = None
        if req.events is not None:
            sink = ev.JsonlSink(req.events)
            files.callback(sink.close)
        if req.transcripts is not None:
            safefile.ensure_private_dir(Path(req.transcripts), what="transcripts directory")
        prev = sf.load()
        st.check_cluster(prev, inv.cluster_name, source=str(state_path))
        if not window.inside(windows, req.clock()):
            # before anything is contacted: a run started outside its window asks no node
            unfinished = prev if prev is not None and not prev.finished else None
            raise OutsideWindow(
                _outside_text(windows, req.clock(), started=False),
                hint=stop_report(
                    unfinished,
                    req.inventory,
                    target,
                    lead="once the window opens, "
                    + ("resume with:" if unfinished is not None else "run:"),
                ),
            )
        notifiers = [notify.WebhookNotifier(u, cluster=inv.cluster_name) for u in notify_urls]
        for n in notifiers:
            files.callback(n.close, 0)
        abandoned: st.RunState | None = None
        if prev is not None and not prev.finished:
            if req.abandon:
                abandoned = prev
            else:
                compat = st.check_compatible(
                    prev,
                    fingerprint,
                    target,
                    source=str(state_path),
                    inputs=inputs,
                    accept_changes=req.accept_changes,
                )
                for w in compat.warnings:
                    io.warn(w)
        elif req.abandon:
            io.warn(f"{state_path}: no unfinished run to abandon")
        resuming = prev is not None and not prev.finished and abandoned is None
        sp_resume: stored.StoredPlan | None = None
        drain_overrides: dict[str, tuple[str, str | None]] = {}
        if resuming:
            assert prev is not None
            if prev.plan_digest is None:
                raise ConfigError(
                    f"{state_path}: run {prev.run_id} records no digest of its stored plan, so "
                    "the plan cannot be trusted; pass --abandon to drop it and plan afresh"
                )
            sp_resume = stored.load(stored.plan_path(state_path), prev.run_id, prev.plan_digest)
            _transcripts_dir(req, prev, state_path)  # refused now, before any node is asked
            drain_overrides = _resume_drain_overrides(
                req.plan, inv, sp_resume.steps, prev.run_id, io.warn
            )

        notice = exec_plugin_notice(inv.kubeconfig_path(), inv.kubeconfig_context)
        if notice is not None:
            io.show(notice + "\n")  # before it runs (building the client runs it)
        api = make_api_client(
            inv.kubeconfig_path(),
            inv.kubeconfig_context,
            missing_hint=getattr(inv, "kubeconfig_hint", None),
        )
        pool = SSHPool()
        try:
            try:
                facts = gather_facts(inv, api_client=api, max_workers=req.max_workers, pool=pool)
                plan_req, pre = preflight.for_apply(
                    inv,
                    facts,
                    api,
                    pool,
                    req.plan,
                    req.engine,
                    own_run_id=prev.run_id if resuming and prev is not None else None,
                )
                fresh = make_plan(facts, plan_req, inv, preflight=pre)
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM while the facts are read
                resumed = prev if resuming else None
                raise Interrupted(
                    "interrupted while gathering facts and planning, before any step ran",
                    hint=stop_report(
                        resumed,
                        req.inventory,
                        target,
                        lead="resume with:" if resumed is not None else "re-run:",
                    ),
                ) from None
            except UpgraderError as e:
                # the API or a node failed while the facts were read (bad input stays one
                # line: its error names the field)
                if not isinstance(e, ConfigError) and e.hint is None:
                    resumed = prev if resuming else None
                    again = "resume with:" if resumed is not None else "re-run:"
                    e.hint = stop_report(
                        resumed, req.inventory, target, lead=f"fix the cause above, then {again}"
                    )
                raise
            kube = ApiKubeOps(api)

            if sp_resume is not None:
                assert prev is not None
                shown = _plan_for_display(sp_resume, fresh)
                io.show(show_plan(shown))
                done = sum(1 for r in prev.steps.values() if r.status in st.DONE_STEP)
                point = st.resume_point(prev, (s.id for s in sp_resume.steps))
                io.show(
                    f"Resuming run {prev.run_id} ({prev.status.value}): {done} of "
                    f"{len(prev.steps)} steps done; next: {point.first}\n"
                )
            else:
                io.show(show_plan(fresh))
            if fresh.blockers:
                codes = ", ".join(sorted({f.code for f in fresh.blockers}))
                refused = PreflightError(
                    f"refusing to apply: {len(fresh.blockers)} blocker(s) stand ({codes}); "
                    "see the findings above"
                )
                refused.exit_code = refusal_exit_code(f.code for f in fresh.blockers)
                resumed = prev if resuming else None  # what the refused resume's run left
                lead = _refused_lead(
                    req.inventory,
                    resume=resumed is not None,
                    lock=refused.exit_code == ExitCode.LOCKED,
                )
                refused.hint = stop_report(resumed, req.inventory, target, lead=lead)
                raise refused
            if sp_resume is None and not fresh.entries:
                io.show("Nothing to do: the cluster is already at the target.\n")
                return ApplyOutcome("nothing-to-do", state_path=state_path)

            if not req.yes:
                assert io.confirm is not None  # refused at the start otherwise
                question = (
                    f"Resume run {prev.run_id} to {target}?"
                    if sp_resume is not None and prev is not None
                    else f"Apply this plan to {inv.cluster_name} ({target})?"
                )
                if not io.confirm(question):
                    return ApplyOutcome("declined", state_path=state_path)

            # ---- the cluster lock first: a run refused by another holder records nothing
            resuming_run = sp_resume is not None and prev is not None
            run_id = prev.run_id if resuming_run and prev is not None else uuid.uuid4().hex[:12]
            keeper = lease.LeaseKeeper(api, lease.default_holder(run_id))
            try:
                lease.acquire(api, run_id, keeper.holder, break_lock=req.break_lock)
            except LockHeld as e:
                resumed = prev if resuming_run else None
                lead = _refused_lead(req.inventory, resume=resumed is not None, lock=True)
                e.hint = stop_report(resumed, req.inventory, target, lead=lead)
                raise
            try:
                # ---- the run's records
                if resuming_run and sp_resume is not None and prev is not None:
                    run_state, plan_entries = prev, sp_resume.entries
                    selection = sp_resume.selection
                else:
                    if abandoned is not None:
                        sf.save(st.set_status(abandoned, st.RunStatus.ABANDONED))
                        left = sorted(set(abandoned.cordoned_by_us))
                        io.warn(
                            f"run {abandoned.run_id} (target {abandoned.target}) abandoned"
                            + (f"; nodes it had cordoned: {', '.join(left)}" if left else "")
                        )
                    sp = stored.StoredPlan.of(fresh, run_id)
                    tdir = req.transcripts or st.default_transcripts_dir(state_path, run_id)
                    # the plan before the state, which records its digest
                    digest = stored.save(stored.plan_path(state_path), sp)
                    run_state = st.new_run(
                        cluster=inv.cluster_name,
                        inventory=req.inventory.resolve(),
                        fingerprint=fingerprint,
                        target=target,
                        hops=sp.hops,
                        strategy=sp.strategy,
                        steps=sp.steps,
                        precordoned=_precordoned(kube, sp.entries, abandoned),
                        transcripts=tdir.resolve(),
                        run_id=run_id,
                        plan_digest=digest,
                        inputs=inputs,
                        versions_before={
                            n.name: versions_of(n) for n in facts.nodes if n.reachable
                        },
                    )
                    sf.save(run_state)
                    plan_entries = sp.entries
                    selection = sp.selection
                transcripts_dir = _transcripts_dir(req, run_state, state_path)

                # ---- the run
                keeper.start()
                secrets = _secrets(inv, api)
                masker = ev.make_masker(secrets)
                handlers: list[ev.EventHandler] = []
                if io.reporter is not None:
                    handlers.append(io.reporter)
                if sink is not None:
                    sink.masker = masker
                    handlers.append(sink)
                for n in notifiers:
                    n.masker = masker
                    handlers.append(n)
                options = dataclasses.replace(
                    req.engine,
                    secrets=tuple(dict.fromkeys((*req.engine.secrets, *secrets))),
                    snapshot_dir=req.engine.snapshot_dir
                    or st.default_transcripts_dir(state_path, run_id),
                    drain_overrides=drain_overrides or req.engine.drain_overrides,
                    # the run's own grouping (a resume keeps the stored one)
                    groups=selection.group_of() if selection is not None else {},
                    per_group=selection.per_group if selection is not None else 1,
                )
                engine = Engine(
                    plan_entries,
                    run_state,
                    save=sf.save,
                    transports=lambda node: pool.get(inv.ssh_target(node)),
                    kube=kube,
                    options=options,
                    on_event=ev.Fanout(handlers),
                    transcripts=ev.TranscriptWriter(transcripts_dir, masker),
                    guard=keeper.check,
                    before_uncordon=pauses.before_uncordon_hook(
                        lambda node: (
                            kinspect.node_pods(api, node),
                            kinspect.node_events(api, node),
                        ),
                        confirm=io.confirm,
                        show=io.show,
                    )
                    if req.hold_uncordon
                    else None,
                    before_batch=_in_window(
                        windows,
                        req.clock,
                        pauses.before_batch_hook(
                            preflight.between_nodes(
                                lambda: preflight.health_gate(
                                    api,
                                    transports=lambda node: pool.get(inv.ssh_target(node)),
                                    control_planes=[
                                        n.name for n in facts.control_planes if n.reachable
                                    ],
                                ),
                                validate_count=req.validate_count,
                                # the engine exists by the time the hook runs (run() calls it)
                                on_progress=lambda batch, text: engine.gate_waiting(batch, text),
                                progress_every=options.progress_every,
                            ),
                            req.pause_between,
                            confirm=io.confirm,
                            show=io.show,
                        ),
                    ),
                )
                try:
                    final = engine.run()
                except UpgraderError as e:
                    # a failed step, the cluster lock lost, an API or SSH failure mid-run,
                    # or the --window closed before the next node
                    lead = (
                        "once the window opens, resume with:"
                        if isinstance(e, OutsideWindow)
                        else "resume with:"
                    )
                    report = stop_report(engine.state, req.inventory, target, lead=lead)
                    e.hint = f"{e.hint}\n{report}" if e.hint else report
                    raise
                except KeyboardInterrupt:
                    stopped = engine.state
                    raise Interrupted(
                        f"interrupted: run {stopped.run_id} stopped and recorded as "
                        f"{stopped.status.value}",
                        hint=stop_report(stopped, req.inventory, target),
                    ) from None
            finally:
                keeper.stop(release_lock=True)
                # the run's end: its whole state in the state file, the journal dropped (if
                # that fails, the journal stays and load() still reads it)
                with contextlib.suppress(OSError, ConfigError):
                    sf.close()
                if sink is not None:
                    sink.close()  # before the summary (ExitStack closes it again: a no-op)
                for n in notifiers:  # a few seconds at most for a receiver that is down
                    undelivered = n.close()
                    if undelivered.total:
                        io.warn(undelivered.warning())
            if final.status == st.RunStatus.PAUSED:
                io.show(pause_text(final, req.inventory, target))
                return ApplyOutcome(
                    "paused",
                    run_id=run_id,
                    state_path=state_path,
                    transcripts=transcripts_dir,
                    resumed=sp_resume is not None,
                    etcd_snapshot=final.etcd_snapshot,
                )
            problems = post_check(kube, final, plan_entries)
            problems += preflight.wait_pdbs_recovered(
                api,
                pre.pdbs,
                on_progress=lambda text: io.show(f"post-check: {text}\n"),
                progress_every=req.engine.progress_every,
            )
            problems += _addons_check(api, fresh, facts, plan_entries, pool, inv)
            summary = _summary(
                final,
                plan_entries,
                facts,
                fresh.findings,
                problems,
                after=lambda: gather_facts(
                    inv, api_client=api, max_workers=req.max_workers, pool=pool
                ),
                kube=kube,
                harden_kubelet=req.plan.harden_kubelet,
            )
            spath = summary_path(state_path)
            write_summary(spath, summary)
            io.show(summary.text() + f"Summary written to {spath}\n")
            if summary.problems:
                raise StepFailed("post-check after the run: " + "; ".join(summary.problems))
            return ApplyOutcome(
                "succeeded",
                run_id=run_id,
                state_path=state_path,
                transcripts=transcripts_dir,
                resumed=sp_resume is not None,
                etcd_snapshot=final.etcd_snapshot,
            )
        finally:
            pool.close()
            api.close()  # type: ignore[no-untyped-call]


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class NodeReport:
    node: str
    state: str
    text: str
    step: str | None
    message: str | None
    done_steps: int
    total_steps: int
    transcript: str | None
    cordoned_by_us: bool
    precordoned: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class StatusReport:
    state_path: Path
    run: st.RunState | None
    nodes: tuple[NodeReport, ...]
    lock: str  # "free" or who holds the file lock
    lease: str | None  # the cluster Lease as read, or why it could not be read
    # the workers the run chose and how it groups them (from its stored plan), if any
    selection: WorkerSelection | None = None

    @property
    def run_status(self) -> str:
        """The run's status, except that a run recorded ``running`` whose state lock no
        process holds was killed (SIGKILL, a crash): it says ``killed``, never ``running``."""
        r = self.run
        if r is None:
            return "none"
        if r.status == st.RunStatus.RUNNING and self.lock == "free":
            return "killed"
        return r.status.value

    def to_dict(self) -> dict[str, Any]:
        r = self.run
        return {
            "state_file": str(self.state_path),
            "run": None
            if r is None
            else {
                "run_id": r.run_id,
                "status": self.run_status,
                "recorded_status": r.status.value,
                "target": r.target,
                "hops": list(r.hops),
                "created": r.created,
                "updated": r.updated,
                "transcripts": r.transcripts,
                "etcd_snapshot": None if r.etcd_snapshot is None else dict(r.etcd_snapshot),
                "paused": r.paused,
            },
            "nodes": [n.to_dict() for n in self.nodes],
            "lock": self.lock,
            "lease": self.lease,
            "workers": self.selection.to_dict() if self.selection is not None else None,
        }

    def text(self) -> str:
        lines = [f"State file: {self.state_path}"]
        r = self.run
        if r is None:
            lines.append("No run recorded.")
        else:
            what = self.run_status
            if what == "killed":
                what = "killed (recorded as running, but no process holds its lock)"
            lines.append(
                f"Run {r.run_id}: {what}, target {r.target} "
                f"(hops {', '.join(r.hops) or 'none'}), updated {r.updated}"
            )
            if r.status == st.RunStatus.PAUSED:
                lines[-1] = lines[-1].replace(
                    f": {what},", f": {what} ({r.paused or 'no reason recorded'}),", 1
                )
                lines.append(f"Continue with: {continue_command(r.inventory, r.target)}")
            elif not r.finished and what != "running":
                lines.append(f"The same `upgrader apply --to {r.target}` resumes it.")
            if self.selection is not None:
                lines.append(selection_text(self.selection))
            width = max((len(n.node) for n in self.nodes), default=4)
            for n in self.nodes:
                extra = ""
                if n.cordoned_by_us and r.status != st.RunStatus.SUCCEEDED:
                    extra = " [cordoned by this run]"
                elif n.precordoned:
                    extra = " [cordoned before the run; stays cordoned]"
                lines.append(f"  {n.node:<{width}}  {n.text}{extra}")
                if n.state == "failed" and n.transcript:
                    lines.append(f"  {'':<{width}}  transcript: {n.transcript}")
            if r.transcripts:
                lines.append(f"Transcripts: {r.transcripts}")
            if r.etcd_snapshot:
                lines.append(
                    f"etcd snapshot: {r.etcd_snapshot.get('path')} (of "
                    f"{r.etcd_snapshot.get('node')}, sha256 {r.etcd_snapshot.get('sha256')})"
                )
        lines.append(f"State lock: {self.lock}")
        if self.lease is not None:
            lines.append(f"Cluster lock: {self.lease}")
        return "\n".join(lines) + "\n"


def _file_lock_holder(sf: st.StateFile) -> str:
    lk = sf.lock()
    try:
        lk.acquire()
    except LockHeld as e:
        return str(e)
    lk.release()
    return "free"


def _lease_text(inventory: Any) -> str:
    from datetime import UTC, datetime

    from upgrader.errors import UpgraderError
    from upgrader.kube import lease
    from upgrader.kube.client import make_api_client

    try:
        api = make_api_client(
            inventory.kubeconfig_path(),
            inventory.kubeconfig_context,
            missing_hint=getattr(inventory, "kubeconfig_hint", None),
        )
    except ConfigError as e:
        return f"unknown ({e})"
    try:
        obj = lease.read_lease(api)
    except UpgraderError as e:
        return f"unknown (API: {str(e).splitlines()[0]})"
    finally:
        api.close()  # type: ignore[no-untyped-call]
    if obj is None:
        return "free"
    return lease.LeaseInfo.from_obj(obj).describe(datetime.now(UTC))


def status(
    inventory_path: Path,
    state_path: Path | None = None,
    *,
    read_lease: bool = True,
    kubeconfig: Path | None = None,
    known_hosts: Path | None = None,
) -> StatusReport:
    """What the recorded run did per node, where its transcripts are, who holds the locks."""
    from upgrader.inventory import load_inventory

    inv = load_inventory(inventory_path, kubeconfig=kubeconfig, known_hosts=known_hosts)
    path = state_path or st.default_state_path(inventory_path, inv.cluster_name)
    sf = st.StateFile(path)
    run = sf.load()
    nodes: list[NodeReport] = []
    if run is not None:
        trusted = run.transcripts and safefile.inside(Path(run.transcripts), path.parent)
        writer = ev.TranscriptWriter(Path(run.transcripts)) if trusted and run.transcripts else None
        for name, ns in st.status_summary(run).items():
            tp = writer.path_for(name) if writer is not None else None
            nodes.append(
                NodeReport(
                    node=name,
                    state=ns.state,
                    text=ns.text,
                    step=ns.step,
                    message=ns.message,
                    done_steps=ns.done_steps,
                    total_steps=ns.total_steps,
                    transcript=str(tp) if tp is not None and tp.exists() else None,
                    cordoned_by_us=name in run.cordoned_by_us,
                    precordoned=name in run.precordoned,
                )
            )
    selection = None
    if run is not None:
        try:
            selection = stored.load(stored.plan_path(path), run.run_id, run.plan_digest).selection
        except ConfigError:
            selection = None  # no stored plan (or not this run's): nothing to say
    return StatusReport(
        state_path=path,
        run=run,
        selection=selection,
        nodes=tuple(nodes),
        lock=_file_lock_holder(sf),
        lease=_lease_text(inv) if read_lease else None,
    )
