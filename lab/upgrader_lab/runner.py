"""Starting, stopping and inspecting a lab: ``upgrader lab up|down|status`` as a library.

Owns the lab directory's life: refuse a directory others control and create a new one
(:mod:`upgrader_lab.trust`); on first ``up`` resolve the spec into ``DIR/spec.json`` and
build the node trees, the repository and the release checksums; on every ``up`` probe the
mount mode, write the wrapper, pick a port, start the API server and the sshd(s) in their
own sessions, poll until both answer, then write ``DIR/lab.json`` and
``DIR/inventory.yaml``. ``down`` kills by pid exactly the process groups it started (and
the node sessions they spawned), waits until they are gone and checks nothing listens on
the lab's ports. ``status`` says what runs.

Must not: print (the CLI does), kill anything it did not start (every pid is checked
against the lab directory first), or use fixed sleeps where a poll can tell.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import upgrader
import upgrader_lab
from upgrader.errors import ConfigError, ExitCode, UpgraderError
from upgrader_lab import debnode, debrepo, pkgserver, sshd, trust
from upgrader_lab import spec as labspec
from upgrader_lab import sudo as labsudo
from upgrader_lab.apiserver.certs import ensure_pki
from upgrader_lab.hostproc import detached, proc_files
from upgrader_lab.node import realtool, repo, tree, wrapper

API_TIMEOUT = 60.0
_ANY = ".".join("0" * 4)  # the wildcard address, as /proc/net/tcp shows it
SSH_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


class LabError(UpgraderError):
    """The lab could not be started or stopped (not a bad input)."""

    exit_code = ExitCode.STEP_FAILED


class LabRunning(UpgraderError):
    """``up`` on a directory whose lab already runs."""

    exit_code = ExitCode.OK


@dataclass
class UpResult:
    lab_dir: Path
    lab: dict[str, Any]
    fresh: bool
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- helpers


def _abs(lab_dir: Path) -> Path:
    return Path(os.path.abspath(lab_dir.expanduser()))


@contextmanager
def _dir_lock(lab_dir: Path) -> Iterator[None]:
    lab_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lab_dir / ".lab.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LabError(f"{lab_dir}: another `upgrader lab` command works on it") from None
        yield
    finally:
        os.close(fd)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: Any) -> None:
    tree.write_file(path, json.dumps(data, indent=1) + "\n")


def _reap(pid: int) -> None:
    with suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def alive(pid: int | None) -> bool:
    """The process exists and is not a zombie."""
    if not pid or pid <= 0:
        return False
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0:1]
    return state != ["Z"]


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def ours(pid: int | None, lab_dir: Path) -> bool:
    """``pid`` runs and its command line names this lab directory or a file in it (no
    pid-reuse accidents, and ``/x/lab`` is not ``/x/lab2``)."""
    if not pid or not alive(pid):
        return False
    d = str(lab_dir)
    return any(t == d or t.startswith(d + "/") for t in _cmdline(int(pid)).split())


def _ppid_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for pid, stat in proc_files("stat"):
        fields = stat.rsplit(b")", 1)[-1].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(pid)
    return children


def _descendants(pids: list[int]) -> set[int]:
    children = _ppid_map()
    out: set[int] = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def _session_pids(lab_dir: Path) -> set[int]:
    """Processes started by the lab's wrapper (they carry ``LAB_DIR=<lab_dir>``)."""
    marker = f"LAB_DIR={lab_dir}".encode()
    out: set[int] = set()
    me = os.getpid()
    for pid, env in proc_files("environ"):
        if pid != me and marker in env.split(b"\0"):
            out.add(pid)
    return out


def _listening(addresses: set[str], port: int) -> list[str]:
    if not port:
        return []
    wanted = {(a, port) for a in addresses}
    return [
        f"{addr}:{p}"
        for addr, p in labspec.listening_sockets()
        if (addr, p) in wanted or (_ANY, p) in wanted
    ]


# --------------------------------------------------------------------------- spec


