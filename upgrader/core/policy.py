"""Version policy: the skew rules, kubeadm's own refusals and the support window.

Owns the pure checks that turn versions into :class:`~upgrader.core.model.Finding` s:

* :func:`check_target` — the target itself: downgrade, pre-release opt-in, unknown to
  the release data, outside the support window, stale release data.
* :func:`kubeadm_apply_findings` — exactly what ``kubeadm upgrade apply`` refuses
  (``cmd/kubeadm/app/phases/upgrade/policy.go``, ``EnforceVersionPolicies``), so that we
  refuse it first. kubeadm's "unstable version" refusal is reported by
  :func:`check_target` (``PRERELEASE_TARGET``) and not repeated here.
* :func:`kubeadm_node_findings` — what ``kubeadm upgrade node`` refuses.
* :func:`skew_findings` — the Kubernetes version skew policy on one cluster state.

Severity and overrides: a rule nothing can override is a ``blocker`` with
``override=None``. An overridable rule is a ``blocker`` naming its flag in ``override``;
when :class:`PolicyOptions` says the operator gave that flag, the same finding comes back
as a ``warning`` (message ending "(passed by --force)"), so a report still shows what was
overridden. ``Plan.blockers`` also filters by the flags given; both agree.

Choices made where the sources leave room (each code's meaning is in :data:`CODES`):

* A pre-release target turns kubeadm's "too high"/"too low" one-minor-at-a-time refusals
  *and* its "target minor above kubeadm's minor" refusal into ``--force`` ones: that is
  what ``EnforceVersionPolicies`` does (DESIGN lists only the first two).
* ``kubeadm upgrade node`` loads the cluster's ClusterConfiguration and refuses when the
  cluster version is below that kubeadm's minimum control-plane version (kubeadm minor
  - 1), i.e. when the node's kubeadm is more than one minor above the cluster
  (``KUBEADM_NODE_TOO_NEW``, mandatory). It does not refuse an *older* kubeadm; we do
  (``KUBEADM_NODE_TOO_OLD``, ``--force``): an older kubeadm would write configuration for
  a version it does not know.
* kube-controller-manager and kube-scheduler are compared with the kube-apiserver on
  their own node when there is one (kubeadm points them at the local endpoint), else with
  every kube-apiserver; they may be at most one minor behind the newest kube-apiserver.
  Comparing with every kube-apiserver would flag every HA kubeadm upgrade midway.
* kubectl skew is a ``warning`` (``SKEW_KUBECTL``): kubectl is a client, the cluster runs
  without it, and the plan upgrades it with the kubelet.

Must not: do I/O, or import paramiko, kubernetes, typer or rich.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from upgrader.core.model import Facts, Finding, Severity
from upgrader.core.releases import ReleaseData
from upgrader.core.versions import KubeVersion
from upgrader.core.vocab import Override

# --------------------------------------------------------------------------- flags


#: Release data older than this (days) draws a ``RELEASE_DATA_STALE`` warning: a new
#: minor comes out roughly every four months.
STALE_AFTER_DAYS = 120

# --------------------------------------------------------------------------- codes

DOWNGRADE = "DOWNGRADE"
PRERELEASE_TARGET = "PRERELEASE_TARGET"
UNKNOWN_RELEASE = "UNKNOWN_RELEASE"
UNSUPPORTED_TARGET = "UNSUPPORTED_TARGET"
RELEASE_DATA_STALE = "RELEASE_DATA_STALE"

KUBEADM_TARGET_TOO_OLD = "KUBEADM_TARGET_TOO_OLD"
KUBEADM_SKIP_MINOR = "KUBEADM_SKIP_MINOR"
KUBEADM_DOWNGRADE_SKEW = "KUBEADM_DOWNGRADE_SKEW"
KUBEADM_TOO_OLD = "KUBEADM_TOO_OLD"
KUBEADM_UPGRADE_FIRST = "KUBEADM_UPGRADE_FIRST"
KUBEADM_TOO_NEW = "KUBEADM_TOO_NEW"
KUBEADM_KUBELET_TOO_OLD = "KUBEADM_KUBELET_TOO_OLD"
KUBELET_VERSION_UNKNOWN = "KUBELET_VERSION_UNKNOWN"
KUBEADM_NODE_TOO_NEW = "KUBEADM_NODE_TOO_NEW"
KUBEADM_NODE_TOO_OLD = "KUBEADM_NODE_TOO_OLD"

SKEW_APISERVER = "SKEW_APISERVER"
SKEW_KUBELET_TOO_NEW = "SKEW_KUBELET_TOO_NEW"
SKEW_KUBELET_TOO_OLD = "SKEW_KUBELET_TOO_OLD"
SKEW_KUBE_PROXY = "SKEW_KUBE_PROXY"
SKEW_CONTROLLER_MANAGER = "SKEW_CONTROLLER_MANAGER"
SKEW_SCHEDULER = "SKEW_SCHEDULER"
SKEW_KUBECTL = "SKEW_KUBECTL"
CONTROL_PLANE_VERSION_UNKNOWN = "CONTROL_PLANE_VERSION_UNKNOWN"

#: Every code this module emits, with a one-line meaning (for docs and tests).
CODES: Mapping[str, str] = {
    DOWNGRADE: "target is below the cluster version; never overridable",
    PRERELEASE_TARGET: "alpha/beta/rc target without the opt-in flag",
    UNKNOWN_RELEASE: "target is not a release listed in the release data (warning)",
    UNSUPPORTED_TARGET: "target minor outside the support window (blocker with strict)",
    RELEASE_DATA_STALE: "release data older than STALE_AFTER_DAYS (warning)",
    KUBEADM_TARGET_TOO_OLD: "target below kubeadm's minimum control-plane version",
    KUBEADM_SKIP_MINOR: "target minor more than one above the cluster's",
    KUBEADM_DOWNGRADE_SKEW: "target minor more than one below the cluster's",
    KUBEADM_TOO_OLD: "target minor above kubeadm's minor",
    KUBEADM_UPGRADE_FIRST: "target above kubeadm's version within its minor",
    KUBEADM_TOO_NEW: "kubeadm minor above the target's minor",
    KUBEADM_KUBELET_TOO_OLD: "a kubelet too far below the target for kubeadm",
    KUBELET_VERSION_UNKNOWN: "a kubelet whose version is unknown or does not parse",
    KUBEADM_NODE_TOO_NEW: "`kubeadm upgrade node` with a kubeadm too new for the cluster",
    KUBEADM_NODE_TOO_OLD: "`kubeadm upgrade node` with a kubeadm older than the cluster",
    SKEW_APISERVER: "HA kube-apiservers more than one minor apart",
    SKEW_KUBELET_TOO_NEW: "a kubelet newer than a kube-apiserver",
    SKEW_KUBELET_TOO_OLD: "a kubelet more than 3 (2 below 1.25) minors behind",
    SKEW_KUBE_PROXY: "kube-proxy outside its skew (apiserver or kubelet beside it)",
    SKEW_CONTROLLER_MANAGER: "kube-controller-manager newer than, or 2+ behind, apiserver",
    SKEW_SCHEDULER: "kube-scheduler newer than, or 2+ behind, apiserver",
    SKEW_KUBECTL: "kubectl more than one minor from a kube-apiserver (warning)",
    CONTROL_PLANE_VERSION_UNKNOWN: "a control-plane component version assumed (info)",
}


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class PolicyOptions:
    """What the operator allowed. ``today`` drives the support window (pass it
    explicitly in tests; the default reads the clock once, at construction)."""

    force: bool = False
    allow_experimental: bool = False
    allow_release_candidate: bool = False
    allow_unsupported: bool = False
    strict: bool = False  # an unsupported target is a blocker (override --allow-unsupported)
    today: date = field(default_factory=date.today)

    @property
    def overrides(self) -> tuple[str, ...]:
        """The override flags these options stand for (for ``Plan.overrides``)."""
        flags: list[str] = []
        if self.force:
            flags.append(Override.FORCE)
        if self.allow_experimental:
            flags.append(Override.ALLOW_EXPERIMENTAL)
        if self.allow_release_candidate:
            flags.append(Override.ALLOW_RC)
        if self.allow_unsupported:
            flags.append(Override.ALLOW_UNSUPPORTED)
        return tuple(flags)


def _overridable(
    code: str,
    message: str,
    flag: str,
    given: bool,
    node: str | None = None,
    fix: str | None = None,
) -> Finding:
    if given:
        return Finding(code, Severity.WARNING, f"{message} (passed by {flag})", node, fix, flag)
    return Finding(code, Severity.BLOCKER, message, node, fix, flag)


def _mandatory(code: str, message: str, node: str | None = None, fix: str | None = None) -> Finding:
    return Finding(code, Severity.BLOCKER, message, node, fix, None)


def _m(v: KubeVersion) -> str:
    return v.minor_str


def _minors(n: int) -> str:
    return f"{n} minor" + ("" if n == 1 else "s")


# --------------------------------------------------------------------------- target


def check_target(
    target: KubeVersion,
    current_cluster: KubeVersion,
    releases: ReleaseData,
    opts: PolicyOptions,
) -> list[Finding]:
    """Checks on the target version alone (before any node is looked at)."""
    out: list[Finding] = []
    if target < current_cluster:
        out.append(
            _mandatory(
                DOWNGRADE,
                f"target {target} is below the cluster version {current_cluster}; "
                "upgrader does not downgrade",
                fix=f"choose a target of {current_cluster} or newer",
            )
        )

    out += _prerelease(target, opts)
    out += _unknown_release(target, releases)
    out += _outside_support(target, releases, opts)
    age = (opts.today - releases.generated).days
    if age > STALE_AFTER_DAYS:
        out.append(
            Finding(
                RELEASE_DATA_STALE,
                Severity.WARNING,
                f"release data is {age} days old (generated {releases.generated}); newer "
                "patches and minors are unknown to it",
                fix="refresh it: scripts/refresh_releases.py, then --release-data FILE",
            )
        )
    return out


def _prerelease(target: KubeVersion, opts: PolicyOptions) -> list[Finding]:
    if not target.is_prerelease:
        return []
    if target.pre == "rc":
        given, flag = opts.allow_experimental or opts.allow_release_candidate, Override.ALLOW_RC
    else:
        given, flag = opts.allow_experimental, Override.ALLOW_EXPERIMENTAL
    return [
        _overridable(
            PRERELEASE_TARGET,
            f"target {target} is an unstable ({target.pre}) version; kubeadm refuses it "
            "without the --allow-*-upgrades flags",
            flag,
            given,
            fix=f"choose a final release, or pass {flag} to accept it",
        )
    ]


def _unknown_release(target: KubeVersion, releases: ReleaseData) -> list[Finding]:
    if releases.knows(target):
        return []
    rel = releases.get(target)
    newest = releases.newest_minor
    if target.minor_key > newest:
        msg = (
            f"target {target} is newer than the release data knows (newest minor "
            f"{newest[0]}.{newest[1]}, data of {releases.generated})"
        )
    elif target.is_prerelease:
        msg = f"target {target} is a pre-release; the release data lists final releases only"
    elif rel is None:
        msg = f"the release data has no {_m(target)} series; {target} cannot be checked"
    else:
        msg = (
            f"target {target} is not a {_m(target)} release the data knows "
            f"(newest known: {rel.latest})"
        )
    return [
        Finding(
            UNKNOWN_RELEASE,
            Severity.WARNING,
            msg,
            fix="check the version, or refresh the release data "
            "(scripts/refresh_releases.py, then --release-data FILE)",
        )
    ]


def _outside_support(
    target: KubeVersion, releases: ReleaseData, opts: PolicyOptions
) -> list[Finding]:
    """The support window. A minor newer than the data, or a pre-release of a minor not
    yet released, is not judged (the unknown-release warning covers the first; the
    pre-release opt-in the second)."""
    rel = releases.get(target)
    judge = target.minor_key <= releases.newest_minor and not (
        target.is_prerelease and (rel is None or rel.released > opts.today)
    )
    if not judge or releases.is_supported(target, opts.today):
        return []
    window = ", ".join(f"{a}.{b}" for a, b in releases.supported_minors(opts.today))
    why = f" (end of life {rel.eol})" if rel is not None and rel.eol < opts.today else ""
    msg = (
        f"target {target}: {_m(target)} is outside the support window on {opts.today}"
        f"{why}; supported: {window or 'none per the release data'}"
    )
    fix = "choose a supported minor, or refresh the release data if it is stale"
    if opts.strict:
        return [
            _overridable(
                UNSUPPORTED_TARGET, msg, Override.ALLOW_UNSUPPORTED, opts.allow_unsupported, fix=fix
            )
        ]
    return [
        Finding(UNSUPPORTED_TARGET, Severity.WARNING, msg, None, fix, Override.ALLOW_UNSUPPORTED)
    ]


# --------------------------------------------------------------------------- kubeadm


def kubeadm_min_control_plane(kubeadm: KubeVersion) -> KubeVersion:
    """kubeadm's ``MinimumControlPlaneVersion``: the ``.0`` of the minor below its own."""
    return KubeVersion(kubeadm.major, max(kubeadm.minor - 1, 0), 0)


