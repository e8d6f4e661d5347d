"""The ``upgrader`` command line in a subprocess, as an operator runs it (stdin not a
terminal): ``apply`` without ``--yes`` is refused before any node or API is contacted, and
commands that need no cluster (``version``, ``--help``, ``rbac``) do not load its clients.

The "nothing contacted" proof is a real TCP listener that every address of the inventory and
the kubeconfig point at: it counts the connections it is offered (and closes each at once)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cli_run import cli, cli_env
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

pytestmark = pytest.mark.integration


class Listener:
    """A TCP port on 127.0.0.1 that accepts and at once closes every connection, counting them."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.count += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@dataclass
class Cluster:
    inventory: Path
    listeners: tuple[Listener, ...]

    @property
    def state_dir(self) -> Path:
        return self.inventory.parent / ".upgrader"

    def contacts(self) -> int:
        return sum(x.count for x in self.listeners)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A well-formed inventory and kubeconfig whose every node and API address is a
    counting listener (the API and cp-1 share one; w-1 has its own)."""
    listener, other = Listener(), Listener()
    key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    identity = tmp_path / "id_ed25519"
    identity.write_bytes(key)
    identity.chmod(0o600)
    (tmp_path / "known_hosts").write_text("")
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": f"https://127.0.0.1:{listener.port}"}},
        ],
        "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    inventory = {
        "cluster": {"name": "quiet"},
        "kubeconfig": {"path": "./kubeconfig", "context": "c"},
        "ssh": {
            "user": "root",
            "port": listener.port,
            "identity_file": "./id_ed25519",
            "known_hosts": "./known_hosts",
            "connect_timeout": 5,
        },
        "packages": {"manager": "apt"},
        "nodes": [
            {"name": "cp-1", "address": "127.0.0.1", "role": "control-plane"},
            {"name": "w-1", "address": "127.0.0.1", "role": "worker", "port": other.port},
        ],
    }
    inv = tmp_path / "inventory.yaml"
    inv.write_text(yaml.safe_dump(inventory, sort_keys=False))
    try:
        yield Cluster(inv, (listener, other))
    finally:
        listener.close()
        other.close()


def _one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: "), r.stderr
    return lines[0]


def test_apply_without_yes_and_without_a_terminal_contacts_nothing(cluster: Cluster) -> None:
    r = cli("apply", "-i", str(cluster.inventory), "--to", "v1.28.4")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--yes" in _one_line_error(r)
    assert r.stdout == ""
    assert cluster.contacts() == 0
    assert not cluster.state_dir.exists()


def test_apply_without_yes_is_refused_whatever_the_other_flags(
    cluster: Cluster,
) -> None:
    # also with --nodes (which loads the inventory) and the other run flags
    r = cli(
        *("apply", "-i", str(cluster.inventory), "--to", "v1.28.4", "--nodes", "w-1"),
        *("--max-unavailable", "2", "--strict", "-v"),
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--yes" in r.stderr and "Traceback" not in r.stderr
    assert cluster.contacts() == 0
    assert not cluster.state_dir.exists()


def test_the_listener_sees_a_run_that_does_go_on(cluster: Cluster) -> None:
    """The control case: with --yes the same command reaches for the nodes (and fails there,
    since the listener speaks no SSH), so a count of 0 above means nothing was contacted."""
    r = cli("apply", "-i", str(cluster.inventory), "--to", "v1.28.4", "--yes")
    assert r.returncode in (4, 5), r.stdout + r.stderr
    assert "Traceback" not in r.stderr  # retry warnings above it, then the one-line error
    assert r.stderr.strip().splitlines()[-1].startswith("error: "), r.stderr
    assert cluster.contacts() > 0


# --------------------------------------------------------------------------- start-up

HEAVY = ("kubernetes", "paramiko")


def _loaded_by(*args: str) -> tuple[int, set[str]]:
    """Exit code of ``upgrader ARGS`` run in-process and the top-level modules it loaded."""
    code = (
        "import json, sys\n"
        f"sys.argv = ['upgrader', *{list(args)!r}]\n"
        "from upgrader.cli import main\n"
        "rc = 0\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as e:\n"
        "    rc = e.code or 0\n"
        "print(json.dumps([rc, sorted({m.split('.')[0] for m in sys.modules})]))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stderr
    rc, mods = json.loads(r.stdout.strip().splitlines()[-1])
    return int(rc), set(mods)


@pytest.mark.parametrize(
    "args",
    [
        ("version",),
        ("--help",),
        *((c, "--help") for c in ("plan", "apply", "facts", "status", "lab")),
        ("rbac",),
    ],
    ids=lambda a: " ".join(a),
)
def test_commands_that_need_no_cluster_do_not_load_its_clients(args: tuple[str, ...]) -> None:
    rc, mods = _loaded_by(*args)
    assert rc == 0
    assert not mods & set(HEAVY), sorted(mods & set(HEAVY))


def test_version_loads_no_terminal_renderer() -> None:
    rc, mods = _loaded_by("version")
    assert rc == 0 and "rich" not in mods
