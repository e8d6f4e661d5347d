"""The command line's options: their declarations and the typed objects they become.

Owns every ``typer`` option declaration of the product's commands (``Annotated`` aliases,
one per option and help text), the option groups (frozen dataclasses whose fields are
options: :class:`Access`, :class:`Sources`, :class:`WorkerFlags`, :class:`Gates`,
:class:`KubeadmFlags`, :class:`DrainFlags`, ...) with the checks that turn them into the
library's typed values (one-line :class:`~upgrader.errors.ConfigError` naming the flag),
and :func:`grouped`, which lets a command take a group as one parameter while ``--help``
lists the group's options in its place.

Must not: print, contact a node or the API, or import the library's heavy modules at
import time (``upgrader --help`` stays fast: they are imported inside the checks).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import typer

from upgrader.core.vocab import Override, Strategy
from upgrader.errors import ConfigError, UpgraderError

# --------------------------------------------------------------------------- shared options

VerboseOpt = Annotated[
    int, typer.Option("--verbose", "-v", count=True, help="More log output on stderr (-vv: debug).")
]
InventoryOpt = Annotated[
    Path | None,
    typer.Option(
        "--inventory",
        "-i",
        help="Inventory file (native upgrader YAML or a Kubespray/Ansible YAML inventory).",
        show_default=False,
    ),
]
InventoryFileOpt = Annotated[  # the required form (facts, apply, status)
    Path, typer.Option("--inventory", "-i", help="Inventory file.", show_default=False)
]

# The options `plan` and `apply` share word for word. Those whose help differs between the
# two (--strategy, --force, --harden-kubelet, the drain flags, ...) have one alias each.
TargetOpt = Annotated[
    str,
    typer.Option(
        "--to",
        help="Target: v1.28.4, v1.28 (its newest known patch) or latest.",
        show_default=False,
    ),
]
KubeconfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--kubeconfig",
        help="Kubeconfig to use (wins over the inventory's kubeconfig.path and $KUBECONFIG).",
        show_default=False,
    ),
]
KnownHostsOpt = Annotated[
    Path | None,
    typer.Option(
        "--known-hosts",
        help="known_hosts file for the nodes' SSH host keys (wins over ssh.known_hosts).",
        show_default=False,
    ),
]
PlaybooksOpt = Annotated[
    Path | None, typer.Option("--playbooks", help="Directory with your own playbooks.")
]
ReleaseDataOpt = Annotated[
    Path | None, typer.Option("--release-data", help="Refreshed release data JSON (see README).")
]
NodesOpt = Annotated[
    str | None, typer.Option("--nodes", help="Comma-separated workers to limit the run to.")
]
SelectorOpt = Annotated[
    str | None,
    typer.Option(
        "--selector",
        "-l",
        metavar="SELECTOR",
        help="Upgrade only the workers whose Node labels match this label selector "
        "(zone=a, 'zone in (a,b)', '!spot', as kubectl -l); with --nodes: the workers "
        "both choose. The control plane still goes first. Inventory: workers.selector.",
        show_default=False,
    ),
]
GroupByOpt = Annotated[
    str | None,
    typer.Option(
        "--group-by",
        metavar="LABEL",
        help="Group the workers by this Node label's value and upgrade the groups side by "
        "side (nodes without it: their own group). Not with --max-unavailable.",
        show_default=False,
    ),
]
PerGroupOpt = Annotated[
    int | None,
    typer.Option(
        "--max-unavailable-per-group",
        min=1,
        max=100,
        metavar="N",
        help="With --group-by: at most N nodes of each group down at once [default: 1].",
        show_default=False,
    ),
]
OrderByOpt = Annotated[
    str | None,
    typer.Option(
        "--order-by",
        metavar="LABEL",
        help="Order the workers (within each group) by this Node label's value, then the "
        "name (default: inventory order).",
        show_default=False,
    ),
]
AllowExperimentalOpt = Annotated[
    bool, typer.Option("--allow-experimental-upgrades", help="Allow alpha/beta/rc targets.")
]
AllowRcOpt = Annotated[
    bool, typer.Option("--allow-release-candidate-upgrades", help="Allow rc targets.")
]
AllowUnsupportedOpt = Annotated[
    bool,
    typer.Option("--allow-unsupported", help="Pass a target outside the supported-minor window."),
]
StrictOpt = Annotated[
    bool, typer.Option("--strict", help="Warnings that have a strict form become blockers.")
]
MaxWorkersOpt = Annotated[int, typer.Option("--max-workers", min=1, max=512)]
DrainFallbackOpt = Annotated[
    str | None,
    typer.Option(
        "--drain-fallback",
        metavar="none|delete",
        help="When --drain-timeout runs out: none (default) fails the drain; delete deletes "
        "the pods a PodDisruptionBudget still refuses (plain DELETE, their own grace "
        "period) and goes on. A node's drain.fallback in the inventory wins.",
    ),
]
PodSelectorOpt = Annotated[
    str | None,
    typer.Option(
        "--pod-selector",
        metavar="SELECTOR",
        help="Drain only the pods this label selector matches (as kubectl drain "
        "--pod-selector, e.g. 'app=web,tier!=cache'); the others stay. A node's "
        "drain.pod_selector in the inventory wins.",
    ),
]


DetailOpt = Annotated[
    bool,
    typer.Option(
        "--detail",
        help="Show every step of every node with its exact command and skip check, instead "
        "of the brief plan (each distinct command once, with the nodes it runs on).",
    ),
]
# kubeadm pass-through (upgrader.kubeadm_files): control-plane nodes' kubeadm upgrade
PatchesOpt = Annotated[
    Path | None,
    typer.Option(
        "--patches",
        help="kubeadm patch files (target[suffix][+patchtype].extension), copied to each "
        "control-plane node and passed to kubeadm upgrade apply/node --patches.",
    ),
]
KubeadmConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--kubeadm-config",
        help="An UpgradeConfiguration (kubeadm 1.31+), copied to each control-plane node and "
        "passed to kubeadm upgrade plan/apply/node --config.",
    ),
]
IgnorePreflightOpt = Annotated[
    str | None,
    typer.Option(
        "--ignore-preflight-errors", help="kubeadm upgrade's --ignore-preflight-errors LIST."
    ),
]
EtcdUpgradeOpt = Annotated[
    str | None,
    typer.Option("--etcd-upgrade", help="false: kubeadm upgrade --etcd-upgrade=false."),
]
CertRenewalOpt = Annotated[
    str | None,
    typer.Option(
        "--certificate-renewal", help="false: kubeadm upgrade --certificate-renewal=false."
    ),
]


# --------------------------------------------------------------------------- facts', status's own

FactsOutputOpt = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Write the facts JSON here (default: stdout)."),
]
FactsMaxWorkersOpt = Annotated[
    int, typer.Option("--max-workers", min=1, max=512, help="Nodes probed at once.")
]
StatusStateOpt = Annotated[
    Path | None, typer.Option("--state", help="State file (default: beside the inventory).")
]
JsonStatusOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]

# --------------------------------------------------------------------------- plan's own

FactsFileOpt = Annotated[
    Path | None,
    typer.Option("--facts", help="Plan from a saved facts file instead of live facts."),
]
JsonPlanOpt = Annotated[bool, typer.Option("--json", help="Print the plan as one JSON document.")]
PlanStrategyOpt = Annotated[
    Strategy,
    typer.Option(
        help="Worker strategy for multi-minor jumps: per-hop drains each worker once per "
        "minor; drain-once walks the control plane through every minor, then drains each "
        "worker once (allowed only where the skew policy and kubeadm permit); auto picks "
        "drain-once when allowed."
    ),
]
PlanForceOpt = Annotated[
    bool,
    typer.Option("--force", help="Pass kubeadm's overridable refusals (as kubeadm --force)."),
]
PlanHardenOpt = Annotated[
    bool,
    typer.Option(
        "--harden-kubelet",
        help="Add steps that turn off the kubelet's anonymous auth and read-only port and "
        "set Webhook authorization (flags in /etc/default/kubelet or /etc/sysconfig/kubelet).",
    ),
]
PlanSkipSnapshotOpt = Annotated[
    bool,
    typer.Option(
        "--skip-etcd-snapshot",
        help="Leave out the etcd snapshot taken before the first kubeadm upgrade apply.",
    ),
]
PlanNoPrestageOpt = Annotated[
    bool,
    typer.Option(
        "--no-prestage",
        help="Leave out the prestage phase (package downloads and image pulls on every "
        "node at once, before the first drain).",
    ),
]
PlanEmptyDirOpt = Annotated[
    bool,
    typer.Option(
        "--delete-emptydir-data", help="Drains may delete pods that use emptyDir volumes."
    ),
]
PlanDisableEvictionOpt = Annotated[
    bool,
    typer.Option("--disable-eviction", help="Drains delete pods (bypasses PodDisruptionBudgets)."),
]

# --------------------------------------------------------------------------- apply's own

YesOpt = Annotated[
    bool,
    typer.Option("--yes", "-y", help="Do not ask for confirmation (needed without a TTY)."),
]
ApplyStateOpt = Annotated[
    Path | None,
    typer.Option(
        "--state",
        help="State file (default: .upgrader/<cluster>.state.json beside the inventory).",
    ),
]
MaxUnavailableOpt = Annotated[
    int, typer.Option("--max-unavailable", min=1, max=100, help="Workers upgraded at once.")
]
DrainTimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--drain-timeout",
        min=0,
        help="Seconds a drain may take (default: the playbook's, 600).",
    ),
]
GracePeriodOpt = Annotated[
    int | None,
    typer.Option("--grace-period", min=0, help="Pod termination grace period for the drain."),
]
ApplyEmptyDirOpt = Annotated[
    bool, typer.Option("--delete-emptydir-data", help="Drain pods that use emptyDir volumes.")
]
ApplyForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Pass kubeadm's overridable refusals, and drain pods no controller manages.",
    ),
]
ApplyDisableEvictionOpt = Annotated[
    bool,
    typer.Option(
        "--disable-eviction", help="Drain by deleting pods (bypasses PodDisruptionBudgets)."
    ),
]
ApplyHardenOpt = Annotated[
    bool,
    typer.Option(
        "--harden-kubelet",
        help="Also turn off the kubelet's anonymous auth and read-only port and set Webhook "
        "authorization on each node (backup first, verified after).",
    ),
]
ApplySkipSnapshotOpt = Annotated[
    bool,
    typer.Option(
        "--skip-etcd-snapshot",
        help="Do not snapshot etcd before the first kubeadm upgrade apply (by default "
        "the snapshot is copied beside the state file and its sha256 checked).",
    ),
]
ApplyNoPrestageOpt = Annotated[
    bool,
    typer.Option(
        "--no-prestage",
        help="Do not download packages and pull images on every node before the first "
        "drain (by default they are, so that nothing downloads while a node is drained).",
    ),
]
ReadyTimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--ready-timeout", min=1, help="Seconds to wait for a node (default: the playbook's)."
    ),
]
EventsOpt = Annotated[
    Path | None, typer.Option("--events", help="Append run events here as JSON Lines.")
]
TranscriptsOpt = Annotated[
    Path | None,
    typer.Option(
        "--transcripts", help="Directory of per-node transcripts (default: beside the state)."
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only failures.")]
ValidateCountOpt = Annotated[
    int,
    typer.Option(
        "--validate-count",
        min=1,
        max=100,
        help="Before each node, the cluster health gates (nodes Ready, control-plane pods "
        "Ready, etcd healthy) must pass this many times in a row (5s apart).",
    ),
]
BreakLockOpt = Annotated[
    bool, typer.Option("--break-lock", help="Take over the cluster Lease of a dead run.")
]
AbandonOpt = Annotated[
    bool,
    typer.Option("--abandon", help="Drop the unfinished run recorded in the state and start anew."),
]
AcceptChangesOpt = Annotated[
    bool,
    typer.Option(
        "--accept-changes",
        help="Resume an unfinished run although the inventory or playbooks changed since "
        "it started (the run's stored steps run, not the changed ones).",
    ),
]
ApplyStrategyOpt = Annotated[
    Strategy, typer.Option(help="Worker strategy for multi-minor jumps (as for plan).")
]
# operator pauses (issue 14 item 1)
CanaryOpt = Annotated[
    int | None,
    typer.Option(
        "--canary",
        min=1,
        help="Upgrade the control plane and the first N workers, then pause (exit 0, run "
        "recorded as paused); the same command continues.",
    ),
]
PauseBetweenOpt = Annotated[
    str | None,
    typer.Option(
        "--pause-between",
        help="Before each node after the first: 'ask' (needs a terminal) or wait SECONDS.",
    ),
]
HoldUncordonOpt = Annotated[
    bool,
    typer.Option(
        "--hold-uncordon",
        help="Before uncordoning each node, show its pods and events and ask (needs a terminal).",
    ),
]
NotifyOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--notify",
        metavar="URL",
        help="POST the run's events (start, node done, step failed, outside window, "
        "finished) as JSON to this webhook (repeatable; https, or http to loopback).",
    ),
]
WindowOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--window",
        metavar="'DAYS HH:MM-HH:MM [ZONE]'",
        help="Start nodes only inside this window, e.g. 'Sat 01:00-05:00' or "
        "'Mon-Fri 22:00-06:00 Europe/Berlin' (repeatable); outside, the run stops before "
        "its next node (exit 7) and says when the window opens.",
    ),
]
WindowTzOpt = Annotated[
    str | None,
    typer.Option("--window-tz", help="Time zone of --window times without one (UTC)."),
]


# --------------------------------------------------------------------------- option groups


def grouped(command: Callable[..., None]) -> Callable[..., None]:
    """``command`` with each parameter whose annotation is an option group (a dataclass
    whose fields are options) taking that group's options in its place, in field order:
    typer sees (and ``--help`` lists) the options, the command receives the group."""
    signature = inspect.signature(command, eval_str=True)
    params: list[inspect.Parameter] = []
    groups: dict[str, tuple[type[Any], tuple[str, ...]]] = {}
    for param in signature.parameters.values():
        group = param.annotation
        if not (isinstance(group, type) and dataclasses.is_dataclass(group)):
            params.append(param)
            continue
        hints = get_type_hints(group, include_extras=True)
        members = dataclasses.fields(group)
        groups[param.name] = (group, tuple(f.name for f in members))
        params += [
            inspect.Parameter(f.name, param.kind, default=f.default, annotation=hints[f.name])
            for f in members
        ]

    @functools.wraps(command)
    def run(**given: Any) -> None:
        for name, (group, members) in groups.items():
            given[name] = group(**{m: given.pop(m) for m in members})
        command(**given)

    run.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return run


def fields_of(group: Any, *, leave: Collection[str] = ()) -> dict[str, Any]:
    """A group's options by name, each named as the request field it fills (but those in
    ``leave``)."""
    return {
        f.name: getattr(group, f.name) for f in dataclasses.fields(group) if f.name not in leave
    }


@dataclass(frozen=True)
class Access:
    """--kubeconfig and --known-hosts: they win over the inventory's own."""

    kubeconfig: KubeconfigOpt = None
    known_hosts: KnownHostsOpt = None

    def inventory(self, path: Path) -> Any:
        from upgrader.inventory import load_inventory

        return load_inventory(path, kubeconfig=self.kubeconfig, known_hosts=self.known_hosts)

    def inventory_or_none(self, path: Path) -> Any:
        """The inventory for its ``kubeadm:`` section, or ``None`` when it does not load
        (``apply`` then reports that error its own way, later)."""
        try:
            return self.inventory(path)
        except UpgraderError:
            return None