def kubeadm_kubelet_skew(kubeadm: KubeVersion) -> int:
    """How many minors below the target kubeadm lets a kubelet be: 3 from kubeadm 1.29
    on, 1 for kubeadm 1.28 and older (``MaximumAllowedMinorVersionKubeletSkew``)."""
    return 1 if kubeadm.minor_key <= (1, 28) else 3


def kubeadm_apply_findings(
    cluster: KubeVersion,
    target: KubeVersion,
    kubeadm: KubeVersion,
    kubelets: Mapping[str, KubeVersion | None],
    opts: PolicyOptions,
) -> list[Finding]:
    """What ``kubeadm upgrade apply <target>`` (run by ``kubeadm``, on a cluster at
    ``cluster``, with these node kubelets; None = unknown/unparsable) refuses."""
    out: list[Finding] = []
    pre = target.is_prerelease
    force = opts.force

    def one_at_a_time(code: str, message: str) -> None:
        fix = "upgrade one minor at a time (upgrader plans the hops for you)"
        if pre:
            out.append(_overridable(code, message, Override.FORCE, force, fix=fix))
        else:
            out.append(_mandatory(code, message, fix=fix))

    min_cp = kubeadm_min_control_plane(kubeadm)
    if target < min_cp:
        out.append(
            _mandatory(
                KUBEADM_TARGET_TOO_OLD,
                f"target {target} is below kubeadm {kubeadm}'s minimum supported "
                f"control-plane version {min_cp}",
                fix=f"use a kubeadm of the target's minor ({_m(target)})",
            )
        )
    skew = target.minor_diff(cluster)
    if skew > 1:
        one_at_a_time(
            KUBEADM_SKIP_MINOR,
            f"target {target} is too high for a cluster at {cluster}; kubeadm can upgrade "
            "only 1 minor version at a time",
        )
    if skew < -1:
        one_at_a_time(
            KUBEADM_DOWNGRADE_SKEW,
            f"target {target} is too low for a cluster at {cluster}; kubeadm can downgrade "
            "only 1 minor version at a time",
        )
    out += _kubeadm_version(target, kubeadm, force)
    out += _kubelets_for_kubeadm(target, kubeadm, kubelets, force)
    return out


