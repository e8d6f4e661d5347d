"""A real OpenSSH ``sshd`` for tests: own host key, own authorized client key, loopback only.

``SSHServer.start(directory)`` writes a config into ``directory`` and runs
``/usr/sbin/sshd -D -e -f <config>`` as the current user (root or not) on a free port of
one or more loopback addresses, waits until it answers with an SSH banner, and ``stop()``
(or leaving the ``with`` block) terminates it. Nothing outside ``directory`` is touched,
except that as root sshd needs its privilege separation directory (``/run/sshd``), which
is created when missing.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from upgrader.transport.base import SSHTarget

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")  # Debian's compiled-in privilege separation directory


def sshd_available() -> bool:
    return Path(SSHD).exists() and shutil.which("ssh-keygen") is not None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def keygen(path: Path, comment: str = "upgrader-test") -> Path:
    """A fresh passphrase-less ed25519 key at ``path`` (and ``path.pub``)."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def _banner(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            return s.recv(8).startswith(b"SSH-")
    except OSError:
        return False


@dataclass
class SSHServer:
    directory: Path
    port: int
    addresses: tuple[str, ...]
    user: str
    host_key: Path
    client_key: Path
    config: Path
    log: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return self.addresses[0]

    @classmethod
    def start(
        cls,
        directory: Path,
        *,
        addresses: Sequence[str] = ("127.0.0.1",),
        force_command: str | None = None,
        extra_config: Iterable[str] = (),
        host_key: Path | None = None,
        client_key: Path | None = None,
        timeout: float = 15.0,
    ) -> SSHServer:
        directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0 and not PRIVSEP_DIR.exists():
            PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        host_key = host_key or keygen(directory / "ssh_host_ed25519_key", "test-host")
        client_key = client_key or keygen(directory / "id_ed25519", "test-client")
        authorized = directory / "authorized_keys"
        authorized.write_text(Path(str(client_key) + ".pub").read_text())
        authorized.chmod(0o600)
        last_error = ""
        for _ in range(5):
            port = free_port(addresses[0])
            server = cls(
                directory=directory,
                port=port,
                addresses=tuple(addresses),
                user=getpass.getuser(),
                host_key=host_key,
                client_key=client_key,
                config=directory / "sshd_config",
                log=directory / "sshd.log",
            )
            server._write_config(authorized, force_command, extra_config)
            server._spawn()
            if server._wait_ready(timeout):
                return server
            last_error = server.log.read_text(errors="replace")[-2000:]
            server.stop()
        raise RuntimeError(f"sshd did not start; last log:\n{last_error}")

    def _write_config(
        self, authorized: Path, force_command: str | None, extra: Iterable[str]
    ) -> None:
        lines = [f"ListenAddress {a}:{self.port}" for a in self.addresses]
        lines += [
            f"HostKey {self.host_key}",
            f"PidFile {self.directory / 'sshd.pid'}",
            f"AuthorizedKeysFile {authorized}",
            "StrictModes no",
            "UsePAM no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "AllowTcpForwarding yes",
            "AllowAgentForwarding no",
            "X11Forwarding no",
            "PrintMotd no",
            "MaxStartups 200:30:400",
            "MaxSessions 10",
            "LogLevel VERBOSE",
            "Subsystem sftp internal-sftp",
            *extra,
        ]
        if force_command:
            lines.append(f"ForceCommand {force_command}")
        self.config.write_text("\n".join(lines) + "\n")

    def _spawn(self) -> None:
        logf = self.log.open("ab")
        try:
            self.process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=logf,
            )
        finally:
            logf.close()

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            if all(_banner(a, self.port) for a in self.addresses):
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> SSHServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ client side
    def host_key_line(self, address: str | None = None) -> str:
        """The known_hosts line for this server at ``address`` (default: the first)."""
        name = f"[{address or self.host}]:{self.port}"
        keytype, blob = Path(str(self.host_key) + ".pub").read_text().split()[:2]
        return f"{name} {keytype} {blob}\n"

    def write_known_hosts(self, path: Path, addresses: Iterable[str] | None = None) -> Path:
        path.write_text("".join(self.host_key_line(a) for a in (addresses or self.addresses)))
        return path

    def target(self, node: str, known_hosts: Path, **overrides: object) -> SSHTarget:
        """An SSHTarget for ``node`` reaching this server as the current user."""
        fields: dict[str, object] = {
            "node": node,
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "identity_file": str(self.client_key),
            "known_hosts": str(known_hosts),
            "connect_timeout": 10.0,
        }
        fields.update(overrides)
        return SSHTarget(**fields)  # type: ignore[arg-type]

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")
        return ""