@dataclass(frozen=True)
class Sources:
    """--playbooks and --release-data."""

    playbooks: PlaybooksOpt = None
    release_data: ReleaseDataOpt = None


@dataclass(frozen=True)
class WorkerFlags:
    """Which workers, grouped and ordered how."""

    nodes: NodesOpt = None
    selector: SelectorOpt = None
    group_by: GroupByOpt = None
    max_unavailable_per_group: PerGroupOpt = None
    order_by: OrderByOpt = None

    def node_names(self, inv: Any | None) -> tuple[str, ...] | None:
        """``--nodes`` as names, checked against the inventory before any node is
        contacted: each must be a worker of the inventory (the planner checks the facts
        again)."""
        if self.nodes is None:
            return None
        from upgrader.core.workers import check_node_names

        names = tuple(n.strip() for n in self.nodes.split(",") if n.strip())
        if inv is not None or not names:
            roles = {n.name: n.is_control_plane for n in inv.nodes} if inv is not None else {}
            check_node_names(names, roles, "the inventory", known=True)
        return names

    def check(self, max_unavailable: int = 1) -> None:
        """``--selector``, ``--group-by``, ``--order-by``, ``--max-unavailable-per-group``
        checked before any node is contacted (the inventory's ``workers:`` fills the
        rest)."""
        from upgrader.core.labelselector import check_key
        from upgrader.core.labelselector import parse as parse_selector

        if self.selector is not None:
            parse_selector(self.selector, "--selector")
        if self.group_by is not None:
            check_key(self.group_by, "--group-by")
            if max_unavailable > 1:
                raise ConfigError(
                    "--group-by: not with --max-unavailable (use --max-unavailable-per-group: "
                    "at most that many nodes of each group down at once)"
                )
        if self.order_by is not None:
            check_key(self.order_by, "--order-by")