def _kubeadm_version(target: KubeVersion, kubeadm: KubeVersion, force: bool) -> list[Finding]:
    """kubeadm's refusals of a target outside its own minor (or above its version)."""
    out: list[Finding] = []
    if kubeadm < target:
        if target.minor_diff(kubeadm) > 0:
            msg = (
                f"target {target} is at least one minor release higher than kubeadm "
                f"{kubeadm} ({_m(target)} > {_m(kubeadm)}); such an upgrade is not supported"
            )
            fix = f"install kubeadm {target} first"
            if target.is_prerelease:
                out.append(_overridable(KUBEADM_TOO_OLD, msg, Override.FORCE, force, fix=fix))
            else:
                out.append(_mandatory(KUBEADM_TOO_OLD, msg, fix=fix))
        else:
            out.append(
                _overridable(
                    KUBEADM_UPGRADE_FIRST,
                    f"target {target} is higher than the kubeadm version {kubeadm}; "
                    "upgrade kubeadm first",
                    Override.FORCE,
                    force,
                    fix=f"install kubeadm {target} first",
                )
            )
    if kubeadm.minor_diff(target) > 0:
        out.append(
            _overridable(
                KUBEADM_TOO_NEW,
                f"kubeadm {kubeadm} can only be used to upgrade to Kubernetes {_m(kubeadm)}, "
                f"not {target}",
                Override.FORCE,
                force,
                fix=f"use a kubeadm of the target's minor ({_m(target)})",
            )
        )
    return out


