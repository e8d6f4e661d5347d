"""The command line: a thin typer shell over the library.

Owns argument parsing, turning typed errors into one-line messages and exit codes, and
printing. Must not: hold domain logic (policy, planning, execution live in the library),
or print a traceback for an expected error.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import sys
from datetime import date
from pathlib import Path
from typing import IO, Annotated, Any, NoReturn

import typer

from upgrader import __version__
from upgrader.core.vocab import Override, Strategy
from upgrader.errors import (
    API_UNREACHABLE_CODES,
    SSH_UNREACHABLE_CODES,
    ConfigError,
    ExitCode,
    UpgraderError,
    refusal_exit_code,
)

app = typer.Typer(
    name="upgrader",
    help=(
        "Upgrade a self-managed kubeadm Kubernetes cluster safely, one node at a time, "
        "and resume where a run stopped.\n\n"
        "Exit codes: 0 ok (also 'nothing to do'), 1 a step failed (rerun resumes), "
        "2 bad input (nothing executed), 3 a blocker stands, 4 a node unreachable over SSH, "
        "5 Kubernetes API error, 6 another run holds the lock, 130 interrupted."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: option names never cut at 80 columns
    context_settings={"help_option_names": ["-h", "--help"]},
)

log = logging.getLogger("upgrader")


# --------------------------------------------------------------------------- helpers


class _RedactingFilter(logging.Filter):
    """Log lines on stderr through :func:`upgrader.redact.redact` (credential shapes): the
    ``kubernetes`` loader logs a failed ``exec`` plugin's stderr as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        from upgrader.redact import redact

        msg = record.getMessage()
        masked = redact(msg)
        if masked != msg:
            record.msg, record.args = masked, None
        return True


class _SafeFormatter(logging.Formatter):
    """Log lines (messages, arguments, tracebacks) with terminal escapes made visible:
    a log line may quote a node, an SSH banner or an API object."""

    def format(self, record: logging.LogRecord) -> str:
        from upgrader.core.sanitize import sanitize

        return sanitize(super().format(record))


class _SafeStream(io.TextIOBase):
    """A text stream that writes to ``inner`` with terminal escapes made visible
    (:func:`upgrader.core.sanitize.sanitize`): installed as ``sys.stdout`` and
    ``sys.stderr`` by :func:`main`, so every line the CLI prints (plans, findings, status,
    errors, warnings, prompts, logs) passes the one sanitiser whoever wrote it.
    ``inner`` stays reachable for the live progress display, whose own colour sequences
    must pass (it sanitises the texts it shows itself)."""

    def __init__(self, inner: IO[str]) -> None:
        super().__init__()
        self.inner = inner

    def write(self, s: str) -> int:
        if not isinstance(s, str):  # click probes for a binary stream with write(b"")
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        from upgrader.core.sanitize import sanitize

        self.inner.write(sanitize(s))
        return len(s)

    def flush(self) -> None:
        self.inner.flush()

    def isatty(self) -> bool:
        return self.inner.isatty()

    def fileno(self) -> int:
        return self.inner.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.inner, "encoding", "utf-8")

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.inner, "errors", None)


def _safe_streams() -> None:
    if not isinstance(sys.stdout, _SafeStream):
        sys.stdout = _SafeStream(sys.stdout)
    if not isinstance(sys.stderr, _SafeStream):
        sys.stderr = _SafeStream(sys.stderr)


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_SafeFormatter(fmt))
        if not any(isinstance(f, _RedactingFilter) for f in handler.filters):
            handler.addFilter(_RedactingFilter())
    if verbose < 2:
        # paramiko logs a failed handshake at ERROR with its traceback, in its own thread;
        # the SSH transport turns the same failure into a one-line TransportError
        logging.getLogger("paramiko").setLevel(logging.CRITICAL)
        # urllib3 logs each connection retry at WARNING (`Retrying (Retry(total=2, ...))`);
        # the API client's own error line says what failed, -v shows the retries
        logging.getLogger("urllib3").setLevel(logging.ERROR if verbose <= 0 else logging.WARNING)


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
# two (--strategy, --force, --harden-kubelet, the drain flags, ...) stay with their command.
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


