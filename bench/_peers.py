"""The peers the fan-out benchmark runs beside upgrader: ansible-core and pyinfra.

Owns: their private virtualenv ``bench/.venv-peers`` (created on first use with the
ordinary ``pip``, never the project's ``.venv``), their versions, and turning a lab into
what each peer reads — an Ansible INI inventory (the lab's key and known_hosts, strict host
key checking, no SSH connection sharing so every run is cold like upgrader's) and a pyinfra
inventory module (the same key and known_hosts, strict checking) — plus the command lines
that run one shell command on every node with ``N`` forks / parallel connections.

Must not: install anything outside ``bench/.venv-peers``, or relax host key checking.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from bench._perf import REPO, Lab, child_env

PEERS_VENV = REPO / "bench" / ".venv-peers"
PEER_PACKAGES = ("ansible-core", "pyinfra")


def _bin(name: str) -> Path:
    return PEERS_VENV / "bin" / name


def ensure_peers(log: Any = print) -> dict[str, str]:
    """Create ``bench/.venv-peers`` with ansible-core and pyinfra if missing; their versions."""
    stamp = PEERS_VENV / ".installed"
    if not stamp.exists() or not _bin("ansible").exists() or not _bin("pyinfra").exists():
        log(f"bench: installing {', '.join(PEER_PACKAGES)} into {PEERS_VENV} (once)")
        if not (PEERS_VENV / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
        subprocess.run(
            [
                str(_bin("python")),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                *PEER_PACKAGES,
            ],
            check=True,
        )
        stamp.write_text("ok\n")
    return peer_versions()


def peer_versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for pkg in PEER_PACKAGES:
        proc = subprocess.run(
            [str(_bin("python")), "-m", "pip", "show", pkg],
            capture_output=True,
            text=True,
            check=False,
        )
        version = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in proc.stdout.splitlines()
                if ln.startswith("Version:")
            ),
            "?",
        )
        out[pkg] = version
    return out


def ansible_inventory(lab: Lab, path: Path) -> Path:
    """An INI inventory of every lab node, with the lab's key and known_hosts."""
    lines = ["[all]"]
    for name, node in lab.nodes.items():
        lines.append(
            f"{name} ansible_host={node['address']} ansible_port={lab.ssh_port} "
            f"ansible_user={lab.ssh_user}"
        )
    common = f"-o UserKnownHostsFile={lab.dir / 'known_hosts'} -o StrictHostKeyChecking=yes"
    lines += [
        "[all:vars]",
        f"ansible_ssh_private_key_file={lab.dir / 'id_ed25519'}",
        f"ansible_ssh_common_args='{common}'",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def pyinfra_inventory(lab: Lab, path: Path) -> Path:
    """A pyinfra inventory module: every lab node with the lab's key and known_hosts."""
    hosts = [
        (
            name,
            {
                "ssh_hostname": node["address"],
                "ssh_port": lab.ssh_port,
                "ssh_user": lab.ssh_user,
                "ssh_key": str(lab.dir / "id_ed25519"),
                "ssh_known_hosts_file": str(lab.dir / "known_hosts"),
                "ssh_strict_host_key_checking": "yes",
                "ssh_allow_agent": False,
                "ssh_look_for_keys": False,
            },
        )
        for name, node in lab.nodes.items()
    ]
    path.write_text("hosts = " + repr(hosts) + "\n")
    return path


def ansible_run(
    inventory: Path, command: str, forks: int, home: Path
) -> tuple[list[str], dict[str, str]]:
    """``ansible all -m raw -a COMMAND -f N``: argv and environment (a private ANSIBLE_HOME;
    ControlMaster off, so no run reuses the previous run's connections)."""
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "ansible.cfg"
    cfg.write_text("[defaults]\n")  # none of the machine's or the user's configuration
    env = child_env(
        {
            "ANSIBLE_HOME": str(home),
            "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_SSH_ARGS": "-o ControlMaster=no",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_CONFIG": str(cfg),
        }
    )
    argv = [
        str(_bin("ansible")),
        "all",
        "-i",
        str(inventory),
        "-m",
        "raw",
        "-a",
        command,
        "-f",
        str(forks),
    ]
    return argv, env


def pyinfra_run(inventory: Path, command: str, parallel: int) -> tuple[list[str], dict[str, str]]:
    """``pyinfra INVENTORY exec -- COMMAND`` with ``--parallel N``."""
    argv = [
        str(_bin("pyinfra")),
        "-y",
        "--parallel",
        str(parallel),
        str(inventory),
        "exec",
        "--",
        command,
    ]
    return argv, child_env()


def ansible_outputs(stdout: str) -> dict[str, str]:
    """Each host's output in ``ansible`` ad-hoc output (``NAME | CHANGED | rc=0 >>`` blocks;
    only hosts whose command ran with exit 0)."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        parts = line.split(" | ")
        if len(parts) >= 3 and parts[1] in ("CHANGED", "SUCCESS", "FAILED", "UNREACHABLE!"):
            current = None
            if parts[1] == "CHANGED" and parts[2].startswith("rc=0"):
                current = out.setdefault(parts[0].strip(), [])
            continue
        if current is not None:
            current.append(line)
    return {h: "\n".join(lines) for h, lines in out.items()}


def pyinfra_outputs(stdout: str) -> dict[str, str]:
    """Each host's output in ``pyinfra exec`` output (lines ``[NAME]  text``), each line
    stripped on the left (pyinfra pads the names; enough to find the section markers)."""
    out: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        if line.startswith("[") and "] " in line:
            host, rest = line[1:].split("]", 1)
            out.setdefault(host, []).append(rest.lstrip())  # names are padded to align
    return {h: "\n".join(lines) for h, lines in out.items()}