def _kubelets_for_kubeadm(
    target: KubeVersion,
    kubeadm: KubeVersion,
    kubelets: Mapping[str, KubeVersion | None],
    force: bool,
) -> list[Finding]:
    """kubeadm's refusals of kubelets it cannot check or that trail the target too far."""
    out: list[Finding] = []
    allowed = kubeadm_kubelet_skew(kubeadm)
    for node, kv in kubelets.items():
        if kv is None:
            out.append(
                _overridable(
                    KUBELET_VERSION_UNKNOWN,
                    f"kubelet version of node {node} is unknown or does not parse; kubeadm "
                    "cannot check it",
                    Override.FORCE,
                    force,
                    node=node,
                    fix="make the node report its kubelet version (is it registered?)",
                )
            )
        elif target.minor_diff(kv) > allowed:
            out.append(
                _overridable(
                    KUBEADM_KUBELET_TOO_OLD,
                    f"kubelet {kv} on node {node} is {_minors(target.minor_diff(kv))} below "
                    f"the target {target}; kubeadm {kubeadm} allows at most {allowed}",
                    Override.FORCE,
                    force,
                    node=node,
                    fix=f"upgrade the kubelet on {node} first",
                )
            )
    return out


def kubeadm_node_findings(
    cluster: KubeVersion,
    node_kubeadm: KubeVersion,
    node: str,
    opts: PolicyOptions | None = None,
) -> list[Finding]:
    """What ``kubeadm upgrade node`` (run by ``node_kubeadm`` on ``node``, with the
    cluster's configuration at ``cluster``) refuses, plus our refusal of an older kubeadm.
    The node's kubeadm must be at the cluster's minor or one above."""
    force = opts.force if opts is not None else False
    out: list[Finding] = []
    min_cp = kubeadm_min_control_plane(node_kubeadm)
    if cluster < min_cp:
        out.append(
            _mandatory(
                KUBEADM_NODE_TOO_NEW,
                f"kubeadm {node_kubeadm} on node {node} only supports clusters at {min_cp} "
                f"or newer; the cluster is at {cluster}",
                node=node,
                fix=f"install kubeadm of the cluster's minor ({_m(cluster)}) on {node}",
            )
        )
    if node_kubeadm.minor_diff(cluster) < 0:
        out.append(
            _overridable(
                KUBEADM_NODE_TOO_OLD,
                f"kubeadm {node_kubeadm} on node {node} is older than the cluster "
                f"({cluster}); it would write configuration for a version it does not know",
                Override.FORCE,
                force,
                node=node,
                fix=f"install kubeadm {cluster} on {node} first",
            )
        )
    return out


