"""What happens to a command run through Debian's sudo (``Defaults use_pty``) when the SSH
session drops, and the product's answer (issue 11 item 11), on the lab's real sshd + sudo.

Facts (OpenSSH sshd sends a session without a terminal no signal when the client goes; the
command's stdout/stderr pipes lose their reader, so its next write kills it with SIGPIPE;
with a terminal the hang-up kills it; sudo 1.9.13 allocates a pty under ``use_pty`` only when
it runs in a terminal: sudoers(5), "use_pty", https://www.sudo.ws/docs/man/1.9.13/sudoers.man/;
Go programs exit on a broken pipe on fd 1/2: https://pkg.go.dev/os/signal#hdr-SIGPIPE).
The node lock wrapper (upgrader.core.nodelock) keeps such a command alive to its end, under
the lock. Then one aimed chaos trial (bench/chaos.py ``targeted_trial``): ``upgrader apply``
SIGKILLed while ``kubeadm upgrade apply`` runs under sudo on cp-1, resumed at once; the
campaign's invariants must hold (apply once, nothing rerun after success, converged).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from labkit import ssh_run

from bench import chaos
from upgrader.core import nodelock
from upgrader_lab import runner
from upgrader_lab import spec as labspec

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.getuid() != 0, reason="real sudo on lab nodes needs a root lab"),
]


class Node:
    def __init__(self, lab_dir: Path, name: str) -> None:
        self.dir = lab_dir
        self.name = name
        self.info = json.loads((lab_dir / "lab.json").read_text())

    def connect(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.load_host_keys(str(self.dir / "known_hosts"))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            self.info["nodes"][self.name]["address"],
            port=int(self.info["ssh"]["port"]),
            username=self.info["ssh"]["user"],
            key_filename=str(self.dir / "id_ed25519"),
            look_for_keys=False,
            allow_agent=False,
        )
        return client

    def drop_after(self, command: str, seconds: float, pty: bool = False) -> None:
        """Start ``command``, then close the connection after ``seconds``, as a killed
        client does."""
        client = self.connect()
        transport = client.get_transport()
        assert transport is not None
        chan = transport.open_session()
        if pty:
            chan.get_pty()
        chan.exec_command(command)
        time.sleep(seconds)
        client.close()

    def run(self, command: str) -> tuple[int, str, str]:
        return ssh_run(self.connect(), command)

    def file(self, path: str) -> Path:
        return self.dir / "nodes" / self.name / "root" / path.lstrip("/")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    lab_dir = tmp_path_factory.mktemp("drop") / "lab"
    nodes = [{"name": "cp-1", "role": "control-plane"}, {"name": "w-1", "role": "worker"}]
    spec = labspec.parse_spec({"nodes": nodes}, "test spec")
    runner.up(lab_dir, spec, start_api=False)
    n = Node(lab_dir, "w-1")
    assert n.info["sudo"]["mode"] == "real" and n.info["ssh"]["user"] != "root"
    yield n
    runner.down(lab_dir)


def _eventually(path: Path, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.1)
    return path.exists()


def test_sudo_without_a_terminal_runs_without_a_pty(node: Node) -> None:
    rc, out, err = node.run("sudo -n sh -c 'tty'")
    assert (rc, out) == (1, "not a tty\n"), err


def test_a_dropped_session_kills_an_unwrapped_command_at_its_next_write(node: Node) -> None:
    node.drop_after("sudo -n sh -c 'sleep 2; echo progress; touch /var/lib/unwrapped'", 0.8)
    assert not _eventually(node.file("/var/lib/unwrapped"), 5.0)
    # with a terminal (use_pty in effect) the hang-up kills even a silent command
    node.drop_after(
        "sudo -n sh -c 'sleep 2; touch /var/lib/unwrapped-pty' >/dev/null 2>&1", 0.8, True
    )
    assert not _eventually(node.file("/var/lib/unwrapped-pty"), 5.0)


def test_the_lock_wrapper_keeps_the_command_alive_and_the_lock_held(node: Node) -> None:
    work = "sleep 2; echo progress; echo more >&2; touch /var/lib/wrapped"
    node.drop_after("sudo -n sh -c " + _q(nodelock.wrap(work)), 0.8)
    # the orphaned command still holds the node lock: a second command is kept out ...
    rc, _, err = node.run("sudo -n sh -c " + _q(nodelock.wrap("true", wait=0.2)))
    assert nodelock.is_busy(rc, err), (rc, err)
    # ... until it has finished its work
    assert _eventually(node.file("/var/lib/wrapped"))
    rc, out, err = node.run("sudo -n sh -c " + _q(nodelock.wrap("echo next", wait=5)))
    assert (rc, out) == (0, "next\n"), err
    node.drop_after(
        "sudo -n sh -c " + _q(nodelock.wrap("sleep 2; echo x; touch /var/lib/wrapped-pty")),
        0.8,
        pty=True,
    )
    assert _eventually(node.file("/var/lib/wrapped-pty"))


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def test_chaos_kill_during_kubeadm_upgrade_apply_under_sudo_resumes(tmp_path: Path) -> None:
    lines: list[str] = []
    res = chaos.targeted_trial(
        "kubeadm-upgrade-apply", "cp-1", "kubeadm upgrade apply", 6.0, tmp_path, lines.append
    )
    assert res["sudo"]["mode"] == "real" and res["sudo"]["user"] == "upgrader-lab", res["sudo"]
    assert res["kills"] == 1, lines
    assert res["violations"] == [], res["violations"]
    assert res["converged"], lines
