"""The planner: Facts + target + Playbook + options -> Plan (the ordered steps that run).

Owns the order of the visits (one node, one phase, one hop each), which visits are
skipped because the facts say the node is already there, the per-node rendering context
(package manager, known exact package version, repository minor as it moves), and the
planner's own findings. The hops, the worker strategy and the policy findings come from
:func:`upgrader.core.path.plan_path`; the steps of a visit from the playbook.

Order (mirrors :func:`upgrader.core.path.simulate`, which the policy checks): for each
hop, the first control-plane node (facts order) runs ``first-control-plane`` when the hop
is above the cluster version, else (a catch-up hop, or an interrupted upgrade)
``control-plane`` when it lags; the other control-plane nodes run ``control-plane``; then
each control-plane node its ``control-plane-kubelet``; then, under ``per-hop`` (and in
catch-up hops), each worker its ``worker`` visit. Before all of them (unless
``PlanOptions.prestage`` is off or the playbook has no ``prestage`` steps), one ``prestage``
visit per node, at the hop of its first visit (the executor runs them all at once): the
downloads, so that none happens while a node is drained. The first ``etcd-snapshot`` step
of the walk is kept (the one before the first ``kubeadm upgrade apply``), the others and,
with ``PlanOptions.etcd_snapshot`` off, that one too are left out. Under ``drain-once``
each worker gets one ``worker`` visit after the last hop, at the target. A visit is left
out when the node is already at the hop (:func:`~upgrader.core.path.node_needs_upgrade`
and friends, applied to the node as the earlier visits leave it).

Finding codes added here (stable; the README lists them):
``NODE_UNREACHABLE`` (blocker) a node that needs work was not reachable when facts were
gathered; ``PACKAGE_MANAGER_UNKNOWN`` (blocker) no or an unsupported package manager for a
node that needs shell steps; ``PACKAGE_MANAGER_MISMATCH`` (blocker) the package manager
does not fit the node's OS family; ``PLAYBOOK_NO_COMMAND`` (blocker) a shell step has no
command for the node's package manager; ``CONTROL_PLANE_NOT_AT_TARGET`` (blocker)
``--nodes`` was given while the control plane still needs work; ``PACKAGE_VERSION_NOT_LISTED``
(warning) the node's repository listing lacks the hop's version; ``CHECKSUMS_UNAVAILABLE``
(warning) no release checksums are configured, so the playbook's ``when: {checksums: true}``
steps (``verify-binaries``) are left out; ``CHECKSUMS_UNREADABLE`` (blocker) checksums are
configured but those of a hop could not be read; ``ETCD_SNAPSHOT_UNAVAILABLE`` (blocker) the
kept etcd snapshot cannot be taken (external etcd, no etcd static pod, no crictl: see
:func:`upgrader.core.etcd.snapshot_blockers`), passed by leaving the snapshot out with
``--skip-etcd-snapshot``; ``PACKAGE_DEPENDENCY_HELD`` (info) cri-tools or
kubernetes-cni is held on an apt node: the package steps release and re-hold
it (``{held_deps}``) so apt can upgrade it with the kube package that depends on it;
``KUBEADM_CONFIG_UNSUPPORTED`` (blocker) ``--kubeadm-config`` (an UpgradeConfiguration)
is given for a hop below 1.31, whose kubeadm has no such kind, or a hop needs an override
flag (``--force``...) kubeadm refuses beside ``--config`` and the file's ``apply:`` does
not set it (when it does, the flag is left out).
Pass-through (``PlanOptions.kubeadm``, :mod:`upgrader.core.kubeadm_passthrough`): on
the control-plane visits (``first-control-plane``, ``control-plane``) its flags go into
``{kubeadm_flags}``/``{kubeadm_plan_flags}`` and, when it carries files, a
``kubeadm-files`` step that copies them comes before the first ``kubeadm upgrade`` step.
Workers (:mod:`upgrader.core.workers`): ``PlanOptions.selector`` (a label selector on the
facts' Node labels) and ``nodes`` choose them (both: the intersection; the control plane
is planned as in a whole run, except that ``nodes`` drops its visits and blocks while it
lags), ``group_by``/``order_by``/``max_unavailable_per_group`` order them in rounds of
each group; the plan's ``selection`` records the choice and the groups it visits.
For a node the facts mark unreached, the findings that only say one of its facts is missing
(:data:`MISSING_FACT_CODES`) are left out: NODE_UNREACHABLE already says why.

Must not: do I/O, or import paramiko, kubernetes, typer or rich.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from upgrader.core import etcd as etcd_mod
from upgrader.core import path as path_mod
from upgrader.core.checksums import ReleaseChecksums
from upgrader.core.fields import built_from
from upgrader.core.kubeadm_passthrough import (
    CONFIG_FIELD_OF_FLAG,
    UPGRADE_CONFIG_MINOR,
    KubeadmPassthrough,
    apply_settings,
)
from upgrader.core.kubeadm_passthrough import (
    STEP_NAME as KUBEADM_FILES_STEP,
)
from upgrader.core.model import (
    ControlPlaneVersions,
    Facts,
    Finding,
    NodeFacts,
    Plan,
    PlanEntry,
    Severity,
    Step,
)
from upgrader.core.playbook import (
    DEFAULT_IMAGE_REPOSITORY,
    DEPENDENCY_PACKAGES,
    PACKAGE_MANAGERS,
    Playbook,
    RepoConfig,
    StepContext,
    TemplateValue,
    expand_step,
    known_package_version,
    step_values,
)
from upgrader.core.policy import (
    CONTROL_PLANE_VERSION_UNKNOWN,
    KUBELET_VERSION_UNKNOWN,
    PolicyOptions,
    kubeadm_apply_findings,
)
from upgrader.core.releases import ReleaseData
from upgrader.core.settings import SettingHints
from upgrader.core.versions import KubeVersion
from upgrader.core.vocab import Override, PackageManager, Phase, StepKind
from upgrader.core.workers import WorkerSelection, check_node_names, order_workers
from upgrader.errors import ConfigError

__all__ = [
    "CHECKSUMS_UNAVAILABLE",
    "CHECKSUMS_UNREADABLE",
    "CONTROL_PLANE_NOT_AT_TARGET",
    "IMAGE_REPOSITORY_MISMATCH",
    "KUBEADM_CONFIG_UNSUPPORTED",
    "NODE_UNREACHABLE",
    "PACKAGE_DEPENDENCY_HELD",
    "PACKAGE_MANAGER_MISMATCH",
    "PACKAGE_MANAGER_UNKNOWN",
    "PACKAGE_VERSION_NOT_LISTED",
    "PLAYBOOK_NO_COMMAND",
    "PlanOptions",
    "RepoConfig",
    "build_plan",
    "package_manager_for",
    "without_missing_fact_findings",
]

NODE_UNREACHABLE = "NODE_UNREACHABLE"
PACKAGE_MANAGER_UNKNOWN = "PACKAGE_MANAGER_UNKNOWN"
PACKAGE_MANAGER_MISMATCH = "PACKAGE_MANAGER_MISMATCH"
PLAYBOOK_NO_COMMAND = "PLAYBOOK_NO_COMMAND"
CONTROL_PLANE_NOT_AT_TARGET = "CONTROL_PLANE_NOT_AT_TARGET"
PACKAGE_VERSION_NOT_LISTED = "PACKAGE_VERSION_NOT_LISTED"
CHECKSUMS_UNAVAILABLE = "CHECKSUMS_UNAVAILABLE"
CHECKSUMS_UNREADABLE = "CHECKSUMS_UNREADABLE"
PACKAGE_DEPENDENCY_HELD = "PACKAGE_DEPENDENCY_HELD"
KUBEADM_CONFIG_UNSUPPORTED = "KUBEADM_CONFIG_UNSUPPORTED"
IMAGE_REPOSITORY_MISMATCH = "IMAGE_REPOSITORY_MISMATCH"
_KUBE_PACKAGES = ("kubeadm", "kubelet", "kubectl")

_PM_FOR_OS = {"debian": "apt", "rhel": "dnf"}
_STRATEGIES = ("auto", "per-hop", "drain-once")


@dataclass(frozen=True)
class PlanOptions:
    """How to plan. ``overrides`` are the override flags the operator gave (``--force``
    ...); ``nodes`` limits the run to some workers; ``package_manager_by_node`` comes from
    the inventory (facts win when they know). ``max_unavailable`` is carried for the
    executor (how many workers it may take down at once); the plan order is the same.
    ``checksums``: the release checksums read for the hops (by ``v1.28.4``), or ``None``
    when the inventory configures no source. ``settings``: how fix hints name an
    inventory setting (the form of the inventory the user gave: native or Kubespray)."""

    policy: PolicyOptions
    strategy: str = "auto"
    repository: RepoConfig = field(default_factory=RepoConfig)
    package_manager_by_node: Mapping[str, str] = field(default_factory=dict)
    nodes: tuple[str, ...] | None = None
    overrides: tuple[str, ...] = ()
    max_unavailable: int = 1
    checksums: Mapping[str, ReleaseChecksums] | None = None
    etcd_snapshot: bool = True  # keep the first etcd-snapshot step (--skip-etcd-snapshot: no)
    prestage: bool = False  # a prestage visit per node first (apply and plan: on by default)
    settings: SettingHints = field(default_factory=SettingHints)
    kubeadm: KubeadmPassthrough = field(default_factory=KubeadmPassthrough)
    # --selector / --group-by / --order-by / --max-unavailable-per-group (see workers.py)
    selector: str | None = None
    group_by: str | None = None
    order_by: str | None = None
    max_unavailable_per_group: int = 1

    @property
    def selection(self) -> WorkerSelection:
        return built_from(WorkerSelection, self, per_group=self.max_unavailable_per_group)


def package_manager_for(node: NodeFacts, by_node: Mapping[str, str]) -> tuple[str | None, str]:
    """The node's package manager and where it came from: the facts, else the inventory,
    else the OS family (debian -> apt, rhel -> dnf); ``(None, "")`` when nothing says."""
    if node.package_manager:
        return node.package_manager, "facts"
    if by_node.get(node.name):
        return by_node[node.name], "inventory"
    if node.os_family in _PM_FOR_OS:
        return _PM_FOR_OS[node.os_family], "os_family"
    return None, ""


def _validate(facts: Facts, opts: PlanOptions) -> None:
    if opts.strategy not in _STRATEGIES:
        raise ConfigError(f"--strategy: {opts.strategy!r} is not one of {', '.join(_STRATEGIES)}")
    if opts.max_unavailable < 1:
        raise ConfigError(f"--max-unavailable: must be at least 1, not {opts.max_unavailable}")
    opts.selection.validate()
    if opts.group_by and opts.max_unavailable > 1:
        raise ConfigError(
            "--group-by: not with --max-unavailable (use --max-unavailable-per-group: "
            "at most that many nodes of each group down at once)"
        )
    if opts.max_unavailable_per_group != 1 and not opts.group_by:
        raise ConfigError("--max-unavailable-per-group: needs --group-by LABEL")
    if opts.nodes is not None:
        roles = {n.name: n.is_control_plane for n in facts.nodes}
        check_node_names(opts.nodes, roles, "the facts")


def _versionlocked(node: NodeFacts) -> frozenset[str]:
    """The kube packages ``dnf versionlock list`` named on the node (facts ``versionlocked``)."""
    raw = node.extra.get("versionlocked")
    return frozenset(str(x) for x in raw) if isinstance(raw, list | tuple) else frozenset()


def _minor_key(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    parts = text.strip().lstrip("v").split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        return None
    return int(parts[0]), int(parts[1])


def _raised(v: KubeVersion | None, hop: KubeVersion) -> KubeVersion:
    return hop if v is None or v < hop else v


class _Planner:
    def __init__(
        self,
        facts: Facts,
        playbook: Playbook,
        opts: PlanOptions,
        strategy: str,
        workers: list[str] | None = None,
    ):
        self.facts = facts
        # the workers to visit, in order (default: every worker, facts order)
        self.workers = workers if workers is not None else [n.name for n in facts.workers]
        self.playbook = playbook
        self.opts = opts
        self.strategy = strategy
        self.sim: dict[str, NodeFacts] = {n.name: n for n in facts.nodes}
        self.repo_minor = {n.name: _minor_key(n.repo_minor) for n in facts.nodes}
        self.cluster = facts.cluster.version
        self.entries: list[PlanEntry] = []
        self.snapshot_planned = False
        self.findings: list[Finding] = []
        # (code, node, key) already reported; the gatherer's per-node findings count.
        self._reported: set[tuple[str, str | None, str]] = {
            (f.code, f.node, "") for f in facts.findings
        }

    # ---- findings -------------------------------------------------------------------
    def _where(self, key: str) -> str:
        """Where the user sets ``key`` in the inventory they gave (for fix hints)."""
        return self.opts.settings.where(key)

    def _add(self, finding: Finding, key: str = "") -> None:
        k = (finding.code, finding.node, key)
        if k not in self._reported:
            self._reported.add(k)
            self.findings.append(finding)

    def _package_manager(self, node: NodeFacts) -> str | None:
        pm, source = package_manager_for(node, self.opts.package_manager_by_node)
        if pm is None:
            self._add(
                Finding(
                    PACKAGE_MANAGER_UNKNOWN,
                    Severity.BLOCKER,
                    f"no package manager known for {node.name} (facts have none and no "
                    "os_family to derive it from)",
                    node=node.name,
                    fix=f"set {self._where('nodes[].package_manager')} (apt, dnf or yum)",
                )
            )
            return None
        if pm not in PACKAGE_MANAGERS:
            self._add(
                Finding(
                    PACKAGE_MANAGER_UNKNOWN,
                    Severity.BLOCKER,
                    f"package manager {pm!r} of {node.name} (from the {source}) is not "
                    f"supported (supported: {', '.join(PACKAGE_MANAGERS)})",
                    node=node.name,
                    fix=f"set {self._where('nodes[].package_manager')} to apt, dnf or yum",
                )
            )
            return None
        family = node.os_family
        if family in _PM_FOR_OS and PackageManager(pm).os_family != family:
            self._add(
                Finding(
                    PACKAGE_MANAGER_MISMATCH,
                    Severity.BLOCKER,
                    f"package manager {pm} of {node.name} (from the {source}) does not fit "
                    f"its OS family {family}",
                    node=node.name,
                    fix=f"set {self._where('nodes[].package_manager')} to {_PM_FOR_OS[family]}",
                )
            )
        return pm

    # ---- visits ---------------------------------------------------------------------
    def visit(self, name: str, phase: str, hop: KubeVersion) -> None:
        steps = self._steps(name, phase, hop, self.repo_minor[name])
        self.entries.append(PlanEntry(name, self.sim[name].role, phase, str(hop), tuple(steps)))
        self._moved(name, phase, hop)

    def prestage(self, entries: list[PlanEntry]) -> list[PlanEntry]:
        """One ``prestage`` visit per node of ``entries``, at the hop of its first visit,
        from the facts as gathered (the repository the node points at now)."""
        out: list[PlanEntry] = []
        staged: set[str] = set()  # the nodes of ``out``
        for name, hop in dict.fromkeys((e.node, e.hop) for e in entries):
            if name in staged:
                continue
            v = KubeVersion.parse(hop)
            original = self.facts.node(name)
            steps = self._steps(name, Phase.PRESTAGE, v, _minor_key(original.repo_minor))
            if steps:
                out.append(PlanEntry(name, original.role, Phase.PRESTAGE, hop, tuple(steps)))
                staged.add(name)
        return out

    def _steps(
        self, name: str, phase: str, hop: KubeVersion, repo_minor: tuple[int, int] | None
    ) -> list[Step]:
        original = self.facts.node(name)
        pm = self._package_manager(self.sim[name])
        exact = known_package_version(
            list(original.repo_versions)
            + [p.version for n, p in original.packages.items() if n in _KUBE_PACKAGES],
            hop,
        )
        held_deps = self._held_dependencies(original, pm)
        self._check_listing(original, hop, exact)
        cp_visit = phase in (Phase.FIRST_CONTROL_PLANE, Phase.CONTROL_PLANE)
        if cp_visit:
            self._check_kubeadm_config(hop)
        passthrough = self.opts.kubeadm
        overrides = self._kubeadm_flags(hop) if phase == Phase.FIRST_CONTROL_PLANE else ()
        if overrides and passthrough.config is not None:
            overrides = self._overrides_in_config(overrides, passthrough, hop)
        sums = self._release_checksums(hop)
        locked = _versionlocked(original)
        ctx = StepContext(
            hop=hop,
            node=name,
            role=self.sim[name].role,
            cluster=self.facts.cluster.name,
            package_manager=pm,
            repo=self.opts.repository,
            pkg_version=exact,
            versionlocked=tuple(p for p in ("kubeadm", "kubelet", "kubectl") if p in locked),
            kubeadm_flags=overrides,
            kubeadm_passthrough=passthrough.upgrade_flags() if cp_visit else (),
            kubeadm_plan_passthrough=passthrough.plan_flags() if cp_visit else (),
            image_repository=self.facts.cluster.image_repository,
            held_deps=held_deps,
            checksums=sums.digests if sums is not None else {},
        )
        steps = self._expand(ctx, phase, repo_minor, cp_visit, sums is not None)
        if not original.reachable:
            self._add(
                Finding(
                    NODE_UNREACHABLE,
                    Severity.BLOCKER,
                    f"{name} was not reachable when the facts were gathered; its state is unknown",
                    node=name,
                    fix="make the node reachable over SSH, then plan again",
                )
            )
        return steps

    def _held_dependencies(self, original: NodeFacts, pm: str | None) -> tuple[str, ...]:
        """The dependency packages apt holds on the node (the package steps release and
        hold them again), said once as information."""
        held_deps = tuple(
            d for d in DEPENDENCY_PACKAGES if (p := original.packages.get(d)) and p.held
        )
        if held_deps and pm == "apt":
            them = "it" if len(held_deps) == 1 else "them"
            self._add(
                Finding(
                    PACKAGE_DEPENDENCY_HELD,
                    Severity.INFO,
                    f"{', '.join(held_deps)} held: the package steps release {them} for the "
                    "kube package install (apt upgrades a dependency the new kubeadm/kubelet "
                    f"needs: cri-tools, kubernetes-cni) and hold {them} again",
                    node=original.name,
                ),
            )
        return held_deps

    def _check_kubeadm_config(self, hop: KubeVersion) -> None:
        """An UpgradeConfiguration (--kubeadm-config) on a hop whose kubeadm predates it."""
        passthrough = self.opts.kubeadm
        if passthrough.config is None or hop.minor_key >= UPGRADE_CONFIG_MINOR:
            return
        self._add(
            Finding(
                KUBEADM_CONFIG_UNSUPPORTED,
                Severity.BLOCKER,
                f"--kubeadm-config {passthrough.config_source} is an UpgradeConfiguration, "
                f"which kubeadm {hop.minor_key[0]}.{hop.minor_key[1]} (hop {hop}) does not "
                "know (kubeadm.k8s.io/v1beta4, from 1.31)",
                fix="leave --kubeadm-config out for this upgrade (use --patches, "
                "--ignore-preflight-errors, --etcd-upgrade, --certificate-renewal)",
            ),
            key=str(hop),
        )

    def _expand(
        self,
        ctx: StepContext,
        phase: str,
        repo_minor: tuple[int, int] | None,
        cp_visit: bool,
        have_sums: bool,
    ) -> list[Step]:
        """The playbook's steps of ``phase`` that apply to this visit, expanded for ``ctx``
        (the kubeadm pass-through files copied before the first ``kubeadm upgrade``)."""
        name, hop, pm, repo = ctx.node, ctx.hop, ctx.package_manager, ctx.repo
        passthrough = self.opts.kubeadm
        steps: list[Step] = []
        values: dict[str, TemplateValue] | None = None  # of ctx, at the first step expanded
        for spec in self.playbook.phase(phase).all_steps:
            if not spec.when.holds(
                minor_changes=repo.per_minor and repo_minor != hop.minor_key,
                strategy=self.strategy,
                checksums=have_sums,
                role=ctx.role,
                per_minor_repo=repo.per_minor,
            ):
                if spec.when.checksums and not have_sums:
                    self._checksums_missing(hop, f"{phase}/{spec.name}")
                continue
            if spec.kind == StepKind.ETCD_SNAPSHOT:
                # One snapshot per run: before its first `kubeadm upgrade apply`.
                if self.snapshot_planned or not self.opts.etcd_snapshot:
                    continue
                self.snapshot_planned = True
                for finding in etcd_mod.snapshot_blockers(self.facts, self.facts.node(name)):
                    self._add(finding, key=finding.message)
            if values is None:
                values = step_values(ctx)
            step = expand_step(spec, phase, ctx, values)
            if (
                cp_visit
                and passthrough.has_files
                and step.kind == StepKind.SHELL
                and "kubeadm upgrade " in (step.command or "")
                and not any(s.name == KUBEADM_FILES_STEP for s in steps)
            ):
                steps.append(passthrough.copy_step(hop, name, phase))
            if step.kind == StepKind.SHELL and step.command is None and pm is not None:
                self._add(
                    Finding(
                        PLAYBOOK_NO_COMMAND,
                        Severity.BLOCKER,
                        f"step {phase}/{spec.name} has no command for {pm} ({spec.origin})",
                        node=name,
                        fix=f"add a '{pm}' command to the step in your playbook",
                    ),
                    key=f"{phase}/{spec.name}",
                )
            steps.append(step)
        return steps

    def _overrides_in_config(
        self, overrides: tuple[str, ...], passthrough: KubeadmPassthrough, hop: KubeVersion
    ) -> tuple[str, ...]:
        """kubeadm refuses ``--config`` beside the override flags: each must be set in the
        UpgradeConfiguration's ``apply:`` instead (then no flag), else a blocker."""
        settings = apply_settings(passthrough.config or b"")
        missing = [f for f in overrides if settings.get(CONFIG_FIELD_OF_FLAG[f]) is not True]
        if missing:
            fields = ", ".join(f"apply.{CONFIG_FIELD_OF_FLAG[f]}: true" for f in missing)
            self._add(
                Finding(
                    KUBEADM_CONFIG_UNSUPPORTED,
                    Severity.BLOCKER,
                    f"kubeadm upgrade apply {hop} needs {' '.join(missing)}, which kubeadm "
                    f"refuses beside --config ({passthrough.config_source})",
                    fix=f"set {fields} in {passthrough.config_source}",
                ),
                key=f"{hop}/overrides",
            )
        return ()

    def _kubeadm_flags(self, hop: KubeVersion) -> tuple[str, ...]:
        """The override flags the operator gave that ``kubeadm upgrade apply <hop>`` needs
        (kubeadm refuses what upgrader let pass otherwise): ``--force`` when one of
        kubeadm's ``--force``-able refusals holds on the cluster as the visit finds it
        (``policy.kubeadm_apply_findings``, kubeadm at the hop), the pre-release opt-in
        for an alpha/beta/rc hop."""
        policy = self.opts.policy
        flags: list[str] = []
        kubelets = {n.name: n.kubelet for n in self.sim.values()}
        found = kubeadm_apply_findings(self.cluster, hop, hop, kubelets, policy)
        if policy.force and any(f.override == Override.FORCE for f in found):
            flags.append(Override.FORCE)
        if hop.is_prerelease:
            if policy.allow_experimental:
                flags.append(Override.ALLOW_EXPERIMENTAL)
            elif policy.allow_release_candidate and hop.pre == "rc":
                flags.append(Override.ALLOW_RC)
        return tuple(flags)

    def _release_checksums(self, hop: KubeVersion) -> ReleaseChecksums | None:
        """The hop's checksums when all three binaries' are known."""
        found = (self.opts.checksums or {}).get(str(hop))
        return found if found is not None and found.complete else None

    def _checksums_missing(self, hop: KubeVersion, step: str) -> None:
        if self.opts.checksums is None:
            self._add(
                Finding(
                    CHECKSUMS_UNAVAILABLE,
                    Severity.WARNING,
                    "no release checksums are configured: the installed kubeadm, kubelet and "
                    f"kubectl are not verified (step {step} and its like are left out)",
                    fix=f"set {self._where('packages.release_checksums')} (a directory "
                    "DIR/<version>/<binary>.sha256 or an https URL template, e.g. "
                    "https://dl.k8s.io/release/{version}/bin/linux/{arch}/{binary}.sha256)",
                )
            )
            return
        found = self.opts.checksums.get(str(hop))
        why = found.problem if found is not None and found.problem else "not read"
        self._add(
            Finding(
                CHECKSUMS_UNREADABLE,
                Severity.BLOCKER,
                f"the release checksums of {hop} could not be read: {why}",
                fix=f"fix {self._where('packages.release_checksums')} (or the file/URL it "
                "points at), or remove it to upgrade without verifying the binaries",
            ),
            key=str(hop),
        )

    def _check_listing(self, node: NodeFacts, hop: KubeVersion, exact: str | None) -> None:
        if exact is not None or not node.repo_versions:
            return
        repo = self.opts.repository
        if repo.per_minor and _minor_key(node.repo_minor) != hop.minor_key:
            return  # the listing is of another minor's repository
        self._add(
            Finding(
                PACKAGE_VERSION_NOT_LISTED,
                Severity.WARNING,
                f"the package repository of {node.name} does not list kubeadm {hop.plain} "
                f"(it offers {', '.join(node.repo_versions[:3])}"
                f"{' ...' if len(node.repo_versions) > 3 else ''}); the package step looks "
                "it up again after refreshing the lists and fails if it is still missing",
                node=node.name,
                fix="check the repository configuration or mirror of the node",
            ),
            key=str(hop),
        )

    def _moved(self, name: str, phase: str, hop: KubeVersion) -> None:
        """The node as the visit leaves it."""
        n = self.sim[name]
        if self.opts.repository.per_minor:
            self.repo_minor[name] = hop.minor_key
        if phase in (Phase.FIRST_CONTROL_PLANE, Phase.CONTROL_PLANE):
            cp = n.control_plane or ControlPlaneVersions()
            cp = replace(
                cp,
                apiserver=_raised(cp.apiserver, hop),
                controller_manager=_raised(cp.controller_manager, hop),
                scheduler=_raised(cp.scheduler, hop),
            )
            n = replace(n, kubeadm=_raised(n.kubeadm, hop), control_plane=cp)
            if phase == Phase.FIRST_CONTROL_PLANE:
                self.cluster = max(self.cluster, hop)
        else:
            n = replace(n, kubelet=_raised(n.kubelet, hop), kubectl=_raised(n.kubectl, hop))
            if phase == Phase.WORKER:
                n = replace(n, kubeadm=_raised(n.kubeadm, hop))
        self.sim[name] = n

    # ---- the walk -------------------------------------------------------------------
    def walk(self, hops: tuple[KubeVersion, ...]) -> None:
        cps = [n.name for n in self.facts.control_planes]
        workers = self.workers
        for hop in hops:
            catching_up = hop <= self.cluster
            for i, name in enumerate(cps):
                node = self.sim[name]
                if i == 0 and not catching_up:
                    self.visit(name, Phase.FIRST_CONTROL_PLANE, hop)
                elif path_mod.control_plane_needs_upgrade(node, hop) or (
                    node.kubeadm is None or node.kubeadm < hop
                ):
                    self.visit(name, Phase.CONTROL_PLANE, hop)
            for name in cps:
                if path_mod.kubelet_needs_upgrade(self.sim[name], hop):
                    self.visit(name, Phase.CONTROL_PLANE_KUBELET, hop)
            if self.strategy == "per-hop" or catching_up:
                for name in workers:
                    if path_mod.node_needs_upgrade(self.sim[name], hop):
                        self.visit(name, Phase.WORKER, hop)
        if self.strategy == "drain-once" and hops:
            for name in workers:
                if path_mod.node_needs_upgrade(self.sim[name], hops[-1]):
                    self.visit(name, Phase.WORKER, hops[-1])


