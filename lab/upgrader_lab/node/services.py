"""The simulated ``systemctl``, ``kubelet``, ``kubectl`` (client side) and container runtimes.

Owns: ``systemctl daemon-reload|restart|start|stop|status|is-active|is-enabled`` for the
``kubelet`` and ``containerd`` units (a kubelet restart tells the API server the version of
the kubelet binary now installed, through ``/_lab/v1/nodes/NAME/kubelet-restart``);
``kubelet --version`` (a 1.35+ kubelet on a cgroup v1 node exits at start, KEP-5573, unless
its config sets ``failCgroupV1: false``); ``kubectl version --client [-o json|yaml]``;
``containerd|crio|dockerd --version``. (A kubeadm node has no etcdctl: etcd's tools are in
the etcd container, see :mod:`upgrader_lab.node.crictl`.)

Must not: import upgrader's production code.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

from upgrader_lab.node import args as argparse_
from upgrader_lab.node import runtimes, tree
from upgrader_lab.node.adminapi import Api, ApiError
from upgrader_lab.node.context import NodeContext

# Annotations only: importing typing costs every simulated tool call several ms of
# start-up (mypy and ruff read TYPE_CHECKING by name).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

UNITS = {
    "kubelet": "kubelet: The Kubernetes Node Agent",
    "containerd": "containerd container runtime",
}
KUSTOMIZE = "v5.0.4-0.20230601165947-6ce0bf390ce3"


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(text + "\n")


def _tool_version(ctx: NodeContext, tool: str) -> str:
    return os.environ.get("LAB_TOOL_VERSION") or ctx.installed_version(tool) or "v0.0.0"


# --------------------------------------------------------------------------- systemctl


def _unit(name: str) -> str | None:
    base = name[: -len(".service")] if name.endswith(".service") else name
    return base if base in UNITS else None


def _services(ctx: NodeContext) -> dict[str, Any]:
    data = ctx.read_json("services.json", {})
    for unit in UNITS:
        data.setdefault(unit, {"active": True, "since": time.time() - 3600, "pid": 4242})
    return dict(data)


# What a 1.35+ kubelet logs when it exits at start on a cgroup v1 host (KEP-5573: the
# kubelet config's failCgroupV1 defaults to true from 1.35; pkg/kubelet/apis/config/validation).
CGROUP_V1_REFUSAL = (
    '"command failed" err="failed to validate kubelet configuration, error: kubelet is '
    "configured to not run on a host using cgroup v1. cgroup v1 support is unsupported and "
    'will be removed in a future release, path: &TypeMeta{Kind:,APIVersion:,}"'
)


def kubelet_start_error(ctx: NodeContext, version: str) -> str | None:
    """Why the kubelet at ``version`` exits as soon as it starts on this node, or None."""
    if ctx.info.get("cgroup") != "v1":
        return None
    try:
        minor = int(version.lstrip("v").split(".")[1])
    except (IndexError, ValueError):
        return None
    if minor < 35:
        return None
    try:
        config = ctx.path("/var/lib/kubelet/config.yaml").read_text()
    except OSError:
        config = ""
    if re.search(r"^failCgroupV1:\s*false\s*$", config, re.MULTILINE):
        return None
    return CGROUP_V1_REFUSAL


def _restart_kubelet(ctx: NodeContext) -> tuple[int, str | None]:
    """(exit status of systemctl, why the new kubelet process exits at once or None)."""
    version = ctx.installed_version("kubelet")
    if version is None:
        _err("Job for kubelet.service failed because the control process exited with error code.")
        _err(
            'See "systemctl status kubelet.service" and "journalctl -xeu kubelet.service" '
            "for details."
        )
        return 1, None
    failure = kubelet_start_error(ctx, version)
    try:
        Api(ctx.lab_dir).kubelet_restart(ctx.name, version, starts=failure is None)
    except ApiError as exc:
        _err(f"upgrader lab: the kubelet restarted but the lab's API server was not told: {exc}")
        return 1, None
    return 0, failure


def _debian_unit_changed(ctx: NodeContext) -> bool:
    """The kubelet unit or a drop-in (as the real dpkg left them) differs from what the
    last ``systemctl daemon-reload`` loaded: systemd compares the files' mtimes."""
    loaded = ctx.read_json("daemon-reload.json", None)
    return loaded is not None and bool(loaded != tree.kubelet_unit_mtimes(ctx.root))


