"""The upgrade path: which versions the cluster passes through, and the worker strategy.

Owns :func:`plan_path` (Facts + target -> :class:`UpgradePath`), the simulation of every
intermediate cluster state a path goes through (:func:`simulate`), and the small
"does this node still need work at this hop?" predicates the planner uses.

Hops. A jump of several minors becomes several hops, one minor apart: each intermediate
hop is the newest patch the release data knows of the next minor, the last hop is the
exact target. Special cases:

* target == cluster version: no hops ("nothing to do"), unless some node still lags
  below it (a kubelet, kubeadm or control-plane component older than the target): then
  ``hops == (target,)`` and the planner visits only the nodes that
  :func:`node_needs_upgrade` says need it.
* catch-up hop: when some node lags so far behind the cluster version that the first
  real hop would break the skew policy or kubeadm's kubelet rule (a kubelet 3 minors
  behind, a kube-apiserver of an interrupted upgrade still a minor behind), the path
  starts with a hop *at the cluster version* (``catch_up=True``, an ``info`` finding
  ``CATCH_UP_HOP`` names the nodes). Such a hop, like every hop equal to the cluster
  version at that point, needs no ``kubeadm upgrade apply``: control-plane nodes run
  ``kubeadm upgrade node``, lagging kubelets are upgraded. This is how an interrupted
  run is finished when re-planned from fresh facts.
* downgrade: refused (``DOWNGRADE`` blocker from :func:`~upgrader.core.policy.check_target`).

Strategies (what :func:`simulate` models, in facts order):

* ``per-hop``: for each hop, control-plane nodes one by one move kube-apiserver,
  controller-manager and scheduler (the first runs ``kubeadm upgrade apply`` when the hop
  is above the cluster version), then kubelets one by one (control-plane nodes first).
* ``drain-once``: control-plane nodes walk every hop as above (their kubelets too) while
  worker kubelets stay; after the last hop each worker jumps straight to the target, so
  each worker is drained once. Allowed only when no state it passes through breaks the
  skew policy or any kubeadm rule, ``--force``-able ones included (``drain_once_reason``
  says why not). ``auto`` picks drain-once for a path of two or more minor hops when it
  is allowed, else per-hop; an explicit ``drain-once`` that is not allowed yields a
  ``DRAIN_ONCE_NOT_ALLOWED`` blocker.

Every state of the chosen strategy is checked with
:func:`~upgrader.core.policy.skew_findings` and every ``kubeadm upgrade apply`` with
:func:`~upgrader.core.policy.kubeadm_apply_findings` (kubeadm at the hop version), so a
path whose states break a rule carries the blocker; problems already present in the
current state are reported once, from the current state.

API beyond the brief (additive): ``UpgradePath.current``/``target``/``catch_up``/
``blockers``/``nothing_to_do``, ``simulate``, ``SimEvent``, ``control_plane_needs_upgrade``,
``kubelet_needs_upgrade``.

Must not: do I/O, or import paramiko, kubernetes, typer or rich.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from upgrader.core import policy as _policy
from upgrader.core import vocab
from upgrader.core.model import Facts, Finding, NodeFacts, Severity
from upgrader.core.policy import (
    ClusterState,
    PolicyOptions,
    check_target,
    kubeadm_apply_findings,
    kubeadm_kubelet_skew,
    kubeadm_node_findings,
    kubelet_max_lag,
    skew_findings,
    state_from_facts,
)
from upgrader.core.releases import ReleaseData
from upgrader.core.versions import KubeVersion
from upgrader.errors import ConfigError

Strategy = Literal["per-hop", "drain-once"]
STRATEGIES = tuple(s.value for s in vocab.Strategy)

NO_CONTROL_PLANE = "NO_CONTROL_PLANE"
NO_RELEASE_DATA = "NO_RELEASE_DATA"
MAJOR_VERSION_CHANGE = "MAJOR_VERSION_CHANGE"
CATCH_UP_HOP = "CATCH_UP_HOP"
NOTHING_TO_DO = "NOTHING_TO_DO"
DRAIN_ONCE_NOT_ALLOWED = "DRAIN_ONCE_NOT_ALLOWED"

CODES: Mapping[str, str] = {
    NO_CONTROL_PLANE: "the facts list no control-plane node",
    NO_RELEASE_DATA: "no release data for an intermediate minor",
    MAJOR_VERSION_CHANGE: "target of another major version",
    CATCH_UP_HOP: "lagging nodes first brought to the cluster version (info)",
    NOTHING_TO_DO: "cluster and every node already at the target (info)",
    DRAIN_ONCE_NOT_ALLOWED: "drain-once requested but a state would break a rule",
}


@dataclass(frozen=True)
class UpgradePath:
    hops: tuple[KubeVersion, ...]
    strategy: Strategy
    drain_once_allowed: bool
    drain_once_reason: str
    findings: tuple[Finding, ...]
    current: KubeVersion | None = None
    target: KubeVersion | None = None
    catch_up: bool = False  # hops[0] is the cluster version, for lagging nodes

    @property
    def blockers(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == Severity.BLOCKER)

    @property
    def nothing_to_do(self) -> bool:
        return not self.hops and not self.blockers


# --------------------------------------------------------------------------- predicates


def _below(v: KubeVersion | None, hop: KubeVersion) -> bool:
    return v is None or v < hop


def control_plane_needs_upgrade(node: NodeFacts, hop: KubeVersion) -> bool:
    """A control-plane node whose apiserver, controller-manager or scheduler is below
    ``hop`` (or unknown). Always False for workers."""
    if not node.is_control_plane:
        return False
    cp = node.control_plane
    if cp is None:
        return True
    return any(_below(v, hop) for v in (cp.apiserver, cp.controller_manager, cp.scheduler))


def kubelet_needs_upgrade(node: NodeFacts, hop: KubeVersion) -> bool:
    return _below(node.kubelet, hop)


def node_needs_upgrade(node: NodeFacts, hop: KubeVersion) -> bool:
    """Does ``node`` need work to be at ``hop``: its kubelet or kubeadm is below it (or
    unknown), or, on a control-plane node, a control-plane component is. kubectl alone
    does not count (it needs no drain; the planner upgrades it with the kubelet)."""
    return (
        kubelet_needs_upgrade(node, hop)
        or _below(node.kubeadm, hop)
        or control_plane_needs_upgrade(node, hop)
    )


# --------------------------------------------------------------------------- simulation


@dataclass(frozen=True)
class SimEvent:
    """One step of a simulated path and the cluster state right after it.

    ``kind`` is ``"apply"`` (``kubeadm upgrade apply hop`` on the first control-plane
    node; ``state`` is the state before it, ``kubelets`` what kubeadm sees), ``"node"``
    (``kubeadm upgrade node`` on ``node``, kubeadm at ``hop``), ``"control-plane"`` (the
    node's components moved) or ``"kubelet"`` (the node's kubelet moved)."""

    kind: Literal["apply", "node", "control-plane", "kubelet"]
    hop: KubeVersion
    node: str | None
    cluster: KubeVersion  # cluster version (kubeadm-config) before the event
    state: ClusterState
    kubelets: Mapping[str, KubeVersion | None]


@dataclass
class _Live:
    """The cluster state a walk mutates in place (see :func:`_walk`)."""

    apis: dict[str, KubeVersion]
    cms: dict[str, KubeVersion]
    scheds: dict[str, KubeVersion]
    kubelets: dict[str, KubeVersion | None]

    def snapshot(self) -> ClusterState:
        return ClusterState(
            apiservers=dict(self.apis),
            controller_managers=dict(self.cms),
            schedulers=dict(self.scheds),
            kubelets={k: v for k, v in self.kubelets.items() if v is not None},
        )

    def of_node(self, name: str) -> ClusterState:
        """Every kube-apiserver (the skew policy's reference) and ``name``'s own
        components only: :func:`skew_findings` of it are those of :meth:`snapshot` that
        name ``name``, in time independent of the cluster's size."""

        def one(d: Mapping[str, KubeVersion | None]) -> dict[str, KubeVersion]:
            v = d.get(name)
            return {name: v} if v is not None else {}

        return ClusterState(
            apiservers=self.apis,
            controller_managers=one(self.cms),
            schedulers=one(self.scheds),
            kubelets=one(self.kubelets),
        )


_Move = tuple[
    Literal["apply", "node", "control-plane", "kubelet"], KubeVersion, str | None, KubeVersion
]


def _walk(
    facts: Facts, hops: tuple[KubeVersion, ...], strategy: Strategy
) -> Iterator[tuple[_Move, _Live]]:
    """:func:`simulate` without the snapshots: every event as (kind, hop, node, cluster)
    with the live state, valid until the next event. Between two events only the event's
    own node changes (its control-plane components, or its kubelet)."""
    start, _ = state_from_facts(facts)
    live = _Live(
        apis=dict(start.apiservers),
        cms=dict(start.controller_managers),
        scheds=dict(start.schedulers),
        kubelets={n.name: n.kubelet for n in facts.nodes},
    )
    apis, cms, scheds, kubelets = live.apis, live.cms, live.scheds, live.kubelets
    cps = facts.control_planes
    workers = facts.workers
    cluster = facts.cluster.version

    def bump(d: dict[str, KubeVersion], name: str, hop: KubeVersion) -> None:
        if d[name] < hop:
            d[name] = hop

    def move_kubelet(
        name: str, hop: KubeVersion, cl: KubeVersion, worker: bool
    ) -> Iterator[tuple[_Move, _Live]]:
        if _below(kubelets[name], hop):
            if worker:  # control-plane nodes ran kubeadm upgrade apply/node already
                yield ("node", hop, name, cl), live
            kubelets[name] = hop
            yield ("kubelet", hop, name, cl), live

    for hop in hops:
        catching_up = hop <= cluster
        if hop > cluster:
            yield ("apply", hop, cps[0].name if cps else None, cluster), live
        before, cluster = cluster, max(cluster, hop)
        for i, n in enumerate(cps):
            if any(d[n.name] < hop for d in (apis, cms, scheds)):
                if i > 0 or catching_up:
                    yield ("node", hop, n.name, cluster), live
                for d in (apis, cms, scheds):
                    bump(d, n.name, hop)
                yield ("control-plane", hop, n.name, before), live
        for n in cps:
            yield from move_kubelet(n.name, hop, cluster, worker=False)
        if strategy == "per-hop" or catching_up:
            for n in workers:
                yield from move_kubelet(n.name, hop, cluster, worker=True)
    if strategy == "drain-once" and hops:
        for n in workers:
            yield from move_kubelet(n.name, hops[-1], cluster, worker=True)


def simulate(facts: Facts, hops: tuple[KubeVersion, ...], strategy: Strategy) -> Iterator[SimEvent]:
    """Walk ``hops`` with ``strategy`` from the state in ``facts``, yielding every event
    (see the module docstring for the order), each with its own copy of the state."""
    for (kind, hop, node, cluster), live in _walk(facts, hops, strategy):
        yield SimEvent(kind, hop, node, cluster, live.snapshot(), dict(live.kubelets))


def _move_findings(
    move: _Move, live: _Live, opts: PolicyOptions, whole: bool
) -> tuple[str, list[Finding]]:
    """Where an event happens and what it meets. ``whole``: the skew policy over the whole
    state; else only the findings naming the event's own node (the rest of the state is
    that of the previous skew check, whose findings were already met)."""
    kind, hop, node, cluster = move
    if kind == "apply":
        where = f"kubeadm upgrade apply {hop} (cluster at {cluster})"
        return where, kubeadm_apply_findings(cluster, hop, hop, live.kubelets, opts)
    assert node is not None
    if kind == "node":
        where = f"kubeadm upgrade node on {node} (hop {hop})"
        return where, kubeadm_node_findings(cluster, hop, node, opts)
    what = "control plane" if kind == "control-plane" else "kubelet"
    where = f"hop {hop}, after the {what} of {node} moved"
    if whole:
        return where, skew_findings(live.snapshot())
    return where, [f for f in skew_findings(live.of_node(node)) if f.node == node]


def _check_path(
    facts: Facts,
    hops: tuple[KubeVersion, ...],
    strategy: Strategy,
    opts: PolicyOptions,
    known: set[tuple[str, str | None]],
) -> list[Finding]:
    """Findings met along the path, one per (code, node), those in ``known`` (already
    reported from the current state) left out; each message says where it happens.

    Linear in the nodes: the skew policy is checked over the whole state at the first
    skew check and whenever a control plane moved (the kube-apiservers every component
    is measured against); after a kubelet moved, only that node can meet anything new
    (every other node's findings are those of the check before, already in ``seen``)."""
    out: list[Finding] = []
    seen = set(known)
    checked = False
    for move, live in _walk(facts, hops, strategy):
        whole = not checked or move[0] == "control-plane"
        if move[0] in ("control-plane", "kubelet"):
            checked = True
        where, found = _move_findings(move, live, opts, whole)
        for f in found:
            key = (f.code, f.node)
            if key in seen or f.severity == Severity.INFO:
                continue
            seen.add(key)
            out.append(replace(f, message=f"{where}: {f.message}"))
    return out


# --------------------------------------------------------------------------- hops


def _lagging(facts: Facts, first: KubeVersion, force: bool = False) -> list[str]:
    """Nodes too far behind for the first real hop ``first`` (see module docstring). With
    ``force`` a kubelet that only kubeadm's own kubelet rule objects to (kubeadm <= 1.28
    allows one minor, the skew policy three) is not caught up first: the operator passed
    that refusal, and ``kubeadm upgrade apply`` gets ``--force``."""
    state, _ = state_from_facts(facts)
    out: list[str] = []
    for n in facts.nodes:
        why: list[str] = []
        for kind, d in (
            ("kube-apiserver", state.apiservers),
            ("kube-controller-manager", state.controller_managers),
            ("kube-scheduler", state.schedulers),
        ):
            v = d.get(n.name)
            if v is not None and first.minor_diff(v) > 1:
                why.append(f"{kind} {v}")
        k = n.kubelet
        allowed = kubelet_max_lag(k) if k is not None else 0
        if not force and k is not None:
            allowed = min(allowed, kubeadm_kubelet_skew(first))
        if k is not None and first.minor_diff(k) > allowed:
            why.append(f"kubelet {k}")
        if why:
            out.append(f"{n.name} ({', '.join(why)})")
    return out


def _hops(
    facts: Facts, target: KubeVersion, releases: ReleaseData, force: bool = False
) -> tuple[tuple[KubeVersion, ...], list[Finding], bool]:
    cluster = facts.cluster.version
    if target.major != cluster.major:
        return (
            (),
            [
                Finding(
                    MAJOR_VERSION_CHANGE,
                    Severity.BLOCKER,
                    f"target {target} is of another major version than the cluster "
                    f"({cluster}); upgrader plans minor upgrades only",
                )
            ],
            False,
        )
    if target.minor == cluster.minor:
        if target > cluster or any(node_needs_upgrade(n, target) for n in facts.nodes):
            return (target,), [], False
        return (), [], False
    hops: list[KubeVersion] = []
    for minor in range(cluster.minor + 1, target.minor):
        patch = releases.newest_patch((cluster.major, minor))
        if patch is None:
            return (
                (),
                [
                    Finding(
                        NO_RELEASE_DATA,
                        Severity.BLOCKER,
                        f"the release data ({releases.origin}, {releases.generated}) has no "
                        f"{cluster.major}.{minor} series; cannot choose the intermediate hop "
                        f"from {cluster} to {target} (the newest minor it knows is "
                        f"v{releases.newest_minor[0]}.{releases.newest_minor[1]}, "
                        f"= {releases.newest_patch(releases.newest_minor)})",
                        fix="refresh the release data (scripts/refresh_releases.py, then "
                        "--release-data FILE), or upgrade in steps with explicit targets",
                    )
                ],
                False,
            )
        hops.append(patch)
    hops.append(target)
    lagging = _lagging(facts, hops[0], force)
    if not lagging:
        return tuple(hops), [], False
    note = Finding(
        CATCH_UP_HOP,
        Severity.INFO,
        f"{'; '.join(lagging)} too far behind for {hops[0]}: first bringing lagging nodes "
        f"to the cluster version {cluster}",
    )
    return (cluster, *hops), [note], True


# --------------------------------------------------------------------------- plan_path


def _current_findings(
    facts: Facts, current: list[Finding], hops: tuple[KubeVersion, ...]
) -> list[Finding]:
    """The current state's skew findings, as "now: ..." findings. A kubelet newer than a
    kube-apiserver is what the kubeadm upgrade page's order leaves (cp-1 upgraded fully,
    kubelet included, before cp-2): when the path's first hop brings every control plane
    to at least that kubelet's minor before any other node component moves, the plan's
    own control-plane steps resolve it, and it is a warning that says so."""
    out: list[Finding] = []
    first = hops[0] if hops else None
    for f in current:
        message = f"now: {f.message}"
        node = facts.node(f.node) if f.node and facts.has_node(f.node) else None
        kubelet = node.kubelet if node is not None else None
        if (
            f.code == _policy.SKEW_KUBELET_TOO_NEW
            and first is not None
            and kubelet is not None
            and kubelet.minor_diff(first) <= 0
        ):
            lagging = [
                n.name for n in facts.control_planes if control_plane_needs_upgrade(n, first)
            ]
            out.append(
                replace(
                    f,
                    severity=Severity.WARNING,
                    override=None,
                    message=f"{message}; the plan's control-plane steps resolve it: "
                    f"{', '.join(lagging) or 'every control plane'} moved to {first} first, "
                    "before any other node component (a cluster left half-way by the kubeadm "
                    "upgrade procedure)",
                    fix="nothing to do: apply finishes the control plane first",
                )
            )
            continue
        out.append(replace(f, message=message))
    return out


def plan_path(
    facts: Facts,
    target: KubeVersion,
    releases: ReleaseData,
    opts: PolicyOptions,
    strategy: str = "auto",
) -> UpgradePath:
    """The hops from the cluster in ``facts`` to ``target``, the worker strategy, and
    every finding about the target, the current state and the states on the way."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}")
    cluster = facts.cluster.version
    findings: list[Finding] = list(check_target(target, cluster, releases, opts))

    def no_hops(reason: str) -> UpgradePath:
        """A path that goes nowhere (``reason``), with the findings so far."""
        return UpgradePath((), "per-hop", False, reason, tuple(findings), cluster, target)

    if not facts.control_planes:
        findings.append(
            Finding(
                NO_CONTROL_PLANE,
                Severity.BLOCKER,
                "the facts list no control-plane node; kubeadm upgrades start on one",
                fix="add the control-plane nodes to the inventory",
            )
        )
        return no_hops("no control-plane node")
    if target < cluster:
        return no_hops("downgrade refused")

    state, notes = state_from_facts(facts)
    findings.extend(notes)
    current = skew_findings(state)
    known = {(f.code, f.node) for f in current}

    hops, hop_findings, catch_up = _hops(facts, target, releases, opts.force)
    findings.extend(_current_findings(facts, current, hops))
    findings.extend(hop_findings)
    if not hops:
        if not hop_findings:
            findings.append(
                Finding(
                    NOTHING_TO_DO,
                    Severity.INFO,
                    f"the cluster and every node are already at {target}",
                )
            )
        return no_hops("nothing to do")

    minor_hops = sum(1 for h in hops if h.minor_key > cluster.minor_key)
    allowed, reason = _drain_once_allowed(facts, hops, opts, known, minor_hops)
    chosen = _choose(strategy, allowed, reason, minor_hops, findings)
    # The findings of the states the path really passes through (per-hop's when a
    # drain-once request was refused: those are the cluster's own problems).
    walked: Strategy = chosen if allowed else "per-hop"
    findings.extend(_check_path(facts, hops, walked, opts, known))
    return UpgradePath(hops, chosen, allowed, reason, tuple(findings), cluster, target, catch_up)


def _drain_once_allowed(
    facts: Facts,
    hops: tuple[KubeVersion, ...],
    opts: PolicyOptions,
    known: set[tuple[str, str | None]],
    minor_hops: int,
) -> tuple[bool, str]:
    """Whether drain-once may walk ``hops``, and why (not)."""
    if minor_hops < 2:
        return True, "a single hop: every node is drained once either way"
    # Judged without --force: drain-once must not need any kubeadm override.
    strict = replace(opts, force=False)
    per_hop = {(f.code, f.node) for f in _check_path(facts, hops, "per-hop", strict, known)}
    new = [
        f
        for f in _check_path(facts, hops, "drain-once", strict, known)
        if f.severity == Severity.BLOCKER and (f.code, f.node) not in per_hop
    ]
    if new:
        return False, f"drain-once would break a rule: {new[0].message}"
    return True, (
        "workers stay within the skew policy and kubeadm's kubelet rule while the "
        f"control plane walks {minor_hops} hops"
    )


def _choose(
    strategy: str, allowed: bool, reason: str, minor_hops: int, findings: list[Finding]
) -> Strategy:
    """The strategy asked for (auto: drain-once where allowed and useful); a refused
    drain-once request is a blocker in ``findings``."""
    if strategy == "per-hop":
        return "per-hop"
    if strategy == "drain-once":
        if not allowed:
            findings.append(
                Finding(
                    DRAIN_ONCE_NOT_ALLOWED,
                    Severity.BLOCKER,
                    f"--strategy drain-once refused: {reason}",
                    fix="use --strategy per-hop (or auto)",
                )
            )
        return "drain-once"
    return "drain-once" if minor_hops >= 2 and allowed else "per-hop"
