"""The default playbook's rendered commands, run by a real POSIX shell (``sh``) against
stand-in package tools that print what the real ones print (DESIGN §1) and log their
arguments. Proves the exact-version lookup, its failure message, the "already done?"
checks and that a hostile value stays inert."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from upgrader.core.playbook import StepContext, expand_step, load_playbooks, render_template
from upgrader.core.versions import KubeVersion

V = KubeVersion.parse("v1.28.4")

MADISON = """\
   kubeadm | 1.28.5-1.1 | https://pkgs.k8s.io/core:/stable:/v1.28/deb  Packages
   kubeadm | 1.28.4-1.1 | https://pkgs.k8s.io/core:/stable:/v1.28/deb  Packages
   kubeadm | 1.28.3-1.1 | https://pkgs.k8s.io/core:/stable:/v1.28/deb  Packages
"""

DNF_LIST = """\
Last metadata expiration check: 0:00:01 ago on Mon 04 Dec 2023 10:00:00 AM UTC.
Installed Packages
kubeadm.x86_64                 1.27.8-150500.1.1                 @kubernetes
Available Packages
kubeadm.x86_64                 1.28.3-150500.1.1                 kubernetes
kubeadm.x86_64                 1.28.4-150500.1.1                 kubernetes
kubeadm.x86_64                 1.28.5-150500.1.1                 kubernetes
"""


def tool(bindir: Path, name: str, body: str) -> None:
    p = bindir / name
    p.write_text(f'#!/bin/sh\necho "{name} $*" >> "$LOG"\n{body}\n')
    p.chmod(p.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def node(tmp_path: Path) -> Path:
    """A directory with bin/ (stand-in tools) and log (their calls)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (tmp_path / "madison").write_text(MADISON)
    (tmp_path / "dnf-list").write_text(DNF_LIST)
    tool(bindir, "apt-cache", 'cat "$NODE/madison"')
    tool(bindir, "apt-get", "exit 0")
    tool(bindir, "apt-mark", "exit 0")
    tool(bindir, "dnf", 'case "$1" in list) cat "$NODE/dnf-list";; esac')
    tool(bindir, "yum", 'case "$1" in list) cat "$NODE/dnf-list";; esac')
    tool(bindir, "dpkg-query", 'cat "$NODE/dpkg" 2>/dev/null')
    tool(bindir, "rpm", 'cat "$NODE/rpm" 2>/dev/null')
    return tmp_path


def run(node: Path, command: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{node / 'bin'}:/usr/bin:/bin",
        "LOG": str(node / "log"),
        "NODE": str(node),
        "HOME": str(node),
    }
    return subprocess.run(
        ["sh", "-c", command], env=env, capture_output=True, text=True, timeout=30, cwd=node
    )


def calls(node: Path) -> list[str]:
    log = node / "log"
    return log.read_text().splitlines() if log.exists() else []


def command_of(
    phase: str,
    name: str,
    pm: str,
    pkg_version: str | None = None,
    versionlocked: tuple[str, ...] = (),
) -> str:
    pb = load_playbooks()
    spec = next(s for s in pb.phase(phase).all_steps if s.name == name)
    ctx = StepContext(
        V, "w-1", "worker", "demo", pm, pkg_version=pkg_version, versionlocked=versionlocked
    )
    cmd = expand_step(spec, phase, ctx).command
    assert cmd is not None
    return cmd


def check_of(phase: str, name: str, pm: str) -> str:
    pb = load_playbooks()
    spec = next(s for s in pb.phase(phase).all_steps if s.name == name)
    check = expand_step(spec, phase, StepContext(V, "w-1", "worker", "demo", pm)).check
    assert check is not None
    return check