def systemctl(args: list[str], ctx: NodeContext) -> int:
    words = [a for a in args if not a.startswith("-")]
    quiet = "-q" in args or "--quiet" in args
    if not words:
        _err("systemctl: this lab simulates unit commands only (e.g. systemctl status kubelet)")
        return 1
    op, names = words[0], words[1:]
    db = ctx.packages()
    if ctx.os_family == "debian":
        db["unit_changed"] = _debian_unit_changed(ctx)
    if op == "daemon-reload":
        if ctx.os_family == "debian":
            ctx.write_json("daemon-reload.json", tree.kubelet_unit_mtimes(ctx.root))
        elif db.get("unit_changed"):
            db["unit_changed"] = False
            ctx.save_packages(db)
        return 0
    units: list[str] = []
    for name in names:
        unit = _unit(name)
        if unit is None:
            return _no_such_unit(op, name, quiet)
        units.append(unit)
    services = _services(ctx)
    if op in ("restart", "start", "stop", "reload-or-restart", "try-restart"):
        return _start_stop(ctx, op, units, services, bool(db.get("unit_changed")))
    if op == "is-active":
        active = all(services[u]["active"] for u in units)
        if not quiet:
            for u in units:
                s = services[u]
                _out("active" if s["active"] else "activating" if s.get("failed") else "inactive")
        return 0 if active else 3
    if op == "is-enabled":
        if not quiet:
            for _ in units:
                _out("enabled")
        return 0
    if op in ("enable", "disable"):
        return 0
    if op == "status":
        return _status(ctx, units, services)
    _err(f"Unknown command verb {op}.")
    return 1


def _no_such_unit(op: str, name: str, quiet: bool) -> int:
    """What systemctl prints and returns for a unit the node does not have."""
    base = name if name.endswith(".service") else f"{name}.service"
    if op in ("is-active", "is-enabled"):
        if not quiet:
            _out("inactive" if op == "is-active" else "not-found")
        return 3 if op == "is-active" else 4
    if op == "status":
        _err(f"Unit {base} could not be found.")
        return 4
    _err(f"Failed to {op} {base}: Unit {base} not found.")
    return 5


def _start_stop(
    ctx: NodeContext,
    op: str,
    units: list[str],
    services: dict[str, Any],
    unit_changed: bool,
) -> int:
    """``systemctl start|stop|restart|...``: each unit's new state in ``services.json``."""
    for unit in units:
        if unit == "kubelet" and unit_changed and op != "stop":
            _err(
                "Warning: The unit file, source configuration file or drop-ins of "
                "kubelet.service changed on disk. Run 'systemctl daemon-reload' to reload "
                "units."
            )
        if op == "stop":
            services[unit] = {"active": False, "since": time.time(), "pid": 0}
            continue
        if op == "try-restart" and not services[unit]["active"]:
            continue
        if unit == "kubelet":
            code, failure = _restart_kubelet(ctx)
            if code:
                return code
            if failure is not None:  # Type=simple: started, exited, Restart=always
                services[unit] = {"active": False, "since": time.time(), "pid": 0}
                services[unit]["failed"] = failure
                continue
        services[unit] = {
            "active": True,
            "since": time.time(),
            "pid": 4242 + int(time.time()) % 50000,
        }
    ctx.write_json("services.json", services)
    return 0


def _status(ctx: NodeContext, units: list[str], services: dict[str, Any]) -> int:
    """``systemctl status``: systemd's layout; 3 when a unit is not running."""
    code = 0
    for u in units:
        s = services[u]
        since = time.strftime("%a %Y-%m-%d %H:%M:%S UTC", time.gmtime(float(s["since"])))
        ago = int(time.time() - float(s["since"]))
        dot = "●" if s["active"] else "○"
        _out(f"{dot} {u}.service - {UNITS[u]}")
        _out(f"     Loaded: loaded (/lib/systemd/system/{u}.service; enabled; preset: enabled)")
        if u == "kubelet":
            _out("    Drop-In: /usr/lib/systemd/system/kubelet.service.d")
            _out("             └─10-kubeadm.conf")
        if s["active"]:
            _out(f"     Active: active (running) since {since}; {ago}s ago")
            _out(f"   Main PID: {s['pid']} ({u})")
        elif s.get("failed"):
            _out(
                "     Active: activating (auto-restart) (Result: exit-code) since "
                f"{since}; {ago}s ago"
            )
            _out(
                f"    Process: {4242 + int(float(s['since'])) % 50000} "
                "ExecStart=/usr/bin/kubelet (code=exited, status=1/FAILURE)"
            )
            code = 3
        else:
            _out(f"     Active: inactive (dead) since {since}; {ago}s ago")
            code = 3
        _out(
            "       Docs: https://kubernetes.io/docs/"
            if u == "kubelet"
            else "       Docs: https://containerd.io"
        )
        if s.get("failed"):  # the unit's last journal line, as systemctl status shows it
            stamp = time.strftime("%b %d %H:%M:%S", time.gmtime(float(s["since"])))
            _out()
            _out(f"{stamp} {ctx.name} kubelet[{s['pid'] or 4242}]: E run.go:72] {s['failed']}")
        _out()
    return code


# --------------------------------------------------------------------------- kubelet / kubectl