def _resolve_spec(lab_dir: Path, spec: labspec.LabSpec | None) -> tuple[dict[str, Any], bool]:
    """(resolved spec, fresh). An existing DIR/spec.json is reused; a different spec for an
    existing lab directory is refused."""
    spec_path = lab_dir / "spec.json"
    existing = read_json(spec_path)
    if existing is None:
        if spec_path.exists():
            raise ConfigError(
                f"{spec_path}: not valid JSON; remove the lab with `lab down --purge`"
            )
        if any(p.name not in (".lab.lock", trust.MARKER) for p in lab_dir.iterdir()):
            raise ConfigError(
                f"{lab_dir}: the directory is not empty and holds no lab (no spec.json); "
                "give a --dir that does not exist yet"
            )
        resolved = labspec.resolve(spec or labspec.LabSpec(), lab_dir)
        return resolved, True
    if spec is not None:
        spec = spec.model_copy(deep=True)
        by_name = {n["name"]: n.get("address") for n in existing.get("nodes", [])}
        for node in spec.nodes:
            if node.address is None and by_name.get(node.name):
                node.address = by_name[node.name]
        if labspec.resolve(spec, lab_dir) != existing:
            raise ConfigError(
                f"{lab_dir}: this directory holds another lab (spec.json differs); use another "
                "--dir or remove it with `upgrader lab down --purge`"
            )
    return existing, False


def _prereleases(resolved: dict[str, Any]) -> list[str]:
    """The pre-release versions the repository must offer: the spec's
    ``prerelease_packages`` and every pre-release version a node starts at."""
    found = [str(v) for v in resolved.get("prerelease_packages") or []]
    found.append(str(resolved["version"]))
    for node in resolved["nodes"]:
        found.extend(
            str(node[k]) for k in ("kubelet", "kubeadm", "kubectl", "control_plane") if node.get(k)
        )
    return sorted({repo.plain(v) for v in found if repo.is_prerelease(v)}, key=repo.sort_key)


def _has_debian(resolved: dict[str, Any]) -> bool:
    return any(
        n["os_family"] == "debian" and n.get("flavor") != "kubespray" for n in resolved["nodes"]
    )


def _build(lab_dir: Path, resolved: dict[str, Any], python: str) -> None:
    repository = repo.build_repository(
        resolved.get("missing_packages") or [], prereleases=_prereleases(resolved)
    )
    repo.write_repository(lab_dir, repository)
    everything = repo.build_repository(prereleases=_prereleases(resolved))
    tree.write_release_checksums(lab_dir, repo.all_versions(everything), python)
    for node in resolved["nodes"]:
        tree.build_node(lab_dir, node, resolved, python)
    ensure_pki(lab_dir, resolved.get("cluster_name", "lab"), "127.0.0.1")
    if _has_debian(resolved):
        try:
            debrepo.write_repositories(lab_dir, repository, python)
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            raise LabError(f"cannot build the lab's package repositories: {exc}") from None
    _write_json(lab_dir / "spec.json", resolved)


PREPARED = "nodes-prepared"


def _prepare_debian(
    lab_dir: Path, resolved: dict[str, Any], mode: wrapper.MountMode, python: str, port: int
) -> None:
    """First start: the Debian nodes' packages, installed by the real dpkg (overlay mode),
    or the bare simulated binaries (path mode, where the real tools must not run)."""
    marker = lab_dir / PREPARED
    if marker.exists() or not _has_debian(resolved):
        return
    debian = [
        n
        for n in resolved["nodes"]
        if n["os_family"] == "debian" and n.get("flavor") != "kubespray"
    ]
    if mode.mode == "path":
        for node in debian:
            root = tree.node_dir(lab_dir, node["name"]) / "root"
            for tool in tree.BINARIES:
                tree.install_binary(root, tool, node[tool], python)
    else:
        try:
            debnode.prepare(lab_dir, debian, pkgserver.url_template(port), python)
        except (debnode.NodeSetupError, OSError, subprocess.SubprocessError) as exc:
            raise LabError(str(exc)) from None
    marker.write_text("")


# --------------------------------------------------------------------------- processes