def test_apt_refreshes_stale_lists_then_looks_up_the_exact_version(node: Path) -> None:
    # the lists do not offer 1.28.4 yet; `apt-get update` brings it
    (node / "madison.fresh").write_text(MADISON)
    (node / "madison").write_text(MADISON.replace("1.28.4-1.1", "1.28.2-1.1"))
    tool(
        node / "bin",
        "apt-get",
        'case "$1" in update) cp "$NODE/madison.fresh" "$NODE/madison";; esac',
    )
    r = run(node, command_of("worker", "kubeadm-package", "apt"))
    assert r.returncode == 0, r.stderr
    assert calls(node) == [
        "apt-get -o DPkg::Lock::Timeout=300 check",  # waits for the dpkg lock
        "apt-mark unhold kubeadm",
        "apt-cache madison kubeadm",  # does the repository offer 1.28.4? not yet
        "apt-get update",
        "apt-cache madison kubeadm",  # the exact version string
        "apt-get install -y -o DPkg::Lock::Timeout=300 kubeadm=1.28.4-1.1",
        "apt-mark hold kubeadm",
    ]


@pytest.mark.parametrize(
    ("pm", "expected"),
    [
        pytest.param(
            "apt",
            [
                "apt-get -o DPkg::Lock::Timeout=300 check",  # waits for the dpkg lock
                "apt-mark unhold kubeadm",
                # the lists offer 1.28.4 (the visit's package-repository step has just run
                # `apt-get update`): no refresh, then the exact version string
                "apt-cache madison kubeadm",
                "apt-cache madison kubeadm",
                "apt-get install -y -o DPkg::Lock::Timeout=300 kubeadm=1.28.4-1.1",
                "apt-mark hold kubeadm",
            ],
            id="apt-fresh-lists-are-not-refreshed-again",
        ),
        pytest.param(
            "dnf5",  # dnf5 rejects --disableexcludes; kubernetes/website#52027 uses the setopt
            [
                "dnf list --refresh --showduplicates --setopt=disable_excludes=kubernetes kubeadm",
                "dnf install -y kubeadm-1.28.4-150500.1.1 --setopt=disable_excludes=kubernetes",
            ],
            id="dnf5-lists-and-installs-with-the-setopt",
        ),
    ],
)
def test_kubeadm_package_runs_exactly(node: Path, pm: str, expected: list[str]) -> None:
    r = run(node, command_of("worker", "kubeadm-package", pm))
    assert r.returncode == 0, r.stderr
    assert calls(node) == expected


def test_apt_missing_version_fails_clearly_and_installs_nothing(node: Path) -> None:
    (node / "madison").write_text(MADISON.replace("1.28.4-1.1", "1.28.6-1.1"))
    r = run(node, command_of("worker", "kubeadm-package", "apt"))
    assert r.returncode != 0
    assert "upgrader: kubeadm 1.28.4 is not offered by the configured package repository" in (
        r.stderr
    )
    assert not any(c.startswith("apt-get install") for c in calls(node))


def test_apt_kubelet_and_kubectl_get_the_same_exact_version(node: Path) -> None:
    r = run(node, command_of("worker", "kubelet-kubectl-packages", "apt"))
    assert r.returncode == 0, r.stderr
    assert (
        "apt-get install -y -o DPkg::Lock::Timeout=300 kubelet=1.28.4-1.1 kubectl=1.28.4-1.1"
        in calls(node)
    )


def test_apt_known_version_is_used_without_a_lookup(node: Path) -> None:
    r = run(node, command_of("worker", "kubeadm-package", "apt", pkg_version="1.28.4-1.1"))
    assert r.returncode == 0, r.stderr
    # one listing (are the lists fresh?), no lookup of the version string, no refresh
    assert calls(node) == [
        "apt-get -o DPkg::Lock::Timeout=300 check",
        "apt-mark unhold kubeadm",
        "apt-cache madison kubeadm",
        "apt-get install -y -o DPkg::Lock::Timeout=300 kubeadm=1.28.4-1.1",
        "apt-mark hold kubeadm",
    ]