# --------------------------------------------------------------------------- skew


@dataclass(frozen=True)
class ClusterState:
    """Versions of every component, keyed by node name (``kubectl`` by where it runs).
    A component whose version is unknown is simply absent."""

    apiservers: Mapping[str, KubeVersion]
    controller_managers: Mapping[str, KubeVersion] = field(default_factory=dict)
    schedulers: Mapping[str, KubeVersion] = field(default_factory=dict)
    kubelets: Mapping[str, KubeVersion] = field(default_factory=dict)
    kube_proxies: Mapping[str, KubeVersion] = field(default_factory=dict)
    kubectl: Mapping[str, KubeVersion] = field(default_factory=dict)


def kubelet_max_lag(kubelet: KubeVersion) -> int:
    """Minors a kubelet (or kube-proxy) may trail the newest kube-apiserver: 3, or 2 for
    versions older than 1.25."""
    return 2 if kubelet.minor_key < (1, 25) else 3


def _extremes(
    versions: Mapping[str, KubeVersion],
) -> tuple[tuple[str, KubeVersion], tuple[str, KubeVersion]]:
    items = list(versions.items())
    oldest = min(items, key=lambda kv: kv[1])
    newest = max(items, key=lambda kv: kv[1])
    return oldest, newest


@dataclass(frozen=True)
class _ApiRange:
    """The oldest and the newest kube-apiserver of a state, with their nodes."""

    old_node: str
    old: KubeVersion
    new_node: str
    new: KubeVersion


