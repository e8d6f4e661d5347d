"""``upgrader apply`` as a library call (``upgrader status`` is :mod:`upgrader.status`).

Owns the order of an apply: file lock -> unfinished run? -> inside a ``--window``? -> gather
facts -> plan -> refuse while a blocker stands -> show the plan -> confirm -> cluster Lease
-> execute -> post-checks -> summary (printed, and written to ``<state>.summary.json``), and
what a resume means. The CLI is a thin shell over :func:`apply`.

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

Every error that stops or refuses an apply carries :func:`upgrader.stops.stop_report` as
its hint (the CLI prints it after the ``error:`` line).

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
from upgrader.core.versions import KubeVersion
from upgrader.core.vocab import Phase, StepKind
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
from upgrader.inventory.model import RUN_ONLY_KEYS, Inventory
from upgrader.kube import inspect as kinspect
from upgrader.planning import PlanRequest, make_plan
from upgrader.stops import pause_text, refused_lead, stop_report
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


def run_fingerprint(inventory: Inventory, req: PlanRequest) -> str:
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


def run_inputs(inventory: Inventory, req: PlanRequest) -> dict[str, str]:
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


def _secrets(inventory: Inventory, api_client: Any) -> tuple[str, ...]:
    """Values to mask everywhere: sudo passwords (from the variables the inventory names),
    the API bearer token and the kubeconfig's client key."""
    from upgrader.kube.client import credential_values

    found: list[str] = []
    for n in inventory.nodes:
        env = inventory.ssh_target(n).sudo_password_env
        if env and os.environ.get(env):
            found.append(os.environ[env])
    found.extend(credential_values(api_client))
    found.extend(inventory.node_env_secrets())  # a proxy URL's user:password
    return tuple(dict.fromkeys(found))


def _plan_for_display(sp: stored.StoredPlan, fresh: Plan) -> Plan:
    """The stored steps of an unfinished run, with the findings of the fresh preflight."""
    return dataclasses.replace(
        fresh,
        current=KubeVersion.parse(sp.current),
        target=KubeVersion.parse(sp.target),
        hops=tuple(KubeVersion.parse(h) for h in sp.hops),
        entries=sp.entries,
        strategy=sp.strategy,
        selection=sp.selection,
    )