@pytest.mark.parametrize("pm", ["dnf", "yum"])
def test_rpm_looks_up_the_exact_version(node: Path, pm: str) -> None:
    r = run(node, command_of("worker", "kubeadm-package", pm))
    assert r.returncode == 0, r.stderr
    installs = [c for c in calls(node) if " install " in c]
    assert installs == [
        f"{pm} install -y kubeadm-1.28.4-150500.1.1 --disableexcludes=kubernetes "
        "--setopt=keepcache=1"
    ]


@pytest.mark.parametrize("install_rc", [0, 1])
def test_versionlocks_are_released_and_restored_even_when_the_install_fails(
    node: Path, install_rc: int
) -> None:
    """dnf-plugins-core plugins/versionlock.py: a lock excludes every other version, so the
    install runs between `versionlock delete` and `versionlock add` of the locked packages."""
    tool(
        node / "bin",
        "dnf",
        f'case "$1" in list) cat "$NODE/dnf-list";; install) exit {install_rc};; esac',
    )
    cmd = command_of("worker", "kubelet-kubectl-packages", "dnf", versionlocked=("kubelet",))
    r = run(node, cmd)
    assert r.returncode == install_rc, r.stderr
    assert calls(node) == [
        "dnf versionlock delete kubelet",
        "dnf list --refresh --showduplicates --disableexcludes=kubernetes kubeadm",
        "dnf install -y kubelet-1.28.4-150500.1.1 kubectl-1.28.4-150500.1.1 "
        "--disableexcludes=kubernetes",
        "dnf versionlock add kubelet",
    ]


def test_rpm_missing_version_fails_clearly(node: Path) -> None:
    (node / "dnf-list").write_text(DNF_LIST.replace("1.28.4-150500.1.1", "1.28.6-150500.1.1"))
    r = run(node, command_of("worker", "kubeadm-package", "dnf"))
    assert r.returncode != 0
    assert "kubeadm 1.28.4 is not offered" in r.stderr
    assert not [c for c in calls(node) if " install " in c]


PACKAGE_DB = {"apt": "dpkg", "dnf": "rpm"}  # the file the node's package query answers from


@pytest.mark.parametrize(
    ("step", "pm", "installed", "done"),
    [
        ("kubeadm-package", "apt", "kubeadm 1.28.4-1.1 hold ok installed\n", True),
        ("kubeadm-package", "apt", "kubeadm 1.28.4-1.1 install ok installed\n", False),  # not held
        ("kubeadm-package", "apt", "kubeadm 1.27.8-1.1 hold ok installed\n", False),
        ("kubeadm-package", "apt", "kubeadm 1.28.40-1.1 hold ok installed\n", False),
        ("kubeadm-package", "apt", "", False),
        (
            "kubelet-kubectl-packages",
            "apt",
            "kubelet 1.28.4-1.1 hold ok installed\nkubectl 1.28.4-1.1 hold ok installed\n",
            True,
        ),
        (
            "kubelet-kubectl-packages",
            "apt",
            "kubelet 1.28.4-1.1 hold ok installed\nkubectl 1.27.8-1.1 hold ok installed\n",
            False,
        ),
        ("kubeadm-package", "dnf", "kubeadm 1.28.4\n", True),
        ("kubeadm-package", "dnf", "kubeadm 1.27.8\n", False),
        ("kubeadm-package", "dnf", "package kubeadm is not installed\n", False),
    ],
)
def test_package_step_check(node: Path, step: str, pm: str, installed: str, done: bool) -> None:
    """A package step's check passes exactly when the wanted version is installed (and, with
    apt, held), as the node's package database says."""
    (node / PACKAGE_DB[pm]).write_text(installed)
    r = run(node, check_of("worker", step, pm))
    assert (r.returncode == 0) is done


def test_hostile_value_is_not_executed(node: Path) -> None:
    hostile = "$(touch pwned1)`touch pwned2`; touch pwned3"
    cmd = render_template("echo {node}", {"node": hostile}, quote=True)
    r = run(node, cmd)
    assert r.returncode == 0
    assert r.stdout == hostile + "\n"
    assert not [p for p in os.listdir(node) if p.startswith("pwned")]