def _drain_flags(fallback: str | None, selector: str | None) -> dict[str, str | None]:
    """``--drain-fallback`` and ``--pod-selector`` checked (one-line error naming the flag)
    and the selector in its canonical form."""
    from upgrader.core.drain import check_fallback
    from upgrader.core.podselector import SelectorError, canonical

    try:
        if fallback is not None:
            check_fallback(fallback)
    except ValueError as e:
        raise ConfigError(f"--drain-fallback: {e}") from None
    try:
        sel = canonical(selector) if selector is not None else None
    except SelectorError as e:
        raise ConfigError(f"--pod-selector: not a label selector: {e}") from None
    return {"drain_fallback": fallback, "pod_selector": sel}


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


def _kubeadm_passthrough(
    inv: Any | None,
    patches: Path | None,
    config: Path | None,
    ignore: str | None,
    etcd_upgrade: str | None,
    certificate_renewal: str | None,
) -> Any:
    """The checked kubeadm pass-through of the flags, else of the inventory's ``kubeadm:``
    section (a flag wins over its key); one ConfigError line on bad input."""
    from upgrader.kubeadm_files import load_passthrough

    def _bool(value: str | None, flag: str, default: bool) -> bool:
        if value is None:
            return default
        if value.lower() not in ("true", "false"):
            raise ConfigError(f"{flag}: {value!r} is not true or false")
        return value.lower() == "true"

    section = getattr(inv, "kubeadm", None)
    if section is None:
        from upgrader.inventory.schema import KubeadmSpec

        section = KubeadmSpec()
    key = "kubeadm.{} in the inventory"
    return load_passthrough(
        patches if patches is not None else section.patches,
        config if config is not None else section.config,
        ignore if ignore is not None else ",".join(section.ignore_preflight_errors),
        _bool(etcd_upgrade, "--etcd-upgrade", section.etcd_upgrade),
        _bool(certificate_renewal, "--certificate-renewal", section.certificate_renewal),
        patches_label="--patches" if patches is not None else key.format("patches"),
        config_label="--kubeadm-config" if config is not None else key.format("config"),
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _load_inventory(
    path: Path, kubeconfig: Path | None = None, known_hosts: Path | None = None
) -> Any:
    from upgrader.inventory import load_inventory

    return load_inventory(path, kubeconfig=kubeconfig, known_hosts=known_hosts)


def _inventory_or_none(
    path: Path, kubeconfig: Path | None = None, known_hosts: Path | None = None
) -> Any:
    """The inventory for its ``kubeadm:`` section, or ``None`` when it does not load
    (``apply`` then reports that error its own way, later)."""

    try:
        return _load_inventory(path, kubeconfig, known_hosts)
    except UpgraderError:
        return None


def _gather(inv: Any, max_workers: int) -> Any:
    from upgrader.gather import gather_facts
    from upgrader.kube.client import make_api_client

    api = None
    try:
        api = make_api_client(
            inv.kubeconfig_path(),
            inv.kubeconfig_context,
            missing_hint=getattr(inv, "kubeconfig_hint", None),
        )
    except ConfigError:
        raise
    return gather_facts(inv, api_client=api, max_workers=max_workers)


def _gather_with_preflight(
    inv: Any, max_workers: int, target: Any, disable_eviction: bool
) -> tuple[Any, Any]:
    """Facts and the preflight inputs (API reads, etcd over SSH), over one SSH pool."""
    from upgrader.gather import gather_facts
    from upgrader.kube.client import make_api_client
    from upgrader.preflight import collect_for
    from upgrader.transport.ssh import SSHPool

    api = make_api_client(
        inv.kubeconfig_path(),
        inv.kubeconfig_context,
        missing_hint=getattr(inv, "kubeconfig_hint", None),
    )
    pool = SSHPool()
    try:
        f = gather_facts(inv, api_client=api, max_workers=max_workers, pool=pool)
        pre = collect_for(inv, f, api, pool, target=target, disable_eviction=disable_eviction)
    finally:
        pool.close()
        api.close()  # type: ignore[no-untyped-call]
    return f, pre


def _node_names(text: str | None, inv: Any | None) -> tuple[str, ...] | None:
    """``--nodes`` as names, checked against the inventory before any node is contacted:
    each must be a worker of the inventory (the planner checks the facts again)."""
    if text is None:
        return None
    from upgrader.core.workers import check_node_names

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if inv is not None or not names:
        roles = {n.name: n.is_control_plane for n in inv.nodes} if inv is not None else {}
        check_node_names(names, roles, "the inventory", known=True)
    return names


def _worker_flags(
    selector: str | None,
    group_by: str | None,
    order_by: str | None,
    per_group: int | None,
    max_unavailable: int = 1,
) -> dict[str, Any]:
    """``--selector``, ``--group-by``, ``--order-by``, ``--max-unavailable-per-group``
    checked before any node is contacted (the inventory's ``workers:`` fills the rest)."""
    from upgrader.core.labelselector import check_key
    from upgrader.core.labelselector import parse as parse_selector

    if selector is not None:
        parse_selector(selector, "--selector")
    if group_by is not None:
        check_key(group_by, "--group-by")
        if max_unavailable > 1:
            raise ConfigError(
                "--group-by: not with --max-unavailable (use --max-unavailable-per-group: "
                "at most that many nodes of each group down at once)"
            )
    if order_by is not None:
        check_key(order_by, "--order-by")
    return {
        "selector": selector,
        "group_by": group_by,
        "order_by": order_by,
        "max_unavailable_per_group": per_group,
    }


def _load_facts_file(path: Path) -> Any:
    from upgrader.core.model import Facts

    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read facts file: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON: {e.msg} at line {e.lineno}") from None
    try:
        return Facts.from_dict(data, source=str(path))
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _echo_json(doc: Any) -> None:
    """``typer.echo(json.dumps(doc, indent=2))``, the same text written in pieces as it is
    encoded (a 5,000-node plan is about 40 MB of JSON). Straight to stdout: the text is
    ASCII without escape sequences, so echo's ANSI stripping (a regex over all of it
    when stdout is no terminal) has nothing to take out."""
    from upgrader.core.jsontext import write_json

    out = sys.stdout
    write_json(doc, out.write)
    out.write("\n")
    out.flush()


def _plan_request(
    *,
    target: Any,
    strategy: Strategy,
    playbooks: Path | None,
    release_data: Path | None,
    nodes: tuple[str, ...] | None,
    force: bool,
    allow_experimental: bool,
    allow_rc: bool,
    allow_unsupported: bool,
    strict: bool,
    harden_kubelet: bool,
    skip_etcd_snapshot: bool,
    no_prestage: bool,
    **command_only: Any,
) -> Any:
    """The ``PlanRequest`` of the flags `plan` and `apply` share (``command_only``: the
    fields only one of them sets); the override flags in kubeadm's spelling."""
    from upgrader.planning import PlanRequest

    overrides = tuple(
        flag
        for flag, on in (
            (Override.FORCE, force),
            (Override.ALLOW_EXPERIMENTAL, allow_experimental),
            (Override.ALLOW_RC, allow_rc),
            (Override.ALLOW_UNSUPPORTED, allow_unsupported),
        )
        if on
    )
    return PlanRequest(
        target=target,
        strategy=strategy.value,
        playbooks=playbooks,
        release_data=release_data,
        nodes=nodes,
        overrides=overrides,
        strict=strict,
        today=date.today(),
        harden_kubelet=harden_kubelet,
        etcd_snapshot=not skip_etcd_snapshot,
        prestage=not no_prestage,
        **command_only,
    )


def _parse_target(text: str, release_data: Path | None) -> Any:
    """The exact version ``--to`` names: ``v1.29`` and ``latest`` are resolved against the
    release data (``--release-data`` or the packaged file); the expansion is said on stderr."""
    from upgrader.core.releases import load_release_data
    from upgrader.core.target_spec import resolve
    from upgrader.core.versions import VersionError

    releases = load_release_data(release_data)
    try:
        resolved = resolve(text, releases, date.today())
    except VersionError as e:
        raise ConfigError(f"--to: {e}") from None
    if resolved.expanded:
        typer.echo(resolved.describe(), err=True)
    return resolved.version


# --------------------------------------------------------------------------- commands


@app.command()
def version() -> None:
    """Print upgrader's version."""
    typer.echo(f"upgrader {__version__}")


@app.command()
def facts(
    inventory: InventoryFileOpt,
    kubeconfig: KubeconfigOpt = None,
    known_hosts: KnownHostsOpt = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the facts JSON here (default: stdout)."),
    ] = None,
    max_workers: Annotated[
        int, typer.Option("--max-workers", min=1, max=512, help="Nodes probed at once.")
    ] = 32,
    verbose: VerboseOpt = 0,
) -> None:
    """Gather facts (package and binary versions over SSH, cluster state over the API) as JSON.

    Saved facts can be planned offline: `upgrader plan --facts FILE --to vX.Y.Z`.
    """
    _setup_logging(verbose)
    from upgrader import safefile

    inv = _load_inventory(inventory, kubeconfig, known_hosts)
    # opened (or refused: a symlink, a file not ours) before any node is contacted
    fd = None if output is None else safefile.open_fd(output)
    try:
        f = _gather(inv, max_workers)
    except BaseException:
        if fd is not None:
            os.close(fd)
        raise
    doc = json.dumps(f.to_dict(), indent=2, sort_keys=False) + "\n"
    if fd is None:
        typer.echo(doc, nl=False)
    else:
        os.ftruncate(fd, 0)
        with os.fdopen(fd, "wb") as fh:  # no symlink followed, mode 0600
            fh.write(doc.encode())
        typer.echo(
            f"wrote facts for {len(f.nodes)} nodes to {output} "
            f"({sum(1 for x in f.findings)} findings)",
            err=True,
        )
    unreached = [x for x in f.findings if x.code in SSH_UNREACHABLE_CODES | API_UNREACHABLE_CODES]
    if unreached:
        names = sorted({x.node or "Kubernetes API" for x in unreached})
        typer.echo(
            f"error: incomplete facts: could not reach {', '.join(names)} (see the findings)",
            err=True,
        )
        raise typer.Exit(int(refusal_exit_code(x.code for x in unreached)))