def skew_findings(state: ClusterState) -> list[Finding]:
    """Every violation of the version skew policy in ``state``, one finding per
    offending component, naming its node and both versions."""
    if not state.apiservers:
        return []
    (old_node, old_api), (new_node, new_api) = _extremes(state.apiservers)
    api = _ApiRange(old_node, old_api, new_node, new_api)
    out: list[Finding] = []
    for node, v in state.apiservers.items():
        lag = new_api.minor_diff(v)
        if lag > 1:
            out.append(
                _mandatory(
                    SKEW_APISERVER,
                    f"kube-apiserver {v} on {node} is {_minors(lag)} behind kube-apiserver "
                    f"{new_api} on {new_node}; HA kube-apiservers must be within one minor",
                    node=node,
                    fix=f"upgrade the control plane of {node} first",
                )
            )
    for node, v in state.kubelets.items():
        out += _node_component(api, "kubelet", SKEW_KUBELET_TOO_NEW, node, v)
    for node, v in state.kube_proxies.items():
        out += _node_component(api, "kube-proxy", SKEW_KUBE_PROXY, node, v)
        kv = state.kubelets.get(node)
        if kv is not None:
            gap, allowed = abs(v.minor_diff(kv)), kubelet_max_lag(v)
            if gap > allowed:
                out.append(
                    _mandatory(
                        SKEW_KUBE_PROXY,
                        f"kube-proxy {v} on {node} is {_minors(gap)} from the kubelet {kv} "
                        f"beside it; at most {allowed} allowed",
                        node=node,
                    )
                )
    for kind, code, versions in (
        ("kube-controller-manager", SKEW_CONTROLLER_MANAGER, state.controller_managers),
        ("kube-scheduler", SKEW_SCHEDULER, state.schedulers),
    ):
        out += _controller(api, state.apiservers, kind, code, versions)
    out += _kubectl(api, state.kubectl)
    return out


def _node_component(
    api: _ApiRange, kind: str, code: str, node: str, v: KubeVersion
) -> list[Finding]:
    """A kubelet or kube-proxy: never newer than any kube-apiserver, and at most
    :func:`kubelet_max_lag` minors behind the newest."""
    out: list[Finding] = []
    if v.minor_diff(api.old) > 0:
        out.append(
            _mandatory(
                code,
                f"{kind} {v} on {node} is newer than kube-apiserver {api.old} on "
                f"{api.old_node}; a {kind} must never be newer than any kube-apiserver",
                node=node,
                fix="upgrade every control-plane node before any node component",
            )
        )
    lag, allowed = api.new.minor_diff(v), kubelet_max_lag(v)
    if lag > allowed:
        out.append(
            _mandatory(
                code if code == SKEW_KUBE_PROXY else SKEW_KUBELET_TOO_OLD,
                f"{kind} {v} on {node} is {_minors(lag)} behind kube-apiserver "
                f"{api.new} on {api.new_node}; at most {allowed} allowed",
                node=node,
                fix=f"upgrade the {kind} on {node} before the control plane moves on",
            )
        )
    return out