# Findings that only say that a fact of the node is missing. For a node that was not
# reached they say nothing NODE_UNREACHABLE does not (its facts are missing because it was
# not reached), and one of them (KUBELET_VERSION_UNKNOWN) would even offer --force.
MISSING_FACT_CODES = frozenset(
    {KUBELET_VERSION_UNKNOWN, PACKAGE_MANAGER_UNKNOWN, CONTROL_PLANE_VERSION_UNKNOWN}
)


def without_missing_fact_findings(findings: Iterable[Finding], facts: Facts) -> list[Finding]:
    """``findings`` without those of :data:`MISSING_FACT_CODES` about a node the facts
    mark unreached: one line per unreachable node, no findings caused by its missing facts."""
    unreached = {n.name for n in facts.nodes if not n.reachable}
    return [f for f in findings if not (f.node in unreached and f.code in MISSING_FACT_CODES)]


def build_plan(
    facts: Facts,
    target: KubeVersion,
    playbook: Playbook,
    releases: ReleaseData,
    opts: PlanOptions,
) -> Plan:
    """The plan from ``facts`` to ``target``. A plan with blockers still lists its steps
    (``Plan.blockers`` is non-empty); nothing to do gives no entries. Raises ConfigError
    for bad options (unknown strategy, ``--nodes`` naming an unknown or control-plane
    node, ``max_unavailable`` < 1)."""
    _validate(facts, opts)
    order, selection = order_workers(facts.workers, opts.selection)
    up = path_mod.plan_path(facts, target, releases, opts.policy, opts.strategy)
    planner = _Planner(facts, playbook, opts, up.strategy, order)
    planner.walk(up.hops)

    entries = planner.entries
    own = planner.findings
    if opts.selector is not None:
        # workers the selector leaves out: no findings about them either
        chosen = set(order)
        left_out = {n.name for n in facts.workers} - chosen
        own = [f for f in own if f.node not in left_out]
    if opts.nodes is not None:
        # Only the chosen workers' visits stay (and the findings about them).
        selected = set(opts.nodes)
        pending_cp = sorted({e.node for e in entries if e.phase != Phase.WORKER})
        entries = [e for e in entries if e.phase == Phase.WORKER and e.node in selected]
        own = [f for f in own if f.node is None or f.node in selected]
        if pending_cp:
            own.append(
                Finding(
                    CONTROL_PLANE_NOT_AT_TARGET,
                    Severity.BLOCKER,
                    f"--nodes limits the run to workers, but the control plane is not at "
                    f"{target} yet (still to do: {', '.join(pending_cp)})",
                    fix="upgrade the control plane first: run without --nodes",
                )
            )

    findings: list[Finding] = []
    seen: set[tuple[str, str | None, str]] = set()
    for f in without_missing_fact_findings((*facts.findings, *up.findings, *own), facts):
        key = (f.code, f.node, f.message)
        if key not in seen:
            seen.add(key)
            findings.append(f)
    # the groups name the workers the plan visits (not those already at the target)
    visited = {e.node for e in entries if e.phase == Phase.WORKER}
    selection = selection.visiting(visited)
    if opts.prestage and entries:
        entries = planner.prestage(entries) + entries
    overrides = tuple(dict.fromkeys((*opts.overrides, *opts.policy.overrides)))
    return Plan(
        current=facts.cluster.version,
        target=target,
        hops=up.hops,
        entries=tuple(entries),
        findings=tuple(findings),
        strategy=up.strategy,
        overrides=overrides,
        selection=selection,
    )


