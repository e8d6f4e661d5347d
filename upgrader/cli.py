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
from upgrader.cli_options import (
    Access,
    ApplyDrain,
    ApplyHardenOpt,
    ApplyNoPrestageOpt,
    ApplySkipSnapshotOpt,
    ApplyStateOpt,
    ApplyStrategyOpt,
    DetailOpt,
    DrainFlags,
    FactsFileOpt,
    FactsMaxWorkersOpt,
    FactsOutputOpt,
    Gates,
    InventoryFileOpt,
    InventoryOpt,
    JsonPlanOpt,
    JsonStatusOpt,
    KubeadmFlags,
    MaxUnavailableOpt,
    MaxWorkersOpt,
    NotifyOpt,
    Pauses,
    PlanDisableEvictionOpt,
    PlanEmptyDirOpt,
    PlanForceOpt,
    PlanHardenOpt,
    PlanNoPrestageOpt,
    PlanSkipSnapshotOpt,
    PlanStrategyOpt,
    QuietOpt,
    ReadyTimeoutOpt,
    Records,
    Resume,
    Sources,
    StatusStateOpt,
    TargetOpt,
    ValidateCountOpt,
    VerboseOpt,
    Windows,
    WorkerFlags,
    YesOpt,
    fields_of,
    grouped,
)
from upgrader.core.vocab import Strategy
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


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _gather(inv: Any, max_workers: int) -> Any:
    """Facts over a private SSH pool and API client (a bad kubeconfig: a ConfigError
    before any node is contacted)."""
    from upgrader.gather import gather_facts

    return gather_facts(inv, max_workers=max_workers)


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
    target: Any,
    strategy: Strategy,
    flags: tuple[Sources, WorkerFlags, Gates, DrainFlags, KubeadmFlags],
    *,
    inv: Any | None,
    kubeadm_inv: Any | None,
    force: bool,
    harden_kubelet: bool,
    skip_etcd_snapshot: bool,
    no_prestage: bool,
    max_unavailable: int = 1,
    **command_only: Any,
) -> Any:
    """The ``PlanRequest`` of the options `plan` and `apply` share (``command_only``: the
    fields only one of them sets), each group checked before any node is contacted:
    ``--nodes`` against ``inv``, the kubeadm options over ``kubeadm_inv``'s section."""
    from upgrader.planning import PlanRequest

    sources, workers, gates, drain, kubeadm = flags
    nodes = workers.node_names(inv)
    drain = drain.checked()
    workers.check(max_unavailable)
    return PlanRequest(
        target=target,
        strategy=strategy.value,
        nodes=nodes,
        overrides=gates.overrides(force),
        strict=gates.strict,
        today=date.today(),
        max_unavailable=max_unavailable,
        harden_kubelet=harden_kubelet,
        etcd_snapshot=not skip_etcd_snapshot,
        prestage=not no_prestage,
        kubeadm=kubeadm.passthrough(kubeadm_inv),
        **fields_of(sources),
        **fields_of(workers, leave=("nodes",)),
        **fields_of(drain),
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
@grouped
def facts(
    inventory: InventoryFileOpt,
    access: Access,
    output: FactsOutputOpt = None,
    max_workers: FactsMaxWorkersOpt = 32,
    verbose: VerboseOpt = 0,
) -> None:
    """Gather facts (package and binary versions over SSH, cluster state over the API) as JSON.

    Saved facts can be planned offline: `upgrader plan --facts FILE --to vX.Y.Z`.
    """
    _setup_logging(verbose)
    from upgrader import safefile

    inv = access.inventory(inventory)
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
@grouped
def plan(
    to: TargetOpt,
    *,
    inventory: InventoryOpt = None,
    access: Access,
    facts_file: FactsFileOpt = None,
    as_json: JsonPlanOpt = False,
    detail: DetailOpt = False,
    strategy: PlanStrategyOpt = Strategy.AUTO,
    sources: Sources,
    workers: WorkerFlags,
    force: PlanForceOpt = False,
    gates: Gates,
    harden_kubelet: PlanHardenOpt = False,
    skip_etcd_snapshot: PlanSkipSnapshotOpt = False,
    kubeadm: KubeadmFlags,
    no_prestage: PlanNoPrestageOpt = False,
    delete_emptydir_data: PlanEmptyDirOpt = False,
    disable_eviction: PlanDisableEvictionOpt = False,
    drain: DrainFlags,
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
    target = _parse_target(to, sources.release_data)
    inv = access.inventory(inventory) if inventory is not None else None
    req = _plan_request(
        target,
        strategy,
        (sources, workers, gates, drain, kubeadm),
        inv=inv,
        kubeadm_inv=inv,
        force=force,
        harden_kubelet=harden_kubelet,
        skip_etcd_snapshot=skip_etcd_snapshot,
        no_prestage=no_prestage,
        delete_emptydir_data=delete_emptydir_data,
        disable_eviction=disable_eviction,
    )
    check_request(req)  # broken playbooks or release data: refused before any node is asked
    if facts_file is not None:
        f, pre = _load_facts_file(facts_file), None
    else:
        assert inv is not None
        f, pre = _live_facts(inv, max_workers, target, disable_eviction, as_json)
    p = make_plan(f, req, inv, preflight=pre)
    _show_plan(p, as_json, detail)
    if p.blockers:
        raise typer.Exit(int(refusal_exit_code(f.code for f in p.blockers)))


def _live_facts(
    inv: Any, max_workers: int, target: Any, disable_eviction: bool, as_json: bool
) -> tuple[Any, Any]:
    """Facts and preflight inputs gathered live, after saying (on stderr with --json, so
    stdout stays one document) that the kubeconfig runs an exec plugin."""
    from upgrader.kube.client import exec_plugin_notice

    notice = exec_plugin_notice(inv.kubeconfig_path(), inv.kubeconfig_context)
    if notice is not None:  # said before it runs
        typer.echo(notice, err=as_json)
    return _gather_with_preflight(inv, max_workers, target, disable_eviction)


def _show_plan(p: Any, as_json: bool, detail: bool) -> None:
    if as_json:
        _echo_json(p.to_dict())
    elif detail:
        from upgrader.core.render import render_text

        typer.echo(render_text(p), nl=False)
    else:
        from upgrader.core.render_brief import render_brief

        typer.echo(render_brief(p), nl=False)


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
@grouped
def apply(
    to: TargetOpt,
    inventory: InventoryFileOpt,
    *,
    access: Access,
    yes: YesOpt = False,
    state: ApplyStateOpt = None,
    max_unavailable: MaxUnavailableOpt = 1,
    workers: WorkerFlags,
    drain_how: ApplyDrain,
    drain: DrainFlags,
    harden_kubelet: ApplyHardenOpt = False,
    skip_etcd_snapshot: ApplySkipSnapshotOpt = False,
    kubeadm: KubeadmFlags,
    no_prestage: ApplyNoPrestageOpt = False,
    ready_timeout: ReadyTimeoutOpt = None,
    records: Records,
    quiet: QuietOpt = False,
    detail: DetailOpt = False,
    validate_count: ValidateCountOpt = 1,
    resume: Resume,
    strategy: ApplyStrategyOpt = Strategy.AUTO,
    pauses: Pauses,
    sources: Sources,
    gates: Gates,
    max_workers: MaxWorkersOpt = 32,
    notify: NotifyOpt = None,
    windows: Windows,
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
    from upgrader.apply import ApplyRequest

    pause = pauses.pause(sys.stdin.isatty())
    target = _parse_target(to, sources.release_data)
    req = ApplyRequest(
        inventory=inventory,
        **fields_of(access),
        plan=_plan_request(
            target,
            strategy,
            (sources, workers, gates, drain, kubeadm),
            inv=access.inventory(inventory) if workers.nodes is not None else None,
            kubeadm_inv=access.inventory_or_none(inventory),
            force=drain_how.force,
            harden_kubelet=harden_kubelet,
            skip_etcd_snapshot=skip_etcd_snapshot,
            no_prestage=no_prestage,
            max_unavailable=max_unavailable,
        ),
        engine=drain_how.engine(max_unavailable, ready_timeout, pauses),
        pause_between=pause,
        hold_uncordon=pauses.hold_uncordon,
        state_path=state,
        **fields_of(records),
        yes=yes,
        **fields_of(resume),
        max_workers=max_workers,
        validate_count=validate_count,
        detail=detail,
        notify=tuple(notify or ()),
        windows=tuple(windows.window or ()),
        window_tz=windows.window_tz,
    )
    _run_apply(req, quiet, target)


def _run_apply(req: Any, quiet: bool, target: Any) -> None:
    """Run ``req`` talking to the terminal; SIGTERM stops it like Ctrl-C (between two
    steps' API calls, recorded as interrupted)."""
    from upgrader.apply import ApplyIO
    from upgrader.apply import apply as run_apply
    from upgrader.errors import StepFailed
    from upgrader.execute.progress import make_reporter
    from upgrader.planning import check_request
    from upgrader.redact import redact

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
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        outcome = run_apply(req, io)
    except StepFailed as e:
        if e.hint is None:
            e.hint = (
                f"see `upgrader status -i {req.inventory}` and the node's transcript; "
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
@grouped
def status(
    inventory: InventoryFileOpt,
    access: Access,
    state: StatusStateOpt = None,
    as_json: JsonStatusOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Show the recorded run: per node done / failed at which step (and why) / pending,
    where the transcripts are, and who holds the locks."""
    _setup_logging(verbose)
    from upgrader.status import status as run_status

    report = run_status(
        inventory, state, kubeconfig=access.kubeconfig, known_hosts=access.known_hosts
    )
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
