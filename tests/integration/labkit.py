"""The integration tests' lab kit: the shared way a test starts a whole lab cluster (nodes behind
a real OpenSSH sshd, the lab's HTTPS API server) and reaches what it wrote.

Owns :func:`lab_up`, :func:`lab_down` and :func:`running_lab` (the real ``upgrader lab up
--spec`` and ``lab down`` in a subprocess, as an operator starts a lab, from a spec mapping;
``api=False`` starts the nodes only, as ``--no-api``),
:func:`fast_playbooks` (the packaged playbooks polling readiness and retrying evictions
every second; the campaigns' copy), :class:`LabFiles` (``lab.json``, the inventory, the
kubeconfig, a node's ``calls.jsonl``, as ``bench._labdir.LabDir`` reads them; SSH to a
node with its host key checked against the lab's ``known_hosts``, the real ``kubectl`` on
the lab's kubeconfig) and :func:`ssh_run` (one command on a connection that it then
closes). A test of the API server alone uses ``lab_api_fixture.LabAPI``; a test of
``upgrader lab up`` itself (its flags, its output) runs the CLI.

Must not: hold assertions about the product (the tests do), or leave a lab running
(:func:`running_lab` and the fixtures that call :func:`lab_up` bring it down).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paramiko
import yaml
from cli_run import cli, cli_env

from bench._campaign import fast_playbooks
from bench._labdir import LabDir

__all__ = ["LabFiles", "fast_playbooks", "lab_down", "lab_up", "running_lab", "ssh_run"]


def lab_up(
    directory: Path, spec: Mapping[str, Any] | None = None, *, api: bool = True
) -> subprocess.CompletedProcess[str]:
    """``upgrader lab up --dir DIRECTORY`` from ``spec`` (written beside it as
    ``spec-NAME.yaml``; ``None``: the default lab); it must succeed. Returns the run
    (its stdout holds the summary and any warnings)."""
    args = ["lab", "up", "--dir", str(directory)]
    if spec is not None:
        directory.parent.mkdir(parents=True, exist_ok=True)
        # not DIRECTORY.spec.yaml: a name that starts with the lab's path made
        # `lab restart-node` keep the node's SSH sessions alive
        spec_file = directory.parent / f"spec-{directory.name}.yaml"
        spec_file.write_text(yaml.safe_dump(dict(spec), sort_keys=False))
        args += ["--spec", str(spec_file)]
    if not api:
        args.append("--no-api")
    up = cli(*args, timeout=300)
    assert up.returncode == 0, up.stderr + up.stdout
    return up


def lab_down(directory: Path) -> None:
    """``upgrader lab down``: every process of the lab stopped, nothing listening (or it
    fails)."""
    down = cli("lab", "down", "--dir", str(directory), timeout=120)
    assert down.returncode == 0, down.stderr + down.stdout


@contextmanager
def running_lab(
    directory: Path, spec: Mapping[str, Any] | None = None, *, api: bool = True
) -> Iterator[Path]:
    """A lab for the ``with`` block, brought down after it whatever happens."""
    lab_up(directory, spec, api=api)
    try:
        yield directory
    finally:
        lab_down(directory)


def ssh_run(client: paramiko.SSHClient, command: str, timeout: float = 60) -> tuple[int, str, str]:
    """``command`` on ``client``'s node: its exit status, stdout and stderr; the connection
    is closed after it, whatever happens."""
    try:
        _, out, err = client.exec_command(command, timeout=timeout)
        o, e = out.read().decode(), err.read().decode()
        return out.channel.recv_exit_status(), o, e
    finally:
        client.close()


class LabFiles(LabDir):
    """What ``lab up`` wrote in ``dir`` (:class:`bench._labdir.LabDir`) and the ways in that
    every test uses."""

    def connect(
        self, node: str, user: str | None = None, timeout: float = 60
    ) -> paramiko.SSHClient:
        """A new SSH connection that trusts only the lab's known_hosts (the host key must be
        the one ``lab up`` wrote), as the lab's SSH user unless ``user`` is given."""
        client = paramiko.SSHClient()
        client.load_host_keys(str(self.dir / "known_hosts"))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            self.address(node),
            port=self.ssh_port,
            username=user or self.ssh_user,
            key_filename=str(self.dir / "id_ed25519"),
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            look_for_keys=False,
            allow_agent=False,
        )
        return client

    def kubectl(self, *args: str, timeout: float = 60) -> str:
        """The real ``kubectl`` on the lab's kubeconfig; its stdout (it must succeed)."""
        return subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=cli_env(),
            check=True,
        ).stdout