@app.command()
def plan(
    to: TargetOpt,
    inventory: InventoryOpt = None,
    kubeconfig: KubeconfigOpt = None,
    known_hosts: KnownHostsOpt = None,
    facts_file: Annotated[
        Path | None,
        typer.Option("--facts", help="Plan from a saved facts file instead of live facts."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the plan as one JSON document.")
    ] = False,
    detail: DetailOpt = False,
    strategy: Annotated[
        Strategy,
        typer.Option(
            help="Worker strategy for multi-minor jumps: per-hop drains each worker once per "
            "minor; drain-once walks the control plane through every minor, then drains each "
            "worker once (allowed only where the skew policy and kubeadm permit); auto picks "
            "drain-once when allowed."
        ),
    ] = Strategy.AUTO,
    playbooks: PlaybooksOpt = None,
    release_data: ReleaseDataOpt = None,
    nodes: NodesOpt = None,
    selector: SelectorOpt = None,
    group_by: GroupByOpt = None,
    max_unavailable_per_group: PerGroupOpt = None,
    order_by: OrderByOpt = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Pass kubeadm's overridable refusals (as kubeadm --force)."),
    ] = False,
    allow_experimental: AllowExperimentalOpt = False,
    allow_rc: AllowRcOpt = False,
    allow_unsupported: AllowUnsupportedOpt = False,
    strict: StrictOpt = False,
    harden_kubelet: Annotated[
        bool,
        typer.Option(
            "--harden-kubelet",
            help="Add steps that turn off the kubelet's anonymous auth and read-only port and "
            "set Webhook authorization (flags in /etc/default/kubelet or /etc/sysconfig/kubelet).",
        ),
    ] = False,
    skip_etcd_snapshot: Annotated[
        bool,
        typer.Option(
            "--skip-etcd-snapshot",
            help="Leave out the etcd snapshot taken before the first kubeadm upgrade apply.",
        ),
    ] = False,
    patches: PatchesOpt = None,
    kubeadm_config: KubeadmConfigOpt = None,
    ignore_preflight_errors: IgnorePreflightOpt = None,
    etcd_upgrade: EtcdUpgradeOpt = None,
    certificate_renewal: CertRenewalOpt = None,
    no_prestage: Annotated[
        bool,
        typer.Option(
            "--no-prestage",
            help="Leave out the prestage phase (package downloads and image pulls on every "
            "node at once, before the first drain).",
        ),
    ] = False,
    delete_emptydir_data: Annotated[
        bool,
        typer.Option(
            "--delete-emptydir-data", help="Drains may delete pods that use emptyDir volumes."
        ),
    ] = False,
    disable_eviction: Annotated[
        bool,
        typer.Option(
            "--disable-eviction", help="Drains delete pods (bypasses PodDisruptionBudgets)."
        ),
    ] = False,
    drain_fallback: DrainFallbackOpt = None,
    pod_selector: PodSelectorOpt = None,
    max_workers: MaxWorkersOpt = 32,
    verbose: VerboseOpt = 0,
) -> None:
    """Preview an upgrade: the order of the nodes with their steps, each distinct command once
    with the nodes it runs on, and the findings (--detail: every step of every node with its
    exact command and skip check; --json: the whole plan as data).

    Exit code 0: the plan can run (or there is nothing to do); 2: bad input; 3: a blocker
    stands; 4: a node unreachable or its host key refused; 5: the Kubernetes API unreachable.
    """
    _setup_logging(verbose)
    from upgrader.planning import check_request, make_plan

    if (inventory is None) == (facts_file is None):
        raise ConfigError("give exactly one of --inventory/-i or --facts")
    target = _parse_target(to, release_data)
    inv = _load_inventory(inventory, kubeconfig, known_hosts) if inventory is not None else None
    req = _plan_request(
        target=target,
        strategy=strategy,
        playbooks=playbooks,
        release_data=release_data,
        nodes=_node_names(nodes, inv),
        force=force,
        allow_experimental=allow_experimental,
        allow_rc=allow_rc,
        allow_unsupported=allow_unsupported,
        strict=strict,
        harden_kubelet=harden_kubelet,
        skip_etcd_snapshot=skip_etcd_snapshot,
        no_prestage=no_prestage,
        delete_emptydir_data=delete_emptydir_data,
        disable_eviction=disable_eviction,
        **_drain_flags(drain_fallback, pod_selector),
        **_worker_flags(selector, group_by, order_by, max_unavailable_per_group),
        kubeadm=_kubeadm_passthrough(
            inv,
            patches,
            kubeadm_config,
            ignore_preflight_errors,
            etcd_upgrade,
            certificate_renewal,
        ),
    )
    check_request(req)  # broken playbooks or release data: refused before any node is asked
    pre = None
    if facts_file is not None:
        f = _load_facts_file(facts_file)
    else:
        from upgrader.kube.client import exec_plugin_notice

        assert inv is not None
        notice = exec_plugin_notice(inv.kubeconfig_path(), inv.kubeconfig_context)
        if notice is not None:  # said before it runs; stdout stays one document with --json
            typer.echo(notice, err=as_json)
        f, pre = _gather_with_preflight(inv, max_workers, target, disable_eviction)
    p = make_plan(f, req, inv, preflight=pre)
    if as_json:
        _echo_json(p.to_dict())
    elif detail:
        from upgrader.core.render import render_text

        typer.echo(render_text(p), nl=False)
    else:
        from upgrader.core.render_brief import render_brief

        typer.echo(render_brief(p), nl=False)
    if p.blockers:
        raise typer.Exit(int(refusal_exit_code(f.code for f in p.blockers)))