@dataclass(frozen=True)
class Gates:
    """The targets and warnings the operator lets through."""

    allow_experimental: AllowExperimentalOpt = False
    allow_rc: AllowRcOpt = False
    allow_unsupported: AllowUnsupportedOpt = False
    strict: StrictOpt = False

    def overrides(self, force: bool) -> tuple[Override, ...]:
        """The override flags given, in kubeadm's spelling."""
        return tuple(
            flag
            for flag, on in (
                (Override.FORCE, force),
                (Override.ALLOW_EXPERIMENTAL, self.allow_experimental),
                (Override.ALLOW_RC, self.allow_rc),
                (Override.ALLOW_UNSUPPORTED, self.allow_unsupported),
            )
            if on
        )


@dataclass(frozen=True)
class KubeadmFlags:
    """kubeadm pass-through (upgrader.kubeadm_files): control-plane nodes' kubeadm upgrade."""

    patches: PatchesOpt = None
    kubeadm_config: KubeadmConfigOpt = None
    ignore_preflight_errors: IgnorePreflightOpt = None
    etcd_upgrade: EtcdUpgradeOpt = None
    certificate_renewal: CertRenewalOpt = None

    def passthrough(self, inv: Any | None) -> Any:
        """The checked kubeadm pass-through of the flags, else of the inventory's
        ``kubeadm:`` section (a flag wins over its key); one ConfigError line on bad input."""
        from upgrader.kubeadm_files import load_passthrough

        section = getattr(inv, "kubeadm", None)
        if section is None:
            from upgrader.inventory.schema import KubeadmSpec

            section = KubeadmSpec()
        key = "kubeadm.{} in the inventory"
        patches, config = self.patches, self.kubeadm_config
        return load_passthrough(
            patches if patches is not None else section.patches,
            config if config is not None else section.config,
            self.ignore_preflight_errors
            if self.ignore_preflight_errors is not None
            else ",".join(section.ignore_preflight_errors),
            _bool(self.etcd_upgrade, "--etcd-upgrade", section.etcd_upgrade),
            _bool(self.certificate_renewal, "--certificate-renewal", section.certificate_renewal),
            patches_label="--patches" if patches is not None else key.format("patches"),
            config_label="--kubeadm-config" if config is not None else key.format("config"),
        )