def _env(pythonpath: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = pythonpath + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    env.pop("LAB_DIR", None)
    env.pop("LAB_NODE", None)
    return env


def _start_api(lab_dir: Path, python: str, pythonpath: str) -> subprocess.Popen[bytes]:
    (lab_dir / "apiserver.json").unlink(missing_ok=True)
    return _start_server(lab_dir, python, pythonpath, "apiserver")


def _start_pkgserver(
    lab_dir: Path, python: str, pythonpath: str, port: int
) -> subprocess.Popen[bytes]:
    return _start_server(lab_dir, python, pythonpath, "pkgserver", "--port", str(port))


def _start_server(
    lab_dir: Path, python: str, pythonpath: str, name: str, *args: str
) -> subprocess.Popen[bytes]:
    """``python -m upgrader_lab.NAME --dir DIR ARGS``, in its own session, logging to
    ``DIR/logs/NAME.log``."""
    log = lab_dir / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return detached(
            [python, "-m", f"upgrader_lab.{name}", "--dir", str(lab_dir), *args],
            out,
            cwd=lab_dir,
            env=_env(pythonpath),
        )


def _wait_pkgserver(lab_dir: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise LabError(
                f"the lab's package server exited with {proc.returncode}: "
                f"{_tail(lab_dir / 'logs' / 'pkgserver.log')}"
            )
        if pkgserver.read_info(lab_dir).get("pid") == proc.pid:
            return
        if time.monotonic() > deadline:
            raise LabError(f"the lab's package server did not start within {timeout:.0f}s")
        time.sleep(0.05)


def api_ready(url: str, ca: str, timeout: float = 2.0) -> bool:
    try:
        ctx = ssl.create_default_context(cafile=ca)
        req = urllib.request.Request(url.rstrip("/") + "/readyz")  # noqa: S310 - https only
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:  # noqa: S310
            return bool(resp.status == 200)
    except (OSError, ValueError, ssl.SSLError):
        return False


def _wait_api(lab_dir: Path, proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    delay = 0.02
    ca = str(lab_dir / "pki" / "ca.crt")
    while True:
        if proc.poll() is not None:
            raise LabError(
                f"the lab's API server exited with {proc.returncode}: "
                f"{_tail(lab_dir / 'logs' / 'apiserver.log')}"
            )
        info = read_json(lab_dir / "apiserver.json")
        if info and info.get("url") and api_ready(str(info["url"]), ca):
            return info
        if time.monotonic() > deadline:
            raise LabError(
                f"the lab's API server did not answer /readyz within {timeout:.0f}s: "
                f"{_tail(lab_dir / 'logs' / 'apiserver.log')}"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def _tail(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return lines[-1].strip() if lines else "(empty log)"


def _kill(pids: set[int], sig: int) -> None:
    for pid in pids:
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _killpg(pgids: set[int], sig: int) -> None:
    for pgid in pgids:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)


def _stop(lab_dir: Path, leaders: list[int], timeout: float = STOP_TIMEOUT) -> list[int]:
    """Stop the process groups led by ``leaders`` (checked to be ours), their descendants
    and the node sessions; return pids still alive at the end (empty when all went)."""
    leaders = [p for p in leaders if ours(p, lab_dir)]
    victims = set(leaders) | _descendants(leaders) | _session_pids(lab_dir)
    victims.discard(os.getpid())
    if not victims:
        return []
    _killpg(set(leaders), signal.SIGTERM)
    _kill(victims, signal.SIGTERM)
    deadline = time.monotonic() + timeout / 2
    delay = 0.01
    while any(alive(p) for p in victims) and time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    rest = {p for p in victims if alive(p)}
    if rest:
        _killpg(set(leaders), signal.SIGKILL)
        _kill(rest, signal.SIGKILL)
        deadline = time.monotonic() + timeout / 2
        while any(alive(p) for p in rest) and time.monotonic() < deadline:
            time.sleep(0.05)
    return sorted(p for p in victims if alive(p))


# --------------------------------------------------------------------------- inventory


def inventory_doc(
    resolved: dict[str, Any],
    port: int,
    user: str | None = None,
    password_env: str | None = None,
    url_template: str | None = None,
) -> dict[str, Any]:
    """The inventory of the lab. ``user`` is the SSH login (default: who runs the lab);
    ``password_env`` the variable the sudo password is read from, when sudo asks one;
    ``url_template`` (the lab's package server) makes the repository ``custom``."""
    user = user or sshd.current_user()
    root = user == "root"
    families = {n["os_family"] for n in resolved["nodes"]}
    manager = "dnf" if families == {"rhel"} else "apt"
    nodes = []
    for n in resolved["nodes"]:
        entry: dict[str, Any] = {
            "name": n["name"],
            "address": n["address"],
            "role": n["role"],
            "port": port,
        }
        node_manager = "dnf" if n["os_family"] == "rhel" else "apt"
        if node_manager != manager:
            entry["package_manager"] = node_manager
        nodes.append(entry)
    return {
        "cluster": {"name": resolved.get("cluster_name", "lab")},
        "kubeconfig": {"path": "./kubeconfig", "context": None},
        "ssh": {
            "user": user,
            "port": port,
            "identity_file": "./id_ed25519",
            "known_hosts": "./known_hosts",
            "host_key_policy": "strict",
            "sudo": not root,
            **({"sudo_password_env": password_env} if password_env else {}),
            "connect_timeout": 10,
            "use_ssh_config": False,
        },
        "packages": {
            "manager": manager,
            "repository": "custom" if url_template else "pkgs.k8s.io",
            **({"url_template": url_template} if url_template else {}),
            "release_checksums": "./releases",
        },
        "nodes": nodes,
    }


def _write_inventory(
    lab_dir: Path,
    resolved: dict[str, Any],
    port: int,
    user: str | None = None,
    password_env: str | None = None,
    url_template: str | None = None,
) -> Path:
    path = lab_dir / "inventory.yaml"
    doc = inventory_doc(resolved, port, user, password_env, url_template)
    text = (
        "# upgrader lab inventory (generated by `upgrader lab up`; rewritten on every start)\n"
        + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)
    )
    tree.write_file(path, text)
    return path


# --------------------------------------------------------------------------- up / down / status


def running_pids(lab_dir: Path) -> dict[str, list[int]]:
    """Which of the lab's processes run now (pids checked against the directory)."""
    lab_dir = _abs(lab_dir)
    out: dict[str, list[int]] = {"sshd": [], "apiserver": [], "pkgserver": []}
    lab = read_json(lab_dir / "lab.json") or {}
    ssh_pids = list((lab.get("ssh") or {}).get("pids") or [])
    for pidfile in (lab_dir / "sshd").glob("sshd*.pid"):
        try:
            ssh_pids.append(int(pidfile.read_text().strip()))
        except (OSError, ValueError):
            continue
    out["sshd"] = sorted({p for p in ssh_pids if ours(p, lab_dir)})
    api_pids = [
        (lab.get("apiserver") or {}).get("pid"),
        (read_json(lab_dir / "apiserver.json") or {}).get("pid"),
    ]
    out["apiserver"] = sorted({int(p) for p in api_pids if p and ours(int(p), lab_dir)})
    pkg_pids = [
        (lab.get("pkgserver") or {}).get("pid"),
        pkgserver.read_info(lab_dir).get("pid"),
    ]
    out["pkgserver"] = sorted({int(p) for p in pkg_pids if p and ours(int(p), lab_dir)})
    return out


def up(
    lab_dir: Path,
    spec: labspec.LabSpec | None = None,
    *,
    start_api: bool = True,
    python: str | None = None,
    mount: str = "auto",
) -> UpResult:
    """Start the lab in ``lab_dir`` (building it first if new). Raises :class:`LabRunning`
    when it already runs, :class:`ConfigError` on bad input, :class:`LabError` otherwise.
    ``mount="path"`` skips the overlay mounts (the fallback mode) even where they work."""
    lab_dir = _abs(lab_dir)
    if mount not in ("auto", "path"):
        raise ConfigError(f"--mount: {mount!r} is not 'auto' or 'path'")
    problem = wrapper.check_lab_dir(lab_dir) or trust.check_dir(lab_dir)
    if problem:
        raise ConfigError(problem)
    sshd_bin = sshd.find_sshd()
    python = python or sys.executable
    # where the nodes' simulated tools import both distributions from (one directory for a
    # plain install, two for editable installs of a checkout)
    pythonpath = os.pathsep.join(
        dict.fromkeys(
            str(Path(m.__file__).resolve().parent.parent)  # type: ignore[arg-type]
            for m in (upgrader, upgrader_lab)
        )
    )
    if not os.path.lexists(lab_dir):
        try:
            trust.create(lab_dir)
        except FileExistsError:
            raise ConfigError(
                f"{lab_dir}: made by someone else while `lab up` ran; {trust.FIX}"
            ) from None
        except OSError as exc:
            raise ConfigError(f"{lab_dir}: cannot create it ({exc.strerror})") from None
    with _umask(0o022), _dir_lock(lab_dir):
        return _up_locked(lab_dir, spec, start_api, python, pythonpath, mount, sshd_bin)


@contextmanager
def _umask(bits: int) -> Iterator[None]:
    """Add ``bits`` to the process umask for a while: nothing the lab writes is group- or
    other-writable, whatever the caller's umask."""
    old = os.umask(bits)
    os.umask(old | bits)
    try:
        yield
    finally:
        os.umask(old)


def _trusted_files(lab_dir: Path, configs: list[Path], keys: sshd.Keys) -> list[Path]:
    """The files the lab's root sshd and its ForceCommand read or run."""
    bindir = lab_dir / "bin"
    return [
        *configs,
        keys.host_key,
        lab_dir / "sshd" / "authorized_keys",
        *sorted(p for p in bindir.iterdir() if not p.name.startswith(".")),
        *sorted((lab_dir / "addr").iterdir()),
    ]


def _up_locked(
    lab_dir: Path,
    spec: labspec.LabSpec | None,
    start_api: bool,
    python: str,
    pythonpath: str,
    mount: str,
    sshd_bin: str,
) -> UpResult:
    now = running_pids(lab_dir)
    if now["sshd"] or now["apiserver"] or now["pkgserver"]:
        pids = ", ".join(f"{k} {v}" for k, v in now.items() if v)
        raise LabRunning(f"the lab in {lab_dir} already runs ({pids})")
    resolved, fresh = _resolve_spec(lab_dir, spec)
    if fresh:
        _build(lab_dir, resolved, python)
    tree.precompile_tools()
    nodes = resolved["nodes"]
    addresses = [n["address"] for n in nodes]
    busy = set(labspec.listening_addresses()) & set(addresses)
    if busy:
        raise LabError(
            f"something already listens on {sorted(busy)[0]}, a node address of this lab"
        )
    mode = wrapper.probe(lab_dir, force_path=mount == "path")
    lock_problem = wrapper.ensure_lock_mountpoint() if mode.mode == "overlay" else None
    if lock_problem and os.geteuid() == 0:
        raise ConfigError(lock_problem)
    host_kubectl, bind = wrapper.host_tool(lab_dir, mode, "kubectl")
    binds = [bind] + [wrapper.host_tool(lab_dir, mode, t)[1] for t in realtool.REAL_TOOLS]
    shell = wrapper.install(lab_dir, mode, pythonpath, tuple(b for b in binds if b))
    wrapper.write_address_map(lab_dir, [(n["name"], n["address"]) for n in nodes])
    if fresh and mode.mode == "overlay":
        _mask_host_files(lab_dir, nodes)
    login, force_command, sudo_info, sudo_warning = _sudo_setup(
        lab_dir, resolved, mode, python, pythonpath, shell
    )
    keys = sshd.ensure_keys(lab_dir)
    servers = _start_servers(
        lab_dir, resolved, mode, start_api, python, pythonpath, sshd_bin, keys, force_command, login
    )
    procs, port, configs = servers.procs, servers.port, servers.configs
    api_proc, api_info = servers.api_proc, servers.api_info
    pkg_proc, pkg_port = servers.pkg_proc, servers.pkg_port
    lab = _lab_json(
        lab_dir,
        resolved,
        port,
        [p.pid for p in procs],
        configs,
        api_proc,
        api_info,
        mode,
        python,
    )
    lab["host_kubectl"] = host_kubectl
    lab["ssh"]["user"] = login
    lab["sudo"] = sudo_info
    lab["pkgserver"] = (
        {
            "pid": pkg_proc.pid,
            "port": pkg_port,
            "url_template": pkgserver.url_template(pkg_port),
        }
        if pkg_proc is not None
        else None
    )
    _write_json(lab_dir / "lab.json", lab)
    kubeconfig = lab_dir / "kubeconfig"
    if api_info is not None and kubeconfig.is_file():
        text = kubeconfig.read_text()
        for node in nodes:
            tree.install_kubeconfig(lab_dir, node, text)
    _write_inventory(
        lab_dir,
        resolved,
        port,
        login,
        sudo_info.get("password_env"),
        pkgserver.url_template(pkg_port) if pkg_proc else None,
    )
    warnings = _up_warnings(nodes, mode, sudo_warning, lock_problem, api_proc is None)
    return UpResult(lab_dir, lab, fresh, warnings)


@dataclass(frozen=True)
class _Servers:
    procs: list[subprocess.Popen[bytes]]  # sshd
    port: int  # sshd's
    configs: list[Path]
    api_proc: subprocess.Popen[bytes] | None
    api_info: dict[str, Any] | None
    pkg_proc: subprocess.Popen[bytes] | None
    pkg_port: int


def _start_servers(
    lab_dir: Path,
    resolved: dict[str, Any],
    mode: wrapper.MountMode,
    start_api: bool,
    python: str,
    pythonpath: str,
    sshd_bin: str,
    keys: sshd.Keys,
    force_command: str,
    login: str,
) -> _Servers:
    """The package server (Debian nodes), the API server and sshd, each waited for; on any
    failure the ones already started are stopped again."""
    nodes = resolved["nodes"]
    addresses = [n["address"] for n in nodes]
    started: list[int] = []
    pkg_proc: subprocess.Popen[bytes] | None = None
    pkg_port = 0
    try:
        if _has_debian(resolved) and mode.mode == "overlay":
            pkg_port = int(pkgserver.read_info(lab_dir).get("port") or 0)
            pkg_port = pkg_port or pkgserver.free_port()
            pkg_proc = _start_pkgserver(lab_dir, python, pythonpath, pkg_port)
            started.append(pkg_proc.pid)
            _wait_pkgserver(lab_dir, pkg_proc, API_TIMEOUT)
        _prepare_debian(lab_dir, resolved, mode, python, pkg_port)
        api_proc = _start_api(lab_dir, python, pythonpath) if start_api else None
        if api_proc is not None:
            started.append(api_proc.pid)
        previous = int(((read_json(lab_dir / "lab.json") or {}).get("ssh") or {}).get("port") or 0)
        port = sshd.pick_port(addresses, prefer=previous)
        configs = sshd.write_configs(lab_dir, addresses, port, keys, force_command, user=login)
        sshd.write_known_hosts(lab_dir, addresses, port, keys.host_public)
        untrusted = trust.check_written(lab_dir, _trusted_files(lab_dir, configs, keys))
        if untrusted:
            raise ConfigError(untrusted)
        try:
            procs = sshd.start(sshd_bin, configs, lab_dir / "logs" / "sshd.log")
        except sshd.SshdError as exc:
            raise LabError(str(exc)) from None
        started.extend(p.pid for p in procs)
        try:
            sshd.wait_ready(procs, addresses, port, lab_dir / "logs" / "sshd.log", SSH_TIMEOUT)
        except sshd.SshdError as exc:
            raise LabError(str(exc)) from None
        api_info = _wait_api(lab_dir, api_proc, API_TIMEOUT) if api_proc is not None else None
    except BaseException:
        _stop(lab_dir, started)
        raise
    return _Servers(procs, port, configs, api_proc, api_info, pkg_proc, pkg_port)


def _up_warnings(
    nodes: list[dict[str, Any]],
    mode: wrapper.MountMode,
    sudo_warning: str | None,
    lock_problem: str | None,
    no_api: bool,
) -> list[str]:
    warnings = [] if mode.mode == "overlay" else [f"mount mode 'path': {mode.reason}"]
    if any(n.get("cgroup", "v2") != wrapper.host_cgroup() for n in nodes):
        cgroup = wrapper.cgroup_problem(mode)
        if cgroup is not None:
            warnings.append(cgroup)
    if sudo_warning:
        warnings.append(sudo_warning)
    if lock_problem:
        warnings.append(lock_problem)
    if no_api:
        warnings.append("started without the API server (--no-api)")
    return warnings


def _sudo_setup(
    lab_dir: Path,
    resolved: dict[str, Any],
    mode: wrapper.MountMode,
    python: str,
    pythonpath: str,
    force_command: Path,
) -> tuple[str, str, dict[str, Any], str | None]:
    """(SSH login, ForceCommand, lab.json "sudo" record, warning or None). A non-root
    ``ssh_user`` gets the real sudo (see :mod:`upgrader_lab.sudo`) when the lab runs as
    root with overlay mounts; otherwise nodes keep the old behaviour (the login user is
    whoever runs the lab, the node's sudo is the lab's stub) and a warning says so. A lab
    directory from before the key existed (no ``ssh_user`` in spec.json) logs in as root."""
    wanted = str(resolved.get("ssh_user") or "root")
    me = sshd.current_user()
    if wanted == "root" or wanted == me:
        return me, str(force_command), {"mode": "stub", "user": me}, None
    if os.getuid() != 0 or mode.mode != "overlay" or mode.userns:
        why = "the lab does not run as root" if os.getuid() != 0 else f"mount mode {mode.mode}"
        return (
            me,
            str(force_command),
            {"mode": "stub", "user": me},
            f"ssh_user {wanted}: real sudo needs a root lab with overlay mounts ({why}); "
            f"nodes are entered as {me} and their sudo is the lab's stub",
        )
    password = bool(resolved.get("sudo_password"))
    try:
        account = labsudo.ensure_user(wanted)
        text = labsudo.debian_sudoers()
        for node in resolved["nodes"]:
            root = tree.node_dir(lab_dir, node["name"]) / "root"
            labsudo.prepare_node(root, wanted, password, text, node["name"])
        needed = [str(lab_dir), *labsudo.python_paths(python), *pythonpath.split(os.pathsep)]
        labsudo.install_scripts(lab_dir, account, needed, labsudo.which_setpriv())
        labsudo.install_host_dropin(lab_dir, wanted)
        info: dict[str, Any] = {
            "mode": "real",
            "user": wanted,
            "password": password,
            "host_dropin": str(labsudo.host_dropin_path(lab_dir)),
        }
        if password:
            value = labsudo.ensure_password(lab_dir)
            for node in resolved["nodes"]:
                labsudo.set_node_password(lab_dir, node["name"], wanted, value)
            info["password_file"] = str(lab_dir / labsudo.PASSWORD_FILE)
            info["password_env"] = labsudo.PASSWORD_ENV
    except labsudo.SudoSetupError as exc:
        raise LabError(str(exc)) from None
    entry = lab_dir / "bin" / labsudo.ENTRY
    return wanted, f"{labsudo.find_sudo()} -n {entry}", info, None


def _mask_host_files(lab_dir: Path, nodes: list[dict[str, Any]]) -> None:
    """Hide the host's Debian tools from rhel nodes, and any host kube binary in /usr/bin
    from kubespray nodes (whose own are in /usr/local/bin): overlay whiteouts in their tree."""
    for node in nodes:
        if node["os_family"] == "rhel":
            command = "rm -f " + " ".join(tree.RHEL_MASKED)
        elif node.get("flavor") == "kubespray":
            command = "rm -f " + " ".join(f"/usr/bin/{b}" for b in tree.BINARIES)
        else:
            continue
        proc = wrapper.run_on_node(lab_dir, node["name"], command)
        if proc.returncode != 0:
            raise LabError(f"cannot prepare node {node['name']}: {proc.stderr.strip()}")


def _lab_json(
    lab_dir: Path,
    resolved: dict[str, Any],
    port: int,
    ssh_pids: list[int],
    configs: list[Path],
    api_proc: subprocess.Popen[bytes] | None,
    api_info: dict[str, Any] | None,
    mode: wrapper.MountMode,
    python: str,
) -> dict[str, Any]:
    api = None
    if api_info is not None:
        api = {
            "url": str(api_info["url"]),
            "ca": str(lab_dir / "pki" / "ca.crt"),
            "token_file": str(lab_dir / "secrets" / "admin-token"),
        }
    return {
        "api": api,
        "ssh": {
            "port": port,
            "pid": ssh_pids[0],
            "pids": ssh_pids,
            "configs": [str(c) for c in configs],
            "known_hosts": str(lab_dir / "known_hosts"),
            "identity_file": str(lab_dir / "id_ed25519"),
            "user": sshd.current_user(),
        },
        "apiserver": {"pid": api_proc.pid} if api_proc is not None else None,
        "nodes": {
            n["name"]: {
                "address": n["address"],
                "role": n["role"],
                "os_family": n["os_family"],
                "flavor": n.get("flavor") or n["os_family"],
                "root": str(tree.node_dir(lab_dir, n["name"]) / "root"),
            }
            for n in resolved["nodes"]
        },
        "mount": mode.to_dict(),
        "python": python,
        "started": time.time(),
    }


@dataclass
class DownResult:
    stopped: list[int]
    left: list[int]
    listening: list[str]
    purged: bool


def down(lab_dir: Path, purge: bool = False) -> DownResult:
    lab_dir = _abs(lab_dir)
    if not lab_dir.is_dir():
        raise ConfigError(f"{lab_dir}: no such lab directory")
    if not (lab_dir / "spec.json").exists() and not (lab_dir / "lab.json").exists():
        raise ConfigError(f"{lab_dir}: not a lab directory (no spec.json)")
    with _dir_lock(lab_dir):
        now = running_pids(lab_dir)
        leaders = now["sshd"] + now["apiserver"] + now["pkgserver"]
        before = set(leaders) | _descendants(leaders) | _session_pids(lab_dir)
        left = _stop(lab_dir, leaders)
        lab = read_json(lab_dir / "lab.json") or {}
        addresses = {str(n.get("address")) for n in (lab.get("nodes") or {}).values()}
        port = int((lab.get("ssh") or {}).get("port") or 0)
        listening = _listening(addresses, port)
        api_url = str((lab.get("api") or {}).get("url") or "")
        if api_url.rsplit(":", 1)[-1].isdigit():
            listening += _listening({"127.0.0.1"}, int(api_url.rsplit(":", 1)[-1]))
        pkg_port = int((lab.get("pkgserver") or {}).get("port") or 0)
        listening += _listening({pkgserver.HOST}, pkg_port)
        for pidfile in (lab_dir / "sshd").glob("sshd*.pid"):
            pidfile.unlink(missing_ok=True)
        if os.getuid() == 0:
            labsudo.remove_host_dropin(lab_dir)
    purged = False
    if purge and not left:
        wrapper._rm_tree(lab_dir)
        purged = True
    return DownResult(sorted(before - set(left)), left, listening, purged)


def status(lab_dir: Path) -> dict[str, Any]:
    lab_dir = _abs(lab_dir)
    spec = read_json(lab_dir / "spec.json")
    if spec is None:
        raise ConfigError(f"{lab_dir}: not a lab directory (no spec.json)")
    lab = read_json(lab_dir / "lab.json") or {}
    pids = running_pids(lab_dir)
    nodes = spec.get("nodes") or []
    port = int((lab.get("ssh") or {}).get("port") or 0)
    answering = 0
    if pids["sshd"] and port:
        answering = sum(1 for n in nodes if sshd.answers(str(n["address"]), port, timeout=1.0))
    api = lab.get("api") or {}
    api_ok = (
        bool(pids["apiserver"])
        and bool(api.get("url"))
        and api_ready(str(api["url"]), str(api.get("ca", "")))
    )
    expected_sshd = len((lab.get("ssh") or {}).get("pids") or []) or 1
    pkg = lab.get("pkgserver") or {}
    if not pids["sshd"] and not pids["apiserver"] and not pids["pkgserver"]:
        state = "stopped"
    elif (
        len(pids["sshd"]) == expected_sshd
        and answering == len(nodes)
        and (api_ok or lab.get("apiserver") is None)
        and (bool(pids["pkgserver"]) or not pkg)
    ):
        state = "running"
    else:
        state = "degraded"
    return {
        "dir": str(lab_dir),
        "state": state,
        "sshd": {
            "pids": pids["sshd"],
            "expected": expected_sshd,
            "port": port,
            "answering": answering,
        },
        "apiserver": {
            "pids": pids["apiserver"],
            "url": api.get("url"),
            "ready": api_ok,
            "configured": lab.get("apiserver") is not None,
        },
        "pkgserver": {"pids": pids["pkgserver"], "port": pkg.get("port")},
        "nodes": {
            "total": len(nodes),
            "control_planes": sum(1 for n in nodes if n.get("role") == "control-plane"),
            "workers": sum(1 for n in nodes if n.get("role") == "worker"),
        },
        "mount": lab.get("mount") or {},
        "version": spec.get("version"),
        "current": current_versions(lab_dir),
    }


def current_versions(lab_dir: Path) -> dict[str, Any]:
    """What the lab's cluster runs now, from the API server's saved objects (readable while
    it is stopped): the kubeadm-config ``kubernetesVersion`` and each Node's kubelet. Empty
    when the lab has no API state yet."""
    import yaml

    data = read_json(lab_dir / "api-state.json")
    if not isinstance(data, dict):
        return {}
    objects = data.get("objects") or {}
    kubelets: dict[str, str] = {}
    for node in objects.get("nodes") or []:
        info = ((node.get("status") or {}).get("nodeInfo")) or {}
        kubelets[str(node["metadata"]["name"])] = str(info.get("kubeletVersion", "?"))
    cluster = None
    for cm in objects.get("configmaps") or []:
        meta = cm.get("metadata") or {}
        if (meta.get("namespace"), meta.get("name")) == ("kube-system", "kubeadm-config"):
            try:
                text = (cm.get("data") or {}).get("ClusterConfiguration") or ""
                cluster = (yaml.safe_load(text) or {}).get("kubernetesVersion")
            except yaml.YAMLError:
                cluster = None
    return {"cluster": cluster, "kubelets": kubelets}