def _controller(
    api: _ApiRange,
    apiservers: Mapping[str, KubeVersion],
    kind: str,
    code: str,
    versions: Mapping[str, KubeVersion],
) -> list[Finding]:
    """kube-controller-manager or kube-scheduler: not newer than the kube-apiserver beside
    it (else the oldest), at most one minor behind the newest."""
    out: list[Finding] = []
    for node, v in versions.items():
        local = apiservers.get(node)
        ref_node, ref = (node, local) if local is not None else (api.old_node, api.old)
        if v.minor_diff(ref) > 0:
            out.append(
                _mandatory(
                    code,
                    f"{kind} {v} on {node} is newer than kube-apiserver {ref} on {ref_node}",
                    node=node,
                )
            )
        lag = api.new.minor_diff(v)
        if lag > 1:
            out.append(
                _mandatory(
                    code,
                    f"{kind} {v} on {node} is {_minors(lag)} behind kube-apiserver "
                    f"{api.new} on {api.new_node}; at most 1 allowed",
                    node=node,
                    fix=f"upgrade the control plane of {node}",
                )
            )
    return out


def _kubectl(api: _ApiRange, kubectl: Mapping[str, KubeVersion]) -> list[Finding]:
    """kubectl within one minor of the newest and the oldest kube-apiserver (a warning)."""
    out: list[Finding] = []
    for where, v in kubectl.items():
        for api_node, ref in ((api.new_node, api.new), (api.old_node, api.old)):
            gap = v.minor_diff(ref)
            if abs(gap) > 1:
                side = "newer" if gap > 0 else "older"
                out.append(
                    Finding(
                        SKEW_KUBECTL,
                        Severity.WARNING,
                        f"kubectl {v} on {where} is {_minors(abs(gap))} {side} than "
                        f"kube-apiserver {ref} on {api_node}; kubectl is supported within one "
                        "minor",
                        where,
                        f"install kubectl {_m(ref)} on {where}",
                    )
                )
                break
    return out


def state_from_facts(facts: Facts) -> tuple[ClusterState, list[Finding]]:
    """The current :class:`ClusterState` of ``facts``. A control-plane node whose
    component versions are unknown is assumed at the cluster version (an ``info``
    finding says so); unknown kubelets/kubectls are left out."""
    notes: list[Finding] = []
    apis: dict[str, KubeVersion] = {}
    cms: dict[str, KubeVersion] = {}
    scheds: dict[str, KubeVersion] = {}
    cluster = facts.cluster.version
    for n in facts.control_planes:
        cp = n.control_plane
        known = {
            "kube-apiserver": cp.apiserver if cp else None,
            "kube-controller-manager": cp.controller_manager if cp else None,
            "kube-scheduler": cp.scheduler if cp else None,
        }
        missing = [k for k, v in known.items() if v is None]
        if missing:
            notes.append(
                Finding(
                    CONTROL_PLANE_VERSION_UNKNOWN,
                    Severity.INFO,
                    f"{', '.join(missing)} version on {n.name} unknown (no mirror pod seen); "
                    f"assumed at the cluster version {cluster}",
                    n.name,
                )
            )
        apis[n.name] = known["kube-apiserver"] or cluster
        cms[n.name] = known["kube-controller-manager"] or cluster
        scheds[n.name] = known["kube-scheduler"] or cluster
    state = ClusterState(
        apiservers=apis,
        controller_managers=cms,
        schedulers=scheds,
        kubelets={n.name: n.kubelet for n in facts.nodes if n.kubelet is not None},
        kubectl={n.name: n.kubectl for n in facts.nodes if n.kubectl is not None},
    )
    return state, notes