def image_repository_findings(
    cluster: str | None, wanted: str | None, settings: SettingHints
) -> list[Finding]:
    """The inventory's ``images.repository`` against the cluster's ``imageRepository``
    (kubeadm-config's ClusterConfiguration; ``None``: kubeadm's default, registry.k8s.io).

    ``kubeadm upgrade apply`` has no ``--image-repository`` flag and an
    UpgradeConfiguration no ``imageRepository`` field: kubeadm pulls the new control-plane
    images from what the ConfigMap says. When that is not where the site's images are
    (an air-gapped registry), the upgrade would wait on image pulls that cannot succeed:
    a blocker until the ConfigMap says the same as the inventory."""
    if wanted is None:
        return []
    have = cluster or DEFAULT_IMAGE_REPOSITORY
    if have == wanted:
        return []
    return [
        Finding(
            IMAGE_REPOSITORY_MISMATCH,
            Severity.BLOCKER,
            f"the cluster's kubeadm-config says imageRepository {have}"
            + ("" if cluster else " (unset: kubeadm's default)")
            + f", but {settings.where('images.repository')} says {wanted}: kubeadm pulls the "
            "new control-plane images from the ConfigMap's repository",
            fix=(
                "set imageRepository: "
                f"{wanted} in the ClusterConfiguration of the kubeadm-config ConfigMap "
                "(kubectl -n kube-system edit configmap kubeadm-config) once the images are "
                f"in that registry, or correct {settings.where('images.repository')}"
            ),
        )
    ]