def kubelet(args: list[str], ctx: NodeContext) -> int:
    if "--version" in args or "version" in args:
        _out(f"Kubernetes {_tool_version(ctx, 'kubelet')}")
        return 0
    _err("kubelet: upgrader lab: the simulated kubelet runs as a service; try kubelet --version")
    return 1


def _client_info(version: str) -> dict[str, str]:
    major, minor = version.lstrip("v").split(".")[:2]
    return {
        "major": major,
        "minor": minor,
        "gitVersion": version,
        "gitCommit": "bae2c62678db2b5053817bc97181fcc2e8388103",
        "gitTreeState": "clean",
        "buildDate": "2023-11-15T16:58:22Z",
        "goVersion": "go1.20.11",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def kubectl(args: list[str], ctx: NodeContext) -> int:
    p = argparse_.parse(
        args,
        {
            "-o",
            "--output",
            "--kubeconfig",
            "--context",
            "-n",
            "--namespace",
            "-s",
            "--server",
            "--request-timeout",
            "-v",
            "--v",
        },
        {"--client", "--short"},
        {"--output": "-o", "--namespace": "-n", "--server": "-s", "--v": "-v"},
    )
    version = _tool_version(ctx, "kubectl")
    wants_server = not p.has("--client") and bool(
        p.get("--kubeconfig") or os.environ.get("KUBECONFIG")
    )
    if p.positional[:1] == ["version"] and wants_server:
        return _host_kubectl(args, ctx)  # the server's version needs the cluster
    if p.positional[:1] == ["version"]:
        fmt = p.get("-o")
        info = _client_info(version)
        if fmt == "json":
            doc: dict[str, Any] = {"clientVersion": info, "kustomizeVersion": KUSTOMIZE}
            _out(json.dumps(doc, indent=2))
        elif fmt == "yaml":
            _out("clientVersion:")
            for k, v in info.items():
                _out(f'  {k}: "{v}"' if k in ("major", "minor") else f"  {k}: {v}")
            _out(f"kustomizeVersion: {KUSTOMIZE}")
        else:
            _out(f"Client Version: {version}")
            _out(f"Kustomize Version: {KUSTOMIZE}")
        if p.has("--client"):
            return 0
        _err(
            "The connection to the server localhost:8080 was refused - did you specify "
            "the right host or port?"
        )
        return 1
    return _host_kubectl(args, ctx)


def _host_kubectl(args: list[str], ctx: NodeContext) -> int:
    """Anything but ``version``: the host's real kubectl client does it (a lab node has no
    kubectl of its own beyond the simulated binary), with node paths mapped in path mode."""
    import subprocess

    try:
        lab = json.loads((ctx.lab_dir / "lab.json").read_text())
        host = str(lab.get("host_kubectl") or "")
    except (OSError, ValueError):
        host = ""
    if not host or not os.access(host, os.X_OK):
        _err(
            "error: upgrader lab: no kubectl client on this machine to run "
            f"`kubectl {' '.join(args[:2])}` with; only `kubectl version --client` is simulated"
        )
        return 1
    mapped = [_map_path(ctx, a) for a in args]
    env = dict(os.environ)
    if env.get("KUBECONFIG"):
        env["KUBECONFIG"] = os.pathsep.join(
            str(_map_file(ctx, p)) for p in env["KUBECONFIG"].split(os.pathsep)
        )
    return subprocess.run([host, *mapped], env=env, check=False).returncode


def _map_file(ctx: NodeContext, path: str) -> str:
    if ctx.root == Path("/") or not path.startswith("/"):
        return path
    inside = ctx.path(path)
    return str(inside) if inside.exists() else path


def _map_path(ctx: NodeContext, arg: str) -> str:
    for flag in (
        "--kubeconfig=",
        "--certificate-authority=",
        "--client-certificate=",
        "--client-key=",
        "--filename=",
        "-f=",
    ):
        if arg.startswith(flag):
            return flag + _map_file(ctx, arg[len(flag) :])
    return _map_file(ctx, arg) if arg.startswith("/etc/") else arg


# --------------------------------------------------------------------------- runtimes


def runtime(tool: str, args: list[str], ctx: NodeContext) -> int:
    declared = str(ctx.info.get("runtime") or "")
    version = declared.split("://", 1)[1] if "://" in declared else "1.7.2"
    if "--version" in args or "-v" in args or args[:1] == ["version"]:
        _out(runtimes.version_text(tool, version))
        return 0
    _err(f"{tool}: upgrader lab: the container runtime runs as a service; try {tool} --version")
    return 1


def main(tool: str, args: list[str], ctx: NodeContext) -> int:
    if tool == "systemctl":
        return systemctl(args, ctx)
    if tool == "kubelet":
        return kubelet(args, ctx)
    if tool == "kubectl":
        return kubectl(args, ctx)
    return runtime(tool, args, ctx)
