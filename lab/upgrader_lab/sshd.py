"""The lab's OpenSSH server: keys, configuration, known_hosts, start and readiness.

Owns ``DIR/sshd/`` (host key, ``authorized_keys``, ``sshd_config`` files, pid files),
``DIR/id_ed25519`` (+ ``.pub``, the client key the inventory uses) and ``DIR/known_hosts``
(one line per node address, ``[127.a.b.c]:PORT ssh-ed25519 ...``). The real
``/usr/sbin/sshd`` (Debian's openssh-server) runs in the foreground (``-D -e``), key-only,
with the ForceCommand wrapper and ``StrictModes yes``; the authorized keys are read by the
user running the lab through ``AuthorizedKeysCommand`` (``lab up`` has judged the directory
the way StrictModes would: :mod:`upgrader_lab.trust`). OpenSSH caps one sshd at 16
listen sockets (``MAX_LISTEN_SOCKS``), so a lab of more than 16 nodes runs one sshd per 16
addresses, all on the same port with the same host key: ``DIR/sshd/sshd_config`` for the first
group, ``sshd_config.1``, ``sshd_config.2``... for the others. SFTP is OpenSSH's
``sftp-server`` run through the same ForceCommand wrapper, so it sees the node's files.

Must not: touch the system's sshd, its configuration or host keys, or listen on anything
but the lab's loopback addresses.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from upgrader.errors import ConfigError
from upgrader_lab.hostproc import captured, detached

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")
MAX_LISTEN_SOCKS = 16  # OpenSSH's compile-time limit of listen sockets per sshd
PRIVSEP_DIR = Path("/run/sshd")


class SshdError(Exception):
    """sshd could not be started or did not answer."""


def find_sshd() -> str:
    for candidate in SSHD_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("sshd")
    if found:
        return found
    raise ConfigError("sshd not found: install it with `apt-get install openssh-server`")


def current_user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


# --------------------------------------------------------------------------- keys


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def generate_key(path: Path, comment: str) -> str:
    """An ed25519 key pair in OpenSSH format at ``path`` (+ ``.pub``); returns the public
    line. Kept when it exists already (a restarted lab keeps its identity)."""
    pub = path.with_name(path.name + ".pub")
    if path.is_file() and pub.is_file():
        return pub.read_text().strip()
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    line = f"{public} {comment}"
    _write_private(path, private)
    pub.write_text(line + "\n")
    return line


@dataclass(frozen=True)
class Keys:
    host_key: Path
    host_public: str  # "ssh-ed25519 AAAA..."
    client_key: Path
    client_public: str


def ensure_keys(lab_dir: Path) -> Keys:
    sshd_dir = lab_dir / "sshd"
    host_key = sshd_dir / "ssh_host_ed25519_key"
    host_line = generate_key(host_key, "upgrader-lab-host")
    client_key = lab_dir / "id_ed25519"
    client_line = generate_key(client_key, "upgrader-lab-client")
    auth = sshd_dir / "authorized_keys"
    auth.write_text(f"no-port-forwarding,no-agent-forwarding,no-X11-forwarding {client_line}\n")
    os.chmod(auth, 0o600)
    host_public = " ".join(host_line.split()[:2])
    return Keys(host_key, host_public, client_key, " ".join(client_line.split()[:2]))


def write_known_hosts(lab_dir: Path, addresses: Sequence[str], port: int, host_public: str) -> Path:
    path = lab_dir / "known_hosts"
    path.write_text("".join(f"[{a}]:{port} {host_public}\n" for a in addresses))
    return path


# --------------------------------------------------------------------------- ports


def _bindable(address: str, port: int, reuse: bool = False) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        if reuse:  # as sshd binds: connections of the previous start in TIME_WAIT are fine
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def pick_port(addresses: Sequence[str], attempts: int = 50, prefer: int = 0) -> int:
    """A port free on every one of ``addresses`` (the kernel picks, we check the rest);
    ``prefer`` (the port of the lab's previous start) when it is free everywhere, so that a
    restarted lab keeps its inventory, known_hosts and a run's recorded inputs unchanged."""
    if prefer >= 1024 and all(_bindable(a, prefer, reuse=True) for a in addresses):
        return prefer
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((addresses[0], 0))
            port = int(s.getsockname()[1])
        if port < 1024:
            continue
        if all(_bindable(a, port) for a in addresses):
            return port
    raise SshdError("no TCP port is free on all of the lab's node addresses")


# --------------------------------------------------------------------------- config


def config_paths(lab_dir: Path, groups: int) -> list[Path]:
    base = lab_dir / "sshd" / "sshd_config"
    return [base if i == 0 else base.with_name(f"sshd_config.{i}") for i in range(groups)]


def pid_path(config: Path) -> Path:
    suffix = config.name[len("sshd_config") :]
    return config.with_name(f"sshd{suffix}.pid")


def config_text(
    lab_dir: Path,
    addresses: Sequence[str],
    port: int,
    host_key: Path,
    force_command: Path | str,
    pid_file: Path,
    user: str,
) -> str:
    root = os.getuid() == 0
    keys_file = lab_dir / "sshd" / "authorized_keys"
    # The keys are read by the user running the lab (root for a root lab), not by the login
    # user, who may not reach the lab directory (the lab's non-root SSH user,
    # upgrader_lab.sudo); and sshd's StrictModes would judge an AuthorizedKeysFile's path
    # up to "/" (the user's home is not an ancestor), refusing a lab under /tmp for /tmp's
    # mode 1777. `lab up` has checked the directory and that path itself the way
    # StrictModes would, sticky bit allowed (upgrader_lab.trust).
    keys = [
        "AuthorizedKeysFile none",
        f"AuthorizedKeysCommand /usr/bin/cat {keys_file}",
        f"AuthorizedKeysCommandUser {current_user()}",
    ]
    lines = [
        "# upgrader lab sshd (generated by `upgrader lab up`; do not edit)",
        *[f"ListenAddress {a}:{port}" for a in addresses],
        f"HostKey {host_key}",
        f"PidFile {pid_file}",
        *keys,
        f"AllowUsers {user}",
        f"PermitRootLogin {'prohibit-password' if root and user == 'root' else 'no'}",
        "PubkeyAuthentication yes",
        "AuthenticationMethods publickey",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "HostbasedAuthentication no",
        "UsePAM no",
        "StrictModes yes",
        "UseDNS no",
        "MaxStartups 1000:30:1000",
        "MaxSessions 1000",
        "MaxAuthTries 6",
        "LoginGraceTime 60",
        "ClientAliveInterval 30",
        "PermitUserEnvironment no",
        "AllowTcpForwarding no",
        "AllowAgentForwarding no",
        "AllowStreamLocalForwarding no",
        "X11Forwarding no",
        "PermitTunnel no",
        "GatewayPorts no",
        "PrintMotd no",
        "PrintLastLog no",
        "LogLevel INFO",
        # bash sources ~/.bashrc for ssh commands when its SHLVL starts below 2: the lab
        # wrapper needs none of it (and a slow or noisy .bashrc costs every command).
        "SetEnv SHLVL=1",
        f"ForceCommand {force_command}",
    ]
    sftp = sftp_server()
    if sftp is not None:
        # Under ForceCommand the wrapper runs the subsystem's command on the node (in its
        # view of the files), so SFTP reads what the node's commands wrote.
        lines.append(f"Subsystem sftp {sftp}")
    return "\n".join(lines) + "\n"


SFTP_SERVERS = (
    "/usr/lib/openssh/sftp-server",
    "/usr/libexec/openssh/sftp-server",
    "/usr/lib/ssh/sftp-server",
    "/usr/libexec/sftp-server",
)


def sftp_server() -> str | None:
    """The OpenSSH sftp-server binary of this machine (not internal-sftp: a ForceCommand
    replaces it), or None."""
    return next((p for p in SFTP_SERVERS if os.access(p, os.X_OK)), None)


def write_configs(
    lab_dir: Path,
    addresses: Sequence[str],
    port: int,
    keys: Keys,
    force_command: Path | str,
    user: str | None = None,
) -> list[Path]:
    """``user``: the one account sshd lets in (default: whoever runs the lab)."""
    user = user or current_user()
    groups = [
        list(addresses[i : i + MAX_LISTEN_SOCKS])
        for i in range(0, len(addresses), MAX_LISTEN_SOCKS)
    ]
    paths = config_paths(lab_dir, len(groups))
    # Remove configs of an earlier, larger start of this lab.
    for stale in (lab_dir / "sshd").glob("sshd_config.*"):
        if stale not in paths:
            stale.unlink()
    for path, group in zip(paths, groups, strict=True):
        path.write_text(
            config_text(lab_dir, group, port, keys.host_key, force_command, pid_path(path), user)
        )
    return paths


# --------------------------------------------------------------------------- processes


def check_config(sshd: str, config: Path) -> None:
    proc = captured([sshd, "-t", "-f", str(config)], 30)
    if proc.returncode != 0:
        detail = " ".join((proc.stderr or proc.stdout).split())
        raise SshdError(f"sshd rejected {config}: {detail}")


def start(sshd: str, configs: Sequence[Path], log: Path) -> list[subprocess.Popen[bytes]]:
    """Start one ``sshd -D -e -f CONFIG`` per config, each in its own session."""
    if os.getuid() == 0 and not PRIVSEP_DIR.is_dir():
        # Debian's sshd refuses to start as root without its privilege separation directory.
        PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    check_config(sshd, configs[0])
    log.parent.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    with log.open("ab") as out:
        for config in configs:
            procs.append(
                detached([sshd, "-D", "-e", "-f", str(config)], out, preexec_fn=_subreaper())
            )
    return procs


PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


def _subreaper() -> Callable[[], None]:
    """What the child runs before it becomes sshd: make it the subreaper of its sessions
    (the attribute survives exec). A session's monitor exits without waiting for its
    unprivileged child, so without this every session ends as an orphan of init and its
    CPU time is lost to :func:`upgrader_lab.cost.cpu_seconds`; with it, sshd (which reaps
    any child) collects them."""
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before the fork, not in the child

    def mark() -> None:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    return mark


def answers(address: str, port: int, timeout: float = 2.0) -> bool:
    """Something at address:port sends an SSH banner."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def wait_ready(
    procs: Sequence[subprocess.Popen[bytes]],
    addresses: Sequence[str],
    port: int,
    log: Path,
    timeout: float = 30.0,
) -> None:
    """Poll until every address answers with an SSH banner; fail early if an sshd exits."""
    deadline = time.monotonic() + timeout
    pending = list(addresses)
    delay = 0.02
    while pending:
        for proc in procs:
            if proc.poll() is not None:
                raise SshdError(f"sshd exited with {proc.returncode}: {_tail(log)}")
        pending = [a for a in pending if not answers(a, port, timeout=1.0)]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise SshdError(f"sshd does not answer on {pending[0]}:{port}: {_tail(log)}")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def _tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"