@app.command()
def rbac(
    user: Annotated[
        str | None, typer.Option("--user", help="Bind to this user (default: upgrader).")
    ] = None,
    serviceaccount: Annotated[
        str | None,
        typer.Option("--serviceaccount", help="Bind to this ServiceAccount (NAMESPACE/NAME)."),
    ] = None,
    group: Annotated[str | None, typer.Option("--group", help="Bind to this group.")] = None,
    disable_eviction: Annotated[
        bool,
        typer.Option(
            "--disable-eviction", help="Also allow deleting pods (for apply --disable-eviction)."
        ),
    ] = False,
) -> None:
    """Print least-privilege RBAC (ClusterRole, Role in kube-system, their bindings, and the
    run's Lease, so that no create right on Leases is needed) for the identity upgrader runs
    as: exactly what `plan` checks and `apply` uses. docs/RBAC.md: what RBAC cannot narrow.

    Apply it with `upgrader rbac --user NAME | kubectl apply -f -`.
    """
    from upgrader.rbac import render_rbac, subject_from

    subject = subject_from(user=user, serviceaccount=serviceaccount, group=group)
    typer.echo(render_rbac(subject, disable_eviction=disable_eviction), nl=False)


# --------------------------------------------------------------------------- apply, status


@app.command()
def apply(
    to: TargetOpt,
    inventory: InventoryFileOpt,
    kubeconfig: KubeconfigOpt = None,
    known_hosts: KnownHostsOpt = None,
    yes: Annotated[
        bool,
        typer.Option("--yes", "-y", help="Do not ask for confirmation (needed without a TTY)."),
    ] = False,
    state: Annotated[
        Path | None,
        typer.Option(
            "--state",
            help="State file (default: .upgrader/<cluster>.state.json beside the inventory).",
        ),
    ] = None,
    max_unavailable: Annotated[
        int, typer.Option("--max-unavailable", min=1, max=100, help="Workers upgraded at once.")
    ] = 1,
    nodes: NodesOpt = None,
    selector: SelectorOpt = None,
    group_by: GroupByOpt = None,
    max_unavailable_per_group: PerGroupOpt = None,
    order_by: OrderByOpt = None,
    drain_timeout: Annotated[
        float | None,
        typer.Option(
            "--drain-timeout",
            min=0,
            help="Seconds a drain may take (default: the playbook's, 600).",
        ),
    ] = None,
    grace_period: Annotated[
        int | None,
        typer.Option("--grace-period", min=0, help="Pod termination grace period for the drain."),
    ] = None,
    delete_emptydir_data: Annotated[
        bool, typer.Option("--delete-emptydir-data", help="Drain pods that use emptyDir volumes.")
    ] = False,
    force_drain: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Pass kubeadm's overridable refusals, and drain pods no controller manages.",
        ),
    ] = False,
    disable_eviction: Annotated[
        bool,
        typer.Option(
            "--disable-eviction", help="Drain by deleting pods (bypasses PodDisruptionBudgets)."
        ),
    ] = False,
    drain_fallback: DrainFallbackOpt = None,
    pod_selector: PodSelectorOpt = None,
    harden_kubelet: Annotated[
        bool,
        typer.Option(
            "--harden-kubelet",
            help="Also turn off the kubelet's anonymous auth and read-only port and set Webhook "
            "authorization on each node (backup first, verified after).",
        ),
    ] = False,
    skip_etcd_snapshot: Annotated[
        bool,
        typer.Option(
            "--skip-etcd-snapshot",
            help="Do not snapshot etcd before the first kubeadm upgrade apply (by default "
            "the snapshot is copied beside the state file and its sha256 checked).",
        ),
    ] = False,
    patches: PatchesOpt = None,
    kubeadm_config: KubeadmConfigOpt = None,
    ignore_preflight_errors: IgnorePreflightOpt = None,
    etcd_upgrade: EtcdUpgradeOpt = None,
    certificate_renewal: CertRenewalOpt = None,
    no_prestage: Annotated[
        bool,
        typer.Option(
            "--no-prestage",
            help="Do not download packages and pull images on every node before the first "
            "drain (by default they are, so that nothing downloads while a node is drained).",
        ),
    ] = False,
    ready_timeout: Annotated[
        float | None,
        typer.Option(
            "--ready-timeout", min=1, help="Seconds to wait for a node (default: the playbook's)."
        ),
    ] = None,
    events: Annotated[
        Path | None, typer.Option("--events", help="Append run events here as JSON Lines.")
    ] = None,
    transcripts: Annotated[
        Path | None,
        typer.Option(
            "--transcripts", help="Directory of per-node transcripts (default: beside the state)."
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only failures.")] = False,
    detail: DetailOpt = False,
    validate_count: Annotated[
        int,
        typer.Option(
            "--validate-count",
            min=1,
            max=100,
            help="Before each node, the cluster health gates (nodes Ready, control-plane pods "
            "Ready, etcd healthy) must pass this many times in a row (5s apart).",
        ),
    ] = 1,
    break_lock: Annotated[
        bool, typer.Option("--break-lock", help="Take over the cluster Lease of a dead run.")
    ] = False,
    abandon: Annotated[
        bool,
        typer.Option(
            "--abandon", help="Drop the unfinished run recorded in the state and start anew."
        ),
    ] = False,
    accept_changes: Annotated[
        bool,
        typer.Option(
            "--accept-changes",
            help="Resume an unfinished run although the inventory or playbooks changed since "
            "it started (the run's stored steps run, not the changed ones).",
        ),
    ] = False,
    strategy: Annotated[
        Strategy, typer.Option(help="Worker strategy for multi-minor jumps (as for plan).")
    ] = Strategy.AUTO,
    # -- operator pauses (issue 14 item 1)
    canary: Annotated[
        int | None,
        typer.Option(
            "--canary",
            min=1,
            help="Upgrade the control plane and the first N workers, then pause (exit 0, run "
            "recorded as paused); the same command continues.",
        ),
    ] = None,
    pause_between: Annotated[
        str | None,
        typer.Option(
            "--pause-between",
            help="Before each node after the first: 'ask' (needs a terminal) or wait SECONDS.",
        ),
    ] = None,
    hold_uncordon: Annotated[
        bool,
        typer.Option(
            "--hold-uncordon",
            help="Before uncordoning each node, show its pods and events and ask (needs a "
            "terminal).",
        ),
    ] = False,
    playbooks: PlaybooksOpt = None,
    release_data: ReleaseDataOpt = None,
    allow_experimental: AllowExperimentalOpt = False,
    allow_rc: AllowRcOpt = False,
    allow_unsupported: AllowUnsupportedOpt = False,
    strict: StrictOpt = False,
    max_workers: MaxWorkersOpt = 32,
    notify: Annotated[
        list[str] | None,
        typer.Option(
            "--notify",
            metavar="URL",
            help="POST the run's events (start, node done, step failed, outside window, "
            "finished) as JSON to this webhook (repeatable; https, or http to loopback).",
        ),
    ] = None,
    window: Annotated[
        list[str] | None,
        typer.Option(
            "--window",
            metavar="'DAYS HH:MM-HH:MM [ZONE]'",
            help="Start nodes only inside this window, e.g. 'Sat 01:00-05:00' or "
            "'Mon-Fri 22:00-06:00 Europe/Berlin' (repeatable); outside, the run stops before "
            "its next node (exit 7) and says when the window opens.",
        ),
    ] = None,
    window_tz: Annotated[
        str | None,
        typer.Option("--window-tz", help="Time zone of --window times without one (UTC)."),
    ] = None,
    verbose: VerboseOpt = 0,
) -> None:
    """Upgrade the cluster: gather facts, plan, confirm, then run the plan node by node.

    The state file records every step; after a failure the same command resumes where the
    run stopped (a step that was interrupted is re-checked before it runs again).
    Exit codes: 0 done (or nothing to do), 1 a step failed, 2 bad input, 3 a blocker
    stands, 4/5 SSH/API unreachable, 6 locked, 7 outside every --window (no node
    started; the same command resumes), 130 interrupted or not confirmed.
    """
    _setup_logging(verbose)
    from upgrader.apply import ApplyIO, ApplyRequest
    from upgrader.apply import apply as run_apply
    from upgrader.errors import StepFailed
    from upgrader.execute.engine import EngineOptions
    from upgrader.execute.pauses import parse_pause_between, refuse_without_tty
    from upgrader.execute.progress import make_reporter
    from upgrader.planning import check_request
    from upgrader.redact import redact

    pause = parse_pause_between(pause_between)
    refuse_without_tty(pause, hold_uncordon, sys.stdin.isatty())
    target = _parse_target(to, release_data)
    req = ApplyRequest(
        inventory=inventory,
        kubeconfig=kubeconfig,
        known_hosts=known_hosts,
        plan=_plan_request(
            target=target,
            strategy=strategy,
            playbooks=playbooks,
            release_data=release_data,
            nodes=_node_names(
                nodes,
                _load_inventory(inventory, kubeconfig, known_hosts) if nodes is not None else None,
            ),
            force=force_drain,
            allow_experimental=allow_experimental,
            allow_rc=allow_rc,
            allow_unsupported=allow_unsupported,
            strict=strict,
            harden_kubelet=harden_kubelet,
            skip_etcd_snapshot=skip_etcd_snapshot,
            no_prestage=no_prestage,
            max_unavailable=max_unavailable,
            **_drain_flags(drain_fallback, pod_selector),
            **_worker_flags(
                selector, group_by, order_by, max_unavailable_per_group, max_unavailable
            ),
            kubeadm=_kubeadm_passthrough(
                _inventory_or_none(inventory, kubeconfig, known_hosts),
                patches,
                kubeadm_config,
                ignore_preflight_errors,
                etcd_upgrade,
                certificate_renewal,
            ),
        ),
        engine=EngineOptions(
            max_unavailable=max_unavailable,
            drain_timeout=drain_timeout,
            grace_period=grace_period,
            delete_emptydir_data=delete_emptydir_data,
            force=force_drain,
            disable_eviction=disable_eviction,
            ready_timeout=ready_timeout,
            canary=canary,
        ),
        pause_between=pause,
        hold_uncordon=hold_uncordon,
        state_path=state,
        transcripts=transcripts,
        events=events,
        yes=yes,
        break_lock=break_lock,
        abandon=abandon,
        accept_changes=accept_changes,
        max_workers=max_workers,
        validate_count=validate_count,
        detail=detail,
        notify=tuple(notify or ()),
        windows=tuple(window or ()),
        window_tz=window_tz,
    )
    check_request(req.plan)  # broken playbooks or release data: refused before any node is asked
    reporter = make_reporter(quiet=quiet)

    def show(text: str) -> None:
        if not quiet:
            typer.echo(text, nl=not text.endswith("\n"))

    def ask(question: str) -> bool:
        return typer.confirm(question, default=False)

    io = ApplyIO(
        show=show,
        warn=lambda m: typer.echo(f"warning: {redact(m)}", err=True),
        confirm=ask if sys.stdin.isatty() else None,
        reporter=reporter,
    )
    # SIGTERM stops the run like Ctrl-C: between two steps' API calls, recorded as interrupted
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        outcome = run_apply(req, io)
    except StepFailed as e:
        if e.hint is None:
            e.hint = (
                f"see `upgrader status -i {inventory}` and the node's transcript; "
                "the same command resumes the run"
            )
        raise
    finally:
        reporter.close()
    if outcome.status == "declined":
        raise typer.Abort()
    if outcome.status == "succeeded" and not quiet:
        typer.echo(
            f"upgrade to {target} finished (run {outcome.run_id}); "
            f"state: {outcome.state_path}; transcripts: {outcome.transcripts}"
        )


@app.command()
def status(
    inventory: InventoryFileOpt,
    kubeconfig: KubeconfigOpt = None,
    known_hosts: KnownHostsOpt = None,
    state: Annotated[
        Path | None, typer.Option("--state", help="State file (default: beside the inventory).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Show the recorded run: per node done / failed at which step (and why) / pending,
    where the transcripts are, and who holds the locks."""
    _setup_logging(verbose)
    from upgrader.status import status as run_status

    report = run_status(inventory, state, kubeconfig=kubeconfig, known_hosts=known_hosts)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        typer.echo(report.text(), nl=False)


COMMANDS_GROUP = "upgrader.commands"


def _mount_plugins() -> None:
    """Add the sub-apps other installed distributions declare in the ``upgrader.commands``
    entry-point group (``upgrader-lab`` adds ``upgrader lab``). The product imports none of
    them by name; one that fails to load is left out with a one-line warning."""
    from importlib.metadata import entry_points

    for ep in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        try:
            sub = ep.load()
        except Exception as exc:  # a broken plugin must not break the product's commands
            typer.echo(f"warning: {ep.value} ({ep.name}): not loaded: {exc}", err=True)
            continue
        if isinstance(sub, typer.Typer):
            app.add_typer(sub, name=ep.name)


_mount_plugins()


def main() -> None:
    """Console-script entry point: run the app, map typed errors to one line + exit code."""
    if os.environ.get("NO_COLOR"):
        os.environ.setdefault("TERM", "dumb")
    _safe_streams()
    try:
        rc = app(standalone_mode=False)
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except UpgraderError as e:
        from upgrader.redact import redact

        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        typer.echo(f"error: {redact(msg)}", err=True)
        if e.hint:
            typer.echo(redact(e.hint), err=True)
        if e.exit_code == ExitCode.INTERRUPTED:
            _exit_interrupted()
        sys.exit(int(e.exit_code))
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(int(ExitCode.INTERRUPTED))
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        _exit_interrupted()
    except Exception as e:  # click usage errors and the like
        parsed = _click_error(e)
        if parsed is None:
            raise
        code, line = parsed
        typer.echo(f"error: {line}", err=True)
        sys.exit(code)


def _exit_interrupted() -> NoReturn:
    """Exit 130 now, after Ctrl-C or SIGTERM has been recorded and reported: the exit hooks
    run (temporary credential files are removed), but threads still blocked in a network
    read-only call (a fact probe waiting for an SSH banner) are not waited for, as the
    interpreter's normal exit would (up to the connect timeout, 30 s)."""
    import atexit
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(int(ExitCode.INTERRUPTED))


def _click_error(e: BaseException) -> tuple[int, str] | None:
    """(exit code, one line) for a command-line parsing error, None for anything else.

    Matched by class name: typer may bundle its own copy of click (``typer._click``), whose
    exceptions are not ``click.exceptions`` classes."""
    names = {c.__name__ for c in type(e).__mro__}
    if "ClickException" not in names:
        return None
    fmt = getattr(e, "format_message", None)
    msg = " ".join(str(fmt() if callable(fmt) else e).split())
    ctx = getattr(e, "ctx", None)
    path = getattr(ctx, "command_path", None) if ctx is not None else None
    if "UsageError" in names:
        hint = f" (see `{path} --help`)" if path else ""
        return int(ExitCode.BAD_INPUT), f"{path + ': ' if path else ''}{msg}{hint}"
    return int(getattr(e, "exit_code", 1) or 1), msg
