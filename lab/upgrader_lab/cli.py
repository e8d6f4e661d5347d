"""``upgrader lab up|down|status|restart-node|faults``: the typer sub-app over
:mod:`upgrader_lab.runner`, :mod:`upgrader_lab.reboot` and :mod:`upgrader_lab.faults`.

Owns the lab commands' flags, their one-line errors and exit codes (0 ok, 1 the lab
failed to start/stop, 2 bad input) and the short summaries they print. The main CLI
mounts ``lab_app`` as ``upgrader lab``.

Must not: hold lab logic (the runner does), or print a traceback for an expected error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer

from upgrader.errors import ConfigError, UpgraderError

P = ParamSpec("P")
R = TypeVar("R")


def _group(name: str, help_text: str) -> typer.Typer:
    """A group of lab commands: help without arguments, no completion, no pretty tracebacks."""
    return typer.Typer(
        name=name,
        help=help_text,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,  # plain click help: option names never cut at 80 columns
    )


lab_app = _group(
    "lab",
    "A simulated kubeadm cluster on this machine (one loopback address and an OpenSSH "
    "sshd per node, a Kubernetes API over HTTPS) to try upgrader without VMs.",
)

DirOpt = Annotated[
    Path,
    typer.Option("--dir", "-d", help="The lab directory (created by `up`).", show_default=False),
]

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _fail(exc: UpgraderError) -> typer.Exit:
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(int(exc.exit_code))


def _run(action: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """``action(*args, **kwargs)``; an expected error ends the command with its one line
    and exit code."""
    try:
        return action(*args, **kwargs)
    except UpgraderError as exc:
        raise _fail(exc) from None


def _echo_json(doc: Any) -> None:
    typer.echo(json.dumps(doc, indent=2))


@lab_app.command("up")
def up_cmd(
    lab_dir: DirOpt,
    spec_file: Annotated[
        Path | None, typer.Option("--spec", help="Lab spec YAML (nodes, workloads, faults).")
    ] = None,
    control_planes: Annotated[
        int | None, typer.Option("--control-planes", help="Control-plane nodes (default 1).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Worker nodes (default 2).")
    ] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="Cluster version, e.g. v1.27.8.")
    ] = None,
    flavor: Annotated[
        str | None,
        typer.Option(
            "--flavor",
            help="Node flavor for every node that names none: debian (default), rhel (dnf4), "
            "fedora (dnf5), kubespray (binaries in /usr/local/bin).",
        ),
    ] = None,
    no_api: Annotated[
        bool, typer.Option("--no-api", help="Start the nodes only, without the API server.")
    ] = False,
    mount: Annotated[
        str,
        typer.Option(
            "--mount",
            help="auto: give each node command a private overlay of /etc, /usr/bin, /var/lib "
            "where the kernel allows it; path: only put the node's tools first on PATH.",
        ),
    ] = "auto",
) -> None:
    """Start a lab in DIR (build it on first use; later starts reuse its state)."""
    from upgrader_lab import runner
    from upgrader_lab import spec as labspec

    try:
        flags = control_planes is not None or workers is not None or version is not None
        if spec_file is not None and flags:
            raise ConfigError("--spec excludes --control-planes, --workers and --version")
        spec: labspec.LabSpec | None = None
        if spec_file is not None:
            spec = labspec.load_spec(spec_file)
        elif flags:
            spec = labspec.from_flags(
                control_planes if control_planes is not None else 1,
                workers if workers is not None else 2,
                version,
                flavor,
            )
        elif flavor is not None:
            spec = labspec.from_flags(flavor=flavor)
        if spec is not None and flavor is not None:
            spec = labspec.with_flavor(spec, flavor)
        result = runner.up(lab_dir, spec, start_api=not no_api, mount=mount)
    except runner.LabRunning as exc:
        typer.echo(str(exc))
        return
    except UpgraderError as exc:
        raise _fail(exc) from None
    _print_summary(result)


def _print_summary(result: Any) -> None:
    lab = result.lab
    d = result.lab_dir
    nodes = lab["nodes"]
    cps = [n for n, v in nodes.items() if v["role"] == "control-plane"]
    verb = "built and started" if result.fresh else "started"
    typer.echo(f"lab {verb} in {d}: {len(nodes)} nodes ({len(cps)} control-plane)")
    if lab.get("api"):
        typer.echo(f"  api:       {lab['api']['url']}   kubeconfig {d / 'kubeconfig'}")
    typer.echo(f"  ssh:       port {lab['ssh']['port']} on {_span(nodes)}, key {d / 'id_ed25519'}")
    if lab.get("pkgserver"):
        url = str(lab["pkgserver"]["url_template"]).replace("{minor}", "<minor>")
        typer.echo(f"  packages:  {url} (signed apt repositories)")
    typer.echo(f"  mount:     {lab['mount']['mode']} ({lab['mount']['reason']})")
    typer.echo(f"  inventory: {d / 'inventory.yaml'}")
    sudo = lab.get("sudo") or {}
    if sudo.get("mode") == "real":
        how = "with a password" if sudo.get("password") else "passwordless"
        typer.echo(f"  sudo:      {sudo['user']} reaches root through the real sudo ({how})")
        if sudo.get("password_env"):
            typer.echo(
                f'             export {sudo["password_env"]}="$(cat {sudo["password_file"]})"'
            )
    for w in result.warnings:
        typer.echo(f"  warning:   {w}")
    first = next(iter(nodes.values()))
    typer.echo("next:")
    typer.echo(
        f"  ssh -i {d / 'id_ed25519'} -o UserKnownHostsFile={d / 'known_hosts'} "
        f"-p {lab['ssh']['port']} {lab['ssh']['user']}@{first['address']} kubeadm version -o short"
    )
    if lab.get("api"):
        typer.echo(f"  kubectl --kubeconfig {d / 'kubeconfig'} get nodes")
    typer.echo(f"  upgrader plan -i {d / 'inventory.yaml'} --to <version>")
    typer.echo(f"  upgrader lab down --dir {d}")


def _span(nodes: dict[str, Any]) -> str:
    addrs = [v["address"] for v in nodes.values()]
    return addrs[0] if len(addrs) == 1 else f"{addrs[0]}..{addrs[-1]}"


@lab_app.command("down")
def down_cmd(
    lab_dir: DirOpt,
    purge: Annotated[bool, typer.Option("--purge", help="Also delete the lab directory.")] = False,
) -> None:
    """Stop every process the lab started; keep DIR (or delete it with --purge)."""
    from upgrader_lab import runner

    result = _run(runner.down, lab_dir, purge=purge)
    if result.left:
        typer.echo(f"error: processes still alive: {result.left}", err=True)
        raise typer.Exit(1)
    if result.listening:
        typer.echo(f"error: still listening: {', '.join(result.listening)}", err=True)
        raise typer.Exit(1)
    what = f"stopped {len(result.stopped)} processes" if result.stopped else "nothing was running"
    typer.echo(f"lab in {lab_dir}: {what}; nothing listens on its ports")
    if result.purged:
        typer.echo(f"removed {lab_dir}")


@lab_app.command("status")
def status_cmd(lab_dir: DirOpt, as_json: JsonOpt = False) -> None:
    """Say what runs. Exit 0 when the whole lab runs, 1 when it is stopped or degraded."""
    from upgrader_lab import runner

    st = _run(runner.status, lab_dir)
    if as_json:
        _echo_json(st)
    else:
        s, a, n, m = st["sshd"], st["apiserver"], st["nodes"], st["mount"]
        typer.echo(f"lab {st['dir']}: {st['state']}")
        typer.echo(
            f"  sshd:      {len(s['pids'])}/{s['expected']} running {s['pids']}, port {s['port']}, "
            f"{s['answering']}/{n['total']} node addresses answer"
        )
        if a["configured"]:
            ready = "ready" if a["ready"] else "not answering"
            typer.echo(f"  apiserver: {a['pids'] or 'not running'} {a['url'] or ''} {ready}")
        else:
            typer.echo("  apiserver: not started (--no-api)")
        pk = st.get("pkgserver") or {}
        if pk.get("port"):
            typer.echo(f"  packages:  {pk['pids'] or 'not running'} port {pk['port']}")
        cur = st.get("current") or {}
        kubelets: dict[str, list[str]] = {}
        for node, v in (cur.get("kubelets") or {}).items():
            kubelets.setdefault(v, []).append(node)
        now = cur.get("cluster") or st["version"]
        started = "" if now == st["version"] else f" (the spec started it at {st['version']})"
        typer.echo(
            f"  nodes:     {n['total']} ({n['control_planes']} control-plane, "
            f"{n['workers']} worker), cluster {now}{started}"
        )
        for v, names in sorted(kubelets.items()):
            typer.echo(f"  kubelet:   {v} on {', '.join(names)}")
        if m:
            typer.echo(f"  mount:     {m.get('mode')} ({m.get('reason')})")
    if st["state"] != "running":
        raise typer.Exit(1)


@lab_app.command("restart-node")
def restart_node_cmd(
    node: Annotated[str, typer.Argument(help="The node to restart (its name in the lab).")],
    lab_dir: DirOpt,
    down_for: Annotated[
        float,
        typer.Option("--down-for", help="Seconds the node stays down before it boots again."),
    ] = 5.0,
) -> None:
    """Reboot one node of the running lab: its SSH sessions drop and its address refuses
    SSH, its kubelet stops (node NotReady at once, its pods not Ready); after --down-for
    seconds sshd accepts again (same port and host key) and the kubelet starts at the
    version installed on the node, Ready after the lab's kubelet_ready delay. Exit 0 when
    the node is back, 1 when the lab does not run or the restart failed, 2 for bad input,
    130 when interrupted (Ctrl-C or SIGTERM: the node comes back at once)."""
    import signal

    from upgrader_lab import reboot

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # like Ctrl-C: the node still comes back
    try:
        r = reboot.restart_node(lab_dir, node, down_for=down_for)
    except UpgraderError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        typer.echo(f"error: interrupted: {node} was brought back up at once", err=True)
        raise typer.Exit(130) from None
    kubelet = (
        f"kubelet {r.kubelet_version} started, Ready in about {r.ready_after:g}s"
        if r.kubelet_starts and r.ready_after is not None
        else f"kubelet {r.kubelet_version} started"
        if r.kubelet_starts
        else f"kubelet {r.kubelet_version} exits at start: the node stays NotReady"
    )
    typer.echo(
        f"lab {lab_dir}: restarted {r.node} ({r.address}): down {r.down_for:g}s, "
        f"{r.sessions_dropped} SSH session(s) dropped; sshd answers again; {kubelet}"
    )
    for w in r.warnings:
        typer.echo(f"  warning: {w}")


faults_app = _group(
    "faults", "The spec's injected faults: how often each has fired, and resetting the counters."
)
lab_app.add_typer(faults_app)


@faults_app.command("list")
def faults_list_cmd(lab_dir: DirOpt, as_json: JsonOpt = False) -> None:
    """List every fault of the lab's spec with how often it has fired (of its `times`)."""
    from upgrader_lab import faults

    states = _run(faults.list_faults, lab_dir)
    if as_json:
        _echo_json([s.to_dict() for s in states])
        return
    if not states:
        typer.echo(f"lab {lab_dir}: the spec has no faults")
        return
    for s in states:
        typer.echo(
            f"faults[{s.index}]  {s.where:<12} fired {s.fired}/{s.times}  {s.effect:<18} {s.what}"
        )


@faults_app.command("clear")
def faults_clear_cmd(lab_dir: DirOpt) -> None:
    """Reset every fault counter (nodes' faults.json and the API server's): each fault fires
    its `times` again. Works while the lab runs or when it is stopped."""
    from upgrader_lab import faults

    cleared = _run(faults.clear_faults, lab_dir)
    fired = sum(sum(c.values()) for c in cleared.nodes.values()) + sum(cleared.api.values())
    where = f"{len(cleared.nodes)} nodes"
    if cleared.api_where != "none":
        where += f" and the {cleared.api_where}"
    typer.echo(f"lab {lab_dir}: cleared the fault counters of {where} ({fired} firings reset)")