def _resume_drain_overrides(
    plan_req: PlanRequest, inv: Inventory, steps: Any, run_id: str, warn: Callable[[str], None]
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
        if s.kind != StepKind.DRAIN or s.node in out:
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


def _windows_and_hooks(req: ApplyRequest, inv: Inventory) -> tuple[tuple[Window, ...], list[str]]:
    """The run's maintenance windows and webhook URLs: the inventory's ``window:`` /
    ``notify:`` and the command line's, checked (one line naming the bad one, exit 2)."""
    doc = inv.document
    zone = req.window_tz or doc.window_tz
    windows = window.parse_windows((*doc.window, *req.windows), zone)
    urls = [notify.check_url(u, "inventory notify") for u in doc.notify]
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
        if e.phase in (Phase.CONTROL_PLANE_KUBELET, Phase.WORKER):
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
    api: Any, plan: Plan, facts: Facts, entries: tuple[PlanEntry, ...], pool: Any, inv: Inventory
) -> list[str]:
    """Post-flight of CoreDNS and kube-proxy, when this run moved a control plane to the
    target (else the addons are not this run's business)."""
    from upgrader import preflight

    target = str(plan.target)
    moved = [
        e.node
        for e in entries
        if e.hop == target and e.phase in (Phase.FIRST_CONTROL_PLANE, Phase.CONTROL_PLANE)
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


# --------------------------------------------------------------------------- the run decision


@dataclass(frozen=True)
class Fresh:
    """No unfinished run: plan afresh and record a new run."""


@dataclass(frozen=True)
class Abandon:
    """``--abandon`` with an unfinished run: plan afresh; ``old`` is recorded ``abandoned``
    when the new run's records open (after the cluster lock is taken), and the nodes it had
    cordoned are not mistaken for nodes the operator cordoned."""

    old: st.RunState


@dataclass(frozen=True)
class Resume:
    """An unfinished run toward the same target, its inputs unchanged (or accepted): execute
    its stored plan. ``drain_overrides``: ``--drain-fallback``/``--pod-selector`` given to
    this resume, per node still to drain."""

    run: st.RunState
    plan: stored.StoredPlan
    drain_overrides: dict[str, tuple[str, str | None]]

    def headline(self) -> str:
        done = sum(1 for r in self.run.steps.values() if r.status in st.DONE_STEP)
        point = st.resume_point(self.run, (s.id for s in self.plan.steps))
        return (
            f"Resuming run {self.run.run_id} ({self.run.status.value}): {done} of "
            f"{len(self.run.steps)} steps done; next: {point.first}\n"
        )


RunDecision = Fresh | Abandon | Resume


def decide_run(
    req: ApplyRequest,
    inv: Inventory,
    prev: st.RunState | None,
    state_path: Path,
    fingerprint: str,
    inputs: Mapping[str, str],
    warn: Callable[[str], None],
) -> RunDecision:
    """What this apply does with the recorded run ``prev``, decided before any node or the
    API is contacted: a different target, changed inputs (without ``--accept-changes``), a
    stored plan that does not match its digest or a transcripts path outside the state's
    directory is refused (:class:`ConfigError`); compatible-with-warnings prints them."""
    if prev is None or prev.finished:
        if req.abandon:
            warn(f"{state_path}: no unfinished run to abandon")
        return Fresh()
    if req.abandon:
        return Abandon(prev)
    compat = st.check_compatible(
        prev,
        fingerprint,
        str(req.plan.target),
        source=str(state_path),
        inputs=dict(inputs),
        accept_changes=req.accept_changes,
    )
    for w in compat.warnings:
        warn(w)
    if prev.plan_digest is None:
        raise ConfigError(
            f"{state_path}: run {prev.run_id} records no digest of its stored plan, so "
            "the plan cannot be trusted; pass --abandon to drop it and plan afresh"
        )
    plan = stored.load(stored.plan_path(state_path), prev.run_id, prev.plan_digest)
    _transcripts_dir(req, prev, state_path)  # refused now, before any node is asked
    overrides = _resume_drain_overrides(req.plan, inv, plan.steps, prev.run_id, warn)
    return Resume(prev, plan, overrides)


# --------------------------------------------------------------------------- apply


def apply(req: ApplyRequest, io: ApplyIO) -> ApplyOutcome:
    """Upgrade (or resume the upgrade of) the inventory's cluster to ``req.plan.target``.
    Raises typed errors: ConfigError (2), PreflightError (3), LockHeld (6), StepFailed (1),
    TransportError (4), KubernetesError (5).

    The story: decide the run (fresh, resume, abandon) under the state file's lock, before
    anything is contacted; gather facts and plan; show the plan and refuse while a blocker
    stands; confirm; take the cluster Lease; open the run's records; run the engine;
    post-flight checks and the summary."""
    from upgrader.inventory import load_inventory

    if not req.yes and io.confirm is None:
        # decided before anything is read or contacted: no one can answer the question
        raise ConfigError(
            "apply: no terminal to ask for confirmation; pass --yes (-y) to apply without asking"
        )
    inv = load_inventory(req.inventory, kubeconfig=req.kubeconfig, known_hosts=req.known_hosts)
    state_path = req.state_path or st.default_state_path(req.inventory, inv.cluster_name)
    sf = st.StateFile(state_path)
    lock = sf.lock()
    try:
        lock.acquire()
    except LockHeld as e:
        lead = refused_lead(req.inventory, resume=False, lock=True)
        e.hint = stop_report(None, req.inventory, req.plan.target, lead=lead)
        raise
    with lock, contextlib.ExitStack() as files:
        run = _Run(req, io, inv, state_path, sf, files)
        return run.go()


@dataclass
class _Run:
    """One apply, under the state file's lock: the pieces :func:`apply`'s story steps share.
    Fields after ``files`` are filled in as the story goes."""

    req: ApplyRequest
    io: ApplyIO
    inv: Inventory
    state_path: Path
    sf: st.StateFile
    files: contextlib.ExitStack
    sink: ev.JsonlSink | None = None
    notifiers: list[notify.WebhookNotifier] = field(default_factory=list)
    windows: tuple[Window, ...] = ()
    decision: RunDecision = field(default_factory=Fresh)
    fingerprint: str = ""
    inputs: dict[str, str] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return str(self.req.plan.target)

    @property
    def resumed(self) -> st.RunState | None:
        """The unfinished run this apply continues (None: a new run), for every stop message."""
        return self.decision.run if isinstance(self.decision, Resume) else None

    def stop(self, lead: str, state: st.RunState | None = None) -> str:
        return stop_report(state, self.req.inventory, self.target, lead=lead)

    # ---- the story
    def go(self) -> ApplyOutcome:
        self.open_outputs()
        self.decide()
        from upgrader.kube.client import exec_plugin_notice, make_api_client
        from upgrader.transport.ssh import SSHPool

        inv = self.inv
        notice = exec_plugin_notice(inv.kubeconfig_path(), inv.kubeconfig_context)
        if notice is not None:
            self.io.show(notice + "\n")  # before it runs (building the client runs it)
        api = make_api_client(
            inv.kubeconfig_path(),
            inv.kubeconfig_context,
            missing_hint=inv.kubeconfig_hint,
        )
        pool = SSHPool()
        try:
            return _Cluster(self, api, pool).go()
        finally:
            pool.close()
            api.close()  # type: ignore[no-untyped-call]

    def open_outputs(self) -> None:
        """The operator's own output files are opened (or refused) before anything is
        contacted: a symlinked --events or a --transcripts others can write is exit 2 here,
        not half-way through the run."""
        req = self.req
        if req.events is not None:
            self.sink = ev.JsonlSink(req.events)
            self.files.callback(self.sink.close)
        if req.transcripts is not None:
            safefile.ensure_private_dir(Path(req.transcripts), what="transcripts directory")

    def decide(self) -> None:
        """What to do with the recorded run, refused or decided before anything is contacted
        (a run started outside its window asks no node)."""
        req, inv = self.req, self.inv
        self.windows, notify_urls = _windows_and_hooks(req, inv)
        prev = self.sf.load()
        st.check_cluster(prev, inv.cluster_name, source=str(self.state_path))
        if not window.inside(self.windows, req.clock()):
            unfinished = prev if prev is not None and not prev.finished else None
            raise OutsideWindow(
                _outside_text(self.windows, req.clock(), started=False),
                hint=self.stop(
                    "once the window opens, "
                    + ("resume with:" if unfinished is not None else "run:"),
                    unfinished,
                ),
            )
        self.notifiers = [notify.WebhookNotifier(u, cluster=inv.cluster_name) for u in notify_urls]
        for n in self.notifiers:
            self.files.callback(n.close, 0)
        self.fingerprint = run_fingerprint(inv, req.plan)
        self.inputs = run_inputs(inv, req.plan)
        self.decision = decide_run(
            req, inv, prev, self.state_path, self.fingerprint, self.inputs, self.io.warn
        )


@dataclass
class _Cluster:
    """The part of an apply that talks to the cluster (API client and SSH pool open)."""

    run: _Run
    api: Any
    pool: Any
    facts: Facts | None = None
    pre: Any = None
    fresh: Plan | None = None

    def go(self) -> ApplyOutcome:
        from upgrader.kube import lease

        run, req, io = self.run, self.run.req, self.run.io
        facts, fresh = self.gather_and_plan()
        kube = ApiKubeOps(self.api)
        self.show_and_refuse(fresh)
        if run.resumed is None and not fresh.entries:
            io.show("Nothing to do: the cluster is already at the target.\n")
            return ApplyOutcome("nothing-to-do", state_path=run.state_path)
        if not req.yes:
            assert io.confirm is not None  # refused at the start otherwise
            question = (
                f"Resume run {run.resumed.run_id} to {run.target}?"
                if run.resumed is not None
                else f"Apply this plan to {run.inv.cluster_name} ({run.target})?"
            )
            if not io.confirm(question):
                return ApplyOutcome("declined", state_path=run.state_path)

        # ---- the cluster lock first: a run refused by another holder records nothing
        run_id = run.resumed.run_id if run.resumed is not None else uuid.uuid4().hex[:12]
        keeper = lease.LeaseKeeper(self.api, lease.default_holder(run_id))
        try:
            lease.acquire(self.api, run_id, keeper.holder, break_lock=req.break_lock)
        except LockHeld as e:
            lead = refused_lead(req.inventory, resume=run.resumed is not None, lock=True)
            e.hint = run.stop(lead, run.resumed)
            raise
        try:
            run_state, entries, selection = self.open_records(run_id, kube, facts, fresh)
            transcripts_dir = _transcripts_dir(req, run_state, run.state_path)
            keeper.start()
            engine = self.build_engine(
                run_state, entries, selection, transcripts_dir, kube, keeper.check
            )
            final = self.execute(engine)
        finally:
            keeper.stop(release_lock=True)
            # the run's end: its whole state in the state file, the journal dropped (if
            # that fails, the journal stays and load() still reads it)
            with contextlib.suppress(OSError, ConfigError):
                run.sf.close()
            if run.sink is not None:
                run.sink.close()  # before the summary (ExitStack closes it again: a no-op)
            for n in run.notifiers:  # a few seconds at most for a receiver that is down
                undelivered = n.close()
                if undelivered.total:
                    io.warn(undelivered.warning())
        outcome = ApplyOutcome(
            "paused" if final.status == st.RunStatus.PAUSED else "succeeded",
            run_id=run_id,
            state_path=run.state_path,
            transcripts=transcripts_dir,
            resumed=run.resumed is not None,
            etcd_snapshot=final.etcd_snapshot,
        )
        if final.status == st.RunStatus.PAUSED:
            io.show(pause_text(final, req.inventory, run.target))
            return outcome
        self.post_flight(final, entries, kube)
        return outcome

    def gather_and_plan(self) -> tuple[Facts, Plan]:
        from upgrader import preflight
        from upgrader.gather import gather_facts

        run, req = self.run, self.run.req
        resumed = run.resumed
        again = "resume with:" if resumed is not None else "re-run:"
        try:
            facts = gather_facts(
                run.inv, api_client=self.api, max_workers=req.max_workers, pool=self.pool
            )
            plan_req, pre = preflight.for_apply(
                run.inv,
                facts,
                self.api,
                self.pool,
                req.plan,
                req.engine,
                own_run_id=resumed.run_id if resumed is not None else None,
            )
            fresh = make_plan(facts, plan_req, run.inv, preflight=pre)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM while the facts are read
            raise Interrupted(
                "interrupted while gathering facts and planning, before any step ran",
                hint=run.stop(again, resumed),
            ) from None
        except UpgraderError as e:
            # the API or a node failed while the facts were read (bad input stays one
            # line: its error names the field)
            if not isinstance(e, ConfigError) and e.hint is None:
                e.hint = run.stop(f"fix the cause above, then {again}", resumed)
            raise
        self.facts, self.pre, self.fresh = facts, pre, fresh
        return facts, fresh

    def show_and_refuse(self, fresh: Plan) -> None:
        """Show the plan (a resume: its stored plan and where it resumes), and refuse while a
        blocker stands."""
        from upgrader.core.render import render_text
        from upgrader.core.render_brief import render_brief

        run = self.run
        show_plan = render_text if run.req.detail else render_brief
        if isinstance(run.decision, Resume):
            run.io.show(show_plan(_plan_for_display(run.decision.plan, fresh)))
            run.io.show(run.decision.headline())
        else:
            run.io.show(show_plan(fresh))
        if not fresh.blockers:
            return
        codes = ", ".join(sorted({f.code for f in fresh.blockers}))
        refused = PreflightError(
            f"refusing to apply: {len(fresh.blockers)} blocker(s) stand ({codes}); "
            "see the findings above"
        )
        refused.exit_code = refusal_exit_code(f.code for f in fresh.blockers)
        lead = refused_lead(
            run.req.inventory,
            resume=run.resumed is not None,
            lock=refused.exit_code == ExitCode.LOCKED,
        )
        refused.hint = run.stop(lead, run.resumed)
        raise refused

    def open_records(
        self, run_id: str, kube: KubeOps, facts: Facts, fresh: Plan
    ) -> tuple[st.RunState, tuple[PlanEntry, ...], WorkerSelection | None]:
        """The run's state and the plan it executes: a resume's own; otherwise the stored
        plan (written before the state, which records its digest) and a new run, after
        recording an abandoned run as such."""
        run, req = self.run, self.run.req
        decision = run.decision
        if isinstance(decision, Resume):
            return decision.run, decision.plan.entries, decision.plan.selection
        abandoned = decision.old if isinstance(decision, Abandon) else None
        if abandoned is not None:
            run.sf.save(st.set_status(abandoned, st.RunStatus.ABANDONED))
            left = sorted(set(abandoned.cordoned_by_us))
            run.io.warn(
                f"run {abandoned.run_id} (target {abandoned.target}) abandoned"
                + (f"; nodes it had cordoned: {', '.join(left)}" if left else "")
            )
        sp = stored.StoredPlan.of(fresh, run_id)
        tdir = req.transcripts or st.default_transcripts_dir(run.state_path, run_id)
        digest = stored.save(stored.plan_path(run.state_path), sp)
        run_state = st.new_run(
            cluster=run.inv.cluster_name,
            inventory=req.inventory.resolve(),
            fingerprint=run.fingerprint,
            target=run.target,
            hops=sp.hops,
            strategy=sp.strategy,
            steps=sp.steps,
            precordoned=_precordoned(kube, sp.entries, abandoned),
            transcripts=tdir.resolve(),
            run_id=run_id,
            plan_digest=digest,
            inputs=run.inputs,
            versions_before={n.name: versions_of(n) for n in facts.nodes if n.reachable},
        )
        run.sf.save(run_state)
        return run_state, sp.entries, sp.selection

    def build_engine(
        self,
        run_state: st.RunState,
        entries: tuple[PlanEntry, ...],
        selection: WorkerSelection | None,
        transcripts_dir: Path,
        kube: KubeOps,
        guard: Callable[[], None],
    ) -> Engine:
        """The engine over the run's plan, with the event handlers (progress, --events,
        --notify; all masked), the operator's pauses, the window and the health gate
        between nodes."""
        from upgrader import preflight

        run, req, io = self.run, self.run.req, self.run.io
        api, pool, inv, facts = self.api, self.pool, run.inv, self.facts
        assert facts is not None
        secrets = _secrets(inv, api)
        masker = ev.make_masker(secrets)
        handlers = self._handlers(masker)
        options = self._engine_options(run_state, selection, secrets)
        reachable_cps = [n.name for n in facts.control_planes if n.reachable]
        engine = Engine(
            entries,
            run_state,
            save=run.sf.save,
            transports=lambda node: pool.get(inv.ssh_target(node)),
            kube=kube,
            options=options,
            on_event=ev.Fanout(handlers),
            transcripts=ev.TranscriptWriter(transcripts_dir, masker),
            guard=guard,
            before_uncordon=pauses.before_uncordon_hook(
                lambda node: (kinspect.node_pods(api, node), kinspect.node_events(api, node)),
                confirm=io.confirm,
                show=io.show,
            )
            if req.hold_uncordon
            else None,
            before_batch=_in_window(
                run.windows,
                req.clock,
                pauses.before_batch_hook(
                    preflight.between_nodes(
                        lambda: preflight.health_gate(
                            api,
                            transports=lambda node: pool.get(inv.ssh_target(node)),
                            control_planes=reachable_cps,
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
        return engine

    def _handlers(self, masker: ev.Masker) -> list[ev.EventHandler]:
        """Who hears the run's events: the progress display, --events, --notify (the
        last two through ``masker``)."""
        run = self.run
        handlers: list[ev.EventHandler] = []
        if run.io.reporter is not None:
            handlers.append(run.io.reporter)
        if run.sink is not None:
            run.sink.masker = masker
            handlers.append(run.sink)
        for n in run.notifiers:
            n.masker = masker
            handlers.append(n)
        return handlers

    def _engine_options(
        self,
        run_state: st.RunState,
        selection: WorkerSelection | None,
        secrets: tuple[str, ...],
    ) -> EngineOptions:
        """The request's engine options completed for this run: the secrets to mask, the
        snapshot directory, a resume's drain overrides and the run's own grouping (a
        resume keeps the stored one)."""
        run, engine = self.run, self.run.req.engine
        decision = run.decision
        return dataclasses.replace(
            engine,
            secrets=tuple(dict.fromkeys((*engine.secrets, *secrets))),
            snapshot_dir=engine.snapshot_dir
            or st.default_transcripts_dir(run.state_path, run_state.run_id),
            drain_overrides=(decision.drain_overrides if isinstance(decision, Resume) else {})
            or engine.drain_overrides,
            groups=selection.group_of() if selection is not None else {},
            per_group=selection.per_group if selection is not None else 1,
        )

    def execute(self, engine: Engine) -> st.RunState:
        """Run the engine; every way it stops carries what it left and the resume command."""
        run = self.run
        try:
            return engine.run()
        except UpgraderError as e:
            # a failed step, the cluster lock lost, an API or SSH failure mid-run,
            # or the --window closed before the next node
            lead = (
                "once the window opens, resume with:"
                if isinstance(e, OutsideWindow)
                else "resume with:"
            )
            report = run.stop(lead, engine.state)
            e.hint = f"{e.hint}\n{report}" if e.hint else report
            raise
        except KeyboardInterrupt:
            stopped = engine.state
            raise Interrupted(
                f"interrupted: run {stopped.run_id} stopped and recorded as {stopped.status.value}",
                hint=stop_report(stopped, run.req.inventory, run.target),
            ) from None

    def post_flight(
        self, final: st.RunState, entries: tuple[PlanEntry, ...], kube: KubeOps
    ) -> None:
        """Post-checks (nodes, budgets recovered, add-ons) and the summary, printed and
        written beside the state; a problem found is :class:`StepFailed`."""
        from upgrader import preflight
        from upgrader.gather import gather_facts

        run, req, io = self.run, self.run.req, self.run.io
        api, pool, inv, facts, fresh = self.api, self.pool, run.inv, self.facts, self.fresh
        assert facts is not None and fresh is not None
        problems = post_check(kube, final, entries)
        problems += preflight.wait_pdbs_recovered(
            api,
            self.pre.pdbs,
            on_progress=lambda text: io.show(f"post-check: {text}\n"),
            progress_every=req.engine.progress_every,
        )
        problems += _addons_check(api, fresh, facts, entries, pool, inv)
        summary = _summary(
            final,
            entries,
            facts,
            fresh.findings,
            problems,
            after=lambda: gather_facts(inv, api_client=api, max_workers=req.max_workers, pool=pool),
            kube=kube,
            harden_kubelet=req.plan.harden_kubelet,
        )
        spath = summary_path(run.state_path)
        write_summary(spath, summary)
        io.show(summary.text() + f"Summary written to {spath}\n")
        if summary.problems:
            raise StepFailed("post-check after the run: " + "; ".join(summary.problems))