def _bool(value: str | None, flag: str, default: bool) -> bool:
    if value is None:
        return default
    if value.lower() not in ("true", "false"):
        raise ConfigError(f"{flag}: {value!r} is not true or false")
    return value.lower() == "true"


@dataclass(frozen=True)
class DrainFlags:
    """--drain-fallback and --pod-selector."""

    drain_fallback: DrainFallbackOpt = None
    pod_selector: PodSelectorOpt = None

    def checked(self) -> DrainFlags:
        """Both checked (one-line error naming the flag), the selector in its canonical
        form."""
        from upgrader.core.drain import check_fallback
        from upgrader.core.podselector import SelectorError, canonical

        try:
            if self.drain_fallback is not None:
                check_fallback(self.drain_fallback)
        except ValueError as e:
            raise ConfigError(f"--drain-fallback: {e}") from None
        try:
            sel = canonical(self.pod_selector) if self.pod_selector is not None else None
        except SelectorError as e:
            raise ConfigError(f"--pod-selector: not a label selector: {e}") from None
        return DrainFlags(self.drain_fallback, sel)


@dataclass(frozen=True)
class ApplyDrain:
    """How `apply` drains a node (its own help texts: `plan` only checks)."""

    drain_timeout: DrainTimeoutOpt = None
    grace_period: GracePeriodOpt = None
    delete_emptydir_data: ApplyEmptyDirOpt = False
    force: ApplyForceOpt = False
    disable_eviction: ApplyDisableEvictionOpt = False

    def engine(self, max_unavailable: int, ready_timeout: float | None, pauses: Pauses) -> Any:
        """The engine's options: these, the workers at once, the readiness wait, --canary."""
        from upgrader.execute.engine import EngineOptions

        return EngineOptions(
            max_unavailable=max_unavailable,
            ready_timeout=ready_timeout,
            canary=pauses.canary,
            **fields_of(self),
        )


@dataclass(frozen=True)
class Records:
    """Where `apply` writes its events and transcripts."""

    events: EventsOpt = None
    transcripts: TranscriptsOpt = None


@dataclass(frozen=True)
class Resume:
    """What `apply` does with a recorded run or a held Lease."""

    break_lock: BreakLockOpt = False
    abandon: AbandonOpt = False
    accept_changes: AcceptChangesOpt = False


@dataclass(frozen=True)
class Pauses:
    """Operator pauses: --canary, --pause-between, --hold-uncordon."""

    canary: CanaryOpt = None
    pause_between: PauseBetweenOpt = None
    hold_uncordon: HoldUncordonOpt = False

    def pause(self, tty: bool) -> Any:
        """--pause-between parsed; refused (as --hold-uncordon) when no one can answer."""
        from upgrader.execute.pauses import parse_pause_between, refuse_without_tty

        pause = parse_pause_between(self.pause_between)
        refuse_without_tty(pause, self.hold_uncordon, tty)
        return pause


@dataclass(frozen=True)
class Windows:
    """--window and --window-tz."""

    window: WindowOpt = None
    window_tz: WindowTzOpt = None
