"""``upgrader lab restart-node NAME``: one node of a running lab goes through a reboot.

Owns what a reboot does to a lab node, in order:

1. **Down.** The node's address stops accepting SSH (its sshd listener is re-read without
   that address, by ``SIGHUP`` as sshd does; a listener serving that address alone is
   stopped), every SSH session open on the node is killed with everything it ran (the
   client sees the channel close without an exit status), and the lab's API server hears
   that the node's kubelet stopped: the node is ``Ready=Unknown`` at once (a real
   control plane waits ``node-monitor-grace-period``, 40-50 s, before saying so: the lab
   shows at once what a real cluster shows after that grace) and every running pod on the
   node is ``Ready=False`` until the node is Ready again.
2. ``down_for`` seconds pass.
3. **Up.** systemd's view of the units is the one on disk (a reboot reloads them), the
   kubelet and the container runtime are active; the kubelet starts at the version of the
   binary installed on the node (a package upgraded without a restart comes back at the
   new version) and the node is Ready after the lab's ``delays.kubelet_ready`` (or stays
   NotReady when that kubelet exits at start, e.g. 1.35+ on cgroup v1); sshd accepts on the
   node's address again (same port, same host key: its config is the one ``lab up`` wrote).

Must not: touch another node's sessions or files, change the lab's port or keys, or
leave the node's address out of sshd's config when it returns (even when a step fails
or the command is interrupted: the node boots and its address is put back in a
``finally``). Restarts of one lab run one at a time (``DIR/sshd/restart.lock``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from upgrader.errors import ConfigError
from upgrader_lab import runner, sshd
from upgrader_lab.hostproc import proc_files
from upgrader_lab.runner import LabError

ANSWER_TIMEOUT = 20.0  # seconds for sshd to stop/start answering on the node's address


@dataclass
class RestartResult:
    node: str
    address: str
    down_for: float
    sessions_dropped: int
    kubelet_version: str | None
    kubelet_starts: bool
    ready_after: float | None  # seconds after the return until the API says Ready
    warnings: list[str] = field(default_factory=list)


def _node_record(lab_dir: Path, node: str) -> tuple[dict[str, Any], dict[str, Any]]:
    lab = runner.read_json(lab_dir / "lab.json")
    if runner.read_json(lab_dir / "spec.json") is None or lab is None:
        raise ConfigError(f"{lab_dir}: not a lab directory (no spec.json or lab.json)")
    nodes = lab.get("nodes") or {}
    if node not in nodes:
        known = ", ".join(sorted(nodes)) or "none"
        raise ConfigError(f"node {node!r}: not a node of the lab in {lab_dir} (nodes: {known})")
    return lab, dict(nodes[node])


def _listener(lab_dir: Path, lab: dict[str, Any], address: str) -> tuple[Path, int | None]:
    """The sshd config that lists ``address`` and the pid of the sshd serving it."""
    for cfg in (lab.get("ssh") or {}).get("configs") or []:
        path = Path(cfg)
        try:
            text = path.read_text()
        except OSError:
            continue
        if any(line.startswith(f"ListenAddress {address}:") for line in text.splitlines()):
            try:
                pid: int | None = int(sshd.pid_path(path).read_text().strip())
            except (OSError, ValueError):
                pid = None
            return path, pid if pid is not None and runner.ours(pid, lab_dir) else None
    raise LabError(f"{lab_dir}: no sshd config of the lab listens on {address}")


def _wait_answer(address: str, port: int, want: bool, timeout: float = ANSWER_TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sshd.answers(address, port, timeout=1.0) == want:
            return True
        time.sleep(0.1)
    return False


def _session_roots(address: str, listeners: set[int]) -> set[int]:
    """The per-connection sshd processes of every SSH session whose server address is
    ``address`` (found through ``SSH_CONNECTION``): see :func:`_session_top`."""
    parent: dict[int, int] = {p: pp for pp, kids in runner._ppid_map().items() for p in kids}
    roots: set[int] = set()
    for pid, environ in proc_files("environ"):
        env = environ.split(b"\0")
        conn = next(
            (e[len(b"SSH_CONNECTION=") :] for e in env if e.startswith(b"SSH_CONNECTION=")), None
        )
        if conn is None or conn.split()[2:3] != [address.encode()]:
            continue
        roots.add(_session_top(pid, parent, listeners))
    return roots


def _session_top(pid: int, parent: dict[int, int], listeners: set[int]) -> int:
    """The topmost sshd process above ``pid`` below the listener: the connection's own sshd,
    also when it was orphaned (a listener re-executed or stopped mid-session leaves it
    under init or under the lab's subreaper); ``pid`` itself when no sshd is above it."""
    top = pid
    while True:
        if _is_sshd(pid):
            top = pid
        up = parent.get(pid, 1)
        if up <= 1 or up in listeners:
            return top
        pid = up


def _is_sshd(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "sshd"
    except OSError:
        return False


def _drop_sessions(address: str, listeners: set[int]) -> int:
    """Kill every session on ``address`` as a power cut would: no process of it may still
    act. All of them are stopped first, then killed: killed one by one, a session's sshd
    could see its command die first and send that exit status (137) before its own end,
    where a dropped session sends none."""
    roots = _session_roots(address, listeners)
    victims = sorted(roots | runner._descendants(sorted(roots)))
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in victims:
            try:
                os.kill(pid, sig)
            except OSError:
                continue
    return len(roots)


def _take_off(config: Path, address: str, pid: int | None) -> tuple[str, int | None]:
    """Stop sshd answering on ``address``: (the config's text to restore, the pid of a
    listener stopped outright, or None when it was re-read without the address)."""
    text = config.read_text()
    lines = text.splitlines(keepends=True)
    rest = [ln for ln in lines if ln.startswith("ListenAddress ") and f" {address}:" not in ln]
    if pid is None:
        return text, None
    if not rest:  # the address was this listener's only one: stop it (no wildcard listen)
        os.kill(pid, signal.SIGTERM)
        return text, pid
    config.write_text("".join(ln for ln in lines if f"ListenAddress {address}:" not in ln))
    os.kill(pid, signal.SIGHUP)  # sshd re-executes itself and reads its config again
    return text, None


def _put_back(lab_dir: Path, config: Path, text: str, pid: int | None, stopped: int | None) -> None:
    config.write_text(text)
    if stopped is not None:
        deadline = time.monotonic() + 10
        while runner.alive(stopped) and time.monotonic() < deadline:
            time.sleep(0.05)
        sshd.start(sshd.find_sshd(), [config], lab_dir / "logs" / "sshd.log")
    elif pid is not None:
        os.kill(pid, signal.SIGHUP)


@contextlib.contextmanager
def _restart_lock(lab_dir: Path) -> Iterator[None]:
    """``DIR/sshd/restart.lock``: a second restart of the same lab waits for the first."""
    fd = os.open(lab_dir / "sshd" / "restart.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _boot_node(lab_dir: Path, node: str, root: Path) -> tuple[str | None, bool, str | None]:
    """The node's units as after a boot; (kubelet version installed, whether that kubelet
    starts, why not)."""
    from upgrader_lab.node import services, tree
    from upgrader_lab.node.context import NodeContext

    ctx = NodeContext(lab_dir, node, root)
    version = ctx.installed_version("kubelet")
    failure = services.kubelet_start_error(ctx, version) if version else None
    now = time.time()
    units: dict[str, Any] = {
        u: {"active": True, "since": now, "pid": 4242 + int(now) % 50000} for u in services.UNITS
    }
    if failure is not None:
        units["kubelet"] = {"active": False, "since": now, "pid": 0, "failed": failure}
    ctx.write_json("services.json", units)
    if ctx.os_family == "debian":
        ctx.write_json("daemon-reload.json", tree.kubelet_unit_mtimes(ctx.root))
    else:
        db = ctx.packages()
        if db.get("unit_changed"):
            db["unit_changed"] = False
            ctx.save_packages(db)
    return version, failure is None, failure


def restart_node(lab_dir: Path, node: str, down_for: float = 5.0) -> RestartResult:
    """Reboot ``node`` of the running lab in ``lab_dir`` (see the module docstring).
    :class:`ConfigError` for an unknown node or a bad ``down_for``; :class:`LabError` when
    the lab does not run or a part of the reboot failed."""
    from upgrader_lab.node.adminapi import Api, ApiError

    lab_dir = Path(os.path.abspath(lab_dir))
    if down_for < 0 or down_for != down_for:
        raise ConfigError(f"--down-for: {down_for}: must be 0 or more seconds")
    lab, rec = _node_record(lab_dir, node)
    st = runner.status(lab_dir)
    if st["state"] != "running":
        raise LabError(
            f"the lab in {lab_dir} is {st['state']}, not running "
            f"(`upgrader lab up --dir {lab_dir}` starts it)"
        )
    address = str(rec["address"])
    port = int(lab["ssh"]["port"])
    api = Api(lab_dir) if lab.get("api") else None
    warnings: list[str] = []

    def power(on: bool, **extra: Any) -> None:
        if api is None:
            return
        try:
            api.request("POST", f"/_lab/v1/nodes/{node}/power", {"on": on, **extra})
        except ApiError as exc:
            raise LabError(f"the lab's API server: {exc}") from None

    # one restart at a time per lab: each rewrites an sshd config and puts it back
    with _restart_lock(lab_dir):
        config, pid = _listener(lab_dir, lab, address)
        listeners = set(runner.running_pids(lab_dir)["sshd"])
        text, stopped = _take_off(config, address, pid)
        came_back = False
        try:
            if not _wait_answer(address, port, want=False):
                warnings.append(f"sshd still answered on {address}:{port} after the restart began")
            dropped = _drop_sessions(address, listeners)
            power(False)
            time.sleep(down_for)
            came_back = True
            version, starts, failure = _boot_node(lab_dir, node, Path(rec["root"]))
            if failure is not None:
                warnings.append(f"the kubelet {version} exits at start: {failure}")
            power(True, version=version, starts=starts)
        finally:
            if not came_back:  # interrupted while down: the node boots all the same
                with contextlib.suppress(Exception):
                    v, ok, _ = _boot_node(lab_dir, node, Path(rec["root"]))
                    power(True, version=v, starts=ok)
            _put_back(lab_dir, config, text, pid, stopped)
    ready_after: float | None = None
    if api is not None and starts:
        spec = runner.read_json(lab_dir / "spec.json") or {}
        ready_after = float((spec.get("delays") or {}).get("kubelet_ready", 0))
    if not _wait_answer(address, port, want=True):
        raise LabError(f"sshd does not answer on {address}:{port} after the restart of {node}")
    return RestartResult(
        node=node,
        address=address,
        down_for=down_for,
        sessions_dropped=dropped,
        kubelet_version=version,
        kubelet_starts=starts,
        ready_after=ready_after,
        warnings=warnings,
    )
