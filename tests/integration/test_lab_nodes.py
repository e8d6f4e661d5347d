"""The lab's nodes over a real OpenSSH sshd (host keys verified against the lab's
known_hosts): per-node files through the wrapper, the simulated tools' outputs and
refusals, faults, concurrency, the API-backed kubeadm/systemctl flows, and up/down."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
import pytest
import yaml
from lab_api_fixture import wait_for
from labkit import LabFiles, lab_down, lab_up

from bench._perf import flag_spec
from upgrader.errors import ConfigError
from upgrader_lab import cost, runner, trust
from upgrader_lab import spec as labspec

pytestmark = pytest.mark.integration

# These tests drive the node tools themselves as root (root's login: ssh_user root); the
# default non-root login through the real sudo is tested in test_lab_sudo.py.
SESSION_SPEC: dict[str, Any] = {
    "ssh_user": "root",
    "version": "v1.27.8",
    "nodes": [
        {"name": "cp-1", "role": "control-plane"},
        {"name": "w-1", "role": "worker", "kubelet": "v1.26.5"},
        {"name": "w-2", "role": "worker"},
        {"name": "w-3", "role": "worker"},
        {"name": "w-4", "role": "worker"},
        {"name": "r-1", "role": "worker", "os_family": "rhel", "versionlock": True},
        *[{"name": f"n-{i}", "role": "worker"} for i in range(1, 45)],
    ],
    "faults": [
        {
            "node": "w-2",
            "match": "kubeadm upgrade node",
            "times": 1,
            "exit": 3,
            "stderr": "simulated failure",
        },
        {"node": "w-2", "match": "apt-get install", "times": 1, "hang": 60},
        {"node": "w-2", "match": "kubeadm config images pull", "times": 1, "drop": True},
    ],
    "missing_packages": ["1.28.3"],
    "delays": {"kubelet_ready": 0.3},
}


@dataclass
class Out:
    rc: int | None  # None: the session closed without an exit status
    out: str
    err: str


class Lab(LabFiles):
    """A started lab and SSH access to its nodes (one cached connection per node)."""

    def __init__(self, lab_dir: Path) -> None:
        super().__init__(lab_dir)
        self.port = int(self.info["ssh"]["port"])
        self._clients: dict[str, paramiko.SSHClient] = {}
        self._lock = threading.Lock()

    def client(self, node: str) -> paramiko.SSHClient:
        with self._lock:
            if node not in self._clients:
                self._clients[node] = self.connect(node)
            return self._clients[node]

    def run(self, node: str, command: str, timeout: float = 60.0) -> Out:
        _, stdout, stderr = self.client(node).exec_command(command, timeout=timeout)
        out = stdout.read().decode()
        err = stderr.read().decode()
        status = stdout.channel.recv_exit_status()
        return Out(None if status == -1 else status, out, err)

    def ok(self, node: str, command: str) -> str:
        r = self.run(node, command)
        assert r.rc == 0, f"{command!r} on {node}: rc={r.rc} {r.err}"
        return r.out

    def calls(self, node: str) -> list[dict[str, Any]]:
        return self.records(node)

    def close(self) -> None:
        for c in self._clients.values():
            c.close()
        self._clients.clear()


def start_lab(lab_dir: Path, spec: dict[str, Any] | None) -> Lab:
    lab_up(lab_dir, spec)
    return Lab(lab_dir)


@contextmanager
def started_lab(lab_dir: Path, spec: dict[str, Any] | None) -> Iterator[Lab]:
    """A lab for the ``with`` block (a fixture's lifetime): its connections closed and
    the lab brought down after it."""
    lab = start_lab(lab_dir, spec)
    try:
        yield lab
    finally:
        lab.close()
        lab_down(lab_dir)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with started_lab(tmp_path_factory.mktemp("lab") / "nodes-lab", SESSION_SPEC) as the_lab:
        yield the_lab


@pytest.fixture(scope="module")
def api_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    spec = flag_spec(1, 2, ssh_user="root", version="v1.27.8", delays={"kubelet_ready": 0.3})
    with started_lab(tmp_path_factory.mktemp("lab") / "api-lab", spec) as the_lab:
        yield the_lab


def kube(lab: Lab) -> Any:
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=str(lab.dir / "kubeconfig"))  # type: ignore[no-untyped-call]
    return client.CoreV1Api(api_client)


# --------------------------------------------------------------------------- the lab's files


def test_up_writes_the_contract_files(lab: Lab) -> None:
    from upgrader.inventory import load_inventory

    assert set(lab.info) >= {"api", "ssh", "apiserver", "nodes"}
    assert lab.info["api"]["url"].startswith("https://127.0.0.1:")
    assert Path(lab.info["api"]["ca"]).is_file()
    assert len(lab.info["nodes"]) == 50
    assert lab.info["nodes"]["cp-1"]["root"] == str(lab.dir / "nodes" / "cp-1" / "root")
    # one sshd per 16 addresses (OpenSSH's listen-socket limit)
    assert len(lab.info["ssh"]["pids"]) == 4
    known = (lab.dir / "known_hosts").read_text().splitlines()
    assert len(known) == 50
    assert known[0].startswith(f"[{lab.address('cp-1')}]:{lab.port} ssh-ed25519 AAAA")
    spec = json.loads((lab.dir / "spec.json").read_text())
    assert spec["nodes"][1]["kubelet"] == "v1.26.5"
    inv = load_inventory(lab.dir / "inventory.yaml")
    assert [n.name for n in inv.nodes][:2] == ["cp-1", "w-1"]
    assert inv.package_manager_for("r-1") == "dnf"
    assert inv.package_manager_for("w-1") == "apt"
    target = inv.ssh_target("w-1")
    assert (target.host, target.port) == (lab.address("w-1"), lab.port)
    assert target.host_key_policy == "strict"


def test_commands_on_two_nodes_see_their_own_files(lab: Lab) -> None:
    assert lab.ok("w-3", "hostname; cat /etc/hostname") == "w-3\nw-3\n"
    lab.ok("w-3", "echo only-on-w-3 > /etc/kubernetes/marker")
    assert lab.ok("w-3", "cat /etc/kubernetes/marker") == "only-on-w-3\n"
    r = lab.run("w-4", "cat /etc/kubernetes/marker")
    assert r.rc == 1 and "No such file" in r.err
    assert (lab.dir / "nodes/w-3/root/etc/kubernetes/marker").read_text() == "only-on-w-3\n"
    assert (
        not Path("/etc/kubernetes/marker").exists()
        or "only-on" not in Path("/etc/kubernetes/marker").read_text()
    )
    # the node sees the host's other files too: real coreutils work
    assert lab.ok("w-3", "test -x /bin/sh && sed -n 1p /etc/os-release") == (
        'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n'
    )
    assert "Rocky Linux" in lab.ok("r-1", "cat /etc/os-release")


def test_the_node_lock_is_one_per_node_shared_by_its_sessions(lab: Lab) -> None:
    # What the engine's node lock relies on: a command holding /run/upgrader/upgrader.lock on
    # w-3 (in one SSH session) keeps a second session of w-3 out, not a session of w-4.
    from upgrader.core import nodelock

    holder = lab.connect("w-3")
    try:
        # (the wrapper hands the command's output over when it ends: wait for the lock)
        _, out, _ = holder.exec_command(nodelock.wrap("echo held; sleep 3", wait=5), timeout=30)
        lock = lab.dir / "nodes/w-3/lock/upgrader.lock"
        wait_for(
            lambda: (
                lock.exists()
                and subprocess.run(["flock", "-n", str(lock), "true"], check=False).returncode
            ),
            what="the holder's lock",
        )
        same = lab.run("w-3", nodelock.wrap("echo second", wait=0.3))
        assert same.rc == nodelock.BUSY_EXIT and nodelock.is_busy(same.rc, same.err)
        other = lab.run("w-4", nodelock.wrap("echo other", wait=0.3))
        assert (other.rc, other.out) == (0, "other\n")
        assert out.channel.recv_exit_status() == 0
        assert out.read() == b"held\n"
    finally:
        holder.close()
    after = lab.run("w-3", nodelock.wrap("echo after", wait=0.3))
    assert (after.rc, after.out) == (0, "after\n")
    assert (lab.dir / "nodes/w-3/lock/upgrader.lock").exists()


def test_installed_binaries_match_the_release_checksums(lab: Lab) -> None:
    line = lab.ok("cp-1", "sha256sum /usr/bin/kubeadm")
    assert line.split() == [
        (lab.dir / "releases/v1.27.8/kubeadm.sha256").read_text().strip(),
        "/usr/bin/kubeadm",
    ]
    kubelet_w1 = lab.ok("w-1", "sha256sum /usr/bin/kubelet").split()[0]
    assert kubelet_w1 == (lab.dir / "releases/v1.26.5/kubelet.sha256").read_text().strip()
    assert kubelet_w1 != lab.ok("cp-1", "sha256sum /usr/bin/kubelet").split()[0]


def test_version_commands(lab: Lab) -> None:
    assert lab.ok("w-1", "kubeadm version -o short") == "v1.27.8\n"
    assert lab.ok("w-1", "kubelet --version") == "Kubernetes v1.26.5\n"
    long = lab.ok("w-1", "kubeadm version")
    assert long.startswith(
        'kubeadm version: &version.Info{Major:"1", Minor:"27", GitVersion:"v1.27.8"'
    )
    doc = json.loads(lab.ok("w-1", "kubectl version --client -o json"))
    assert doc["clientVersion"]["gitVersion"] == "v1.27.8"
    assert doc["clientVersion"]["minor"] == "27"
    assert lab.ok("w-1", "kubectl version --client").startswith("Client Version: v1.27.8\n")


# --------------------------------------------------------------------------- apt / dpkg


def repo_url(lab: Lab, minor: str) -> str:
    """The lab's package repository of ``minor`` (its own server, pkgs.k8s.io's layout)."""
    return str(lab.info["pkgserver"]["url_template"]).replace("{minor}", minor)


def test_dpkg_query_apt_mark_and_madison_outputs(lab: Lab) -> None:
    """The machine's real dpkg-query (sorted by package name), apt-mark and apt-cache."""
    out = lab.ok(
        "w-1",
        "dpkg-query -W -f='${Package} ${Version} ${Status}\\n' kubeadm kubelet kubectl "
        "cri-tools kubernetes-cni",
    )
    assert out == (
        "cri-tools 1.27.0-1.1 install ok installed\n"
        "kubeadm 1.27.8-1.1 hold ok installed\n"
        "kubectl 1.27.8-1.1 hold ok installed\n"
        "kubelet 1.26.5-1.1 hold ok installed\n"
        "kubernetes-cni 1.2.0-2.1 install ok installed\n"
    )
    assert lab.ok("w-1", "apt-mark showhold") == "kubeadm\nkubectl\nkubelet\n"
    madison = lab.ok("w-1", "apt-cache madison kubeadm").splitlines()
    base = repo_url(lab, "1.27").rstrip("/")
    assert madison[0] == f"   kubeadm | 1.27.16-1.1 | {base}  Packages"
    assert f"   kubeadm | 1.27.8-1.1 | {base}  Packages" in madison
    assert madison[-1].split(" | ")[1].strip() == "1.27.0-1.1"
    assert all("/v1.27/" in line for line in madison)
    r = lab.run("w-1", "dpkg-query -W kubeadm nosuchpkg")
    assert r.rc == 1 and r.out == "kubeadm\t1.27.8-1.1\n"
    assert r.err == "dpkg-query: no packages found matching nosuchpkg\n"


def test_apt_refuses_held_packages_and_missing_versions(lab: Lab) -> None:
    r = lab.run("w-1", "apt-get install -y kubeadm=1.27.9-1.1")
    assert r.rc == 100
    assert r.err.strip().splitlines()[-1] == (
        "E: Held packages were changed and -y was used without --allow-change-held-packages."
    )
    assert "The following held packages will be changed:\n  kubeadm\n" in r.out
    r = lab.run("w-1", "apt-get install -y --allow-change-held-packages kubeadm=1.28.4-1.1")
    assert r.rc == 100
    assert r.err == "E: Version '1.28.4-1.1' for 'kubeadm' was not found\n"
    r = lab.run("w-1", "apt-get install -y nosuchpkg")
    assert r.rc == 100 and r.err == "E: Unable to locate package nosuchpkg\n"
    assert lab.ok("w-1", "kubeadm version -o short") == "v1.27.8\n"  # nothing changed


def test_apt_mark_texts(lab: Lab) -> None:
    assert lab.ok("w-4", "apt-mark unhold kubeadm") == "Canceled hold on kubeadm.\n"
    assert lab.ok("w-4", "apt-mark unhold kubeadm") == "kubeadm was already not on hold.\n"
    assert lab.ok("w-4", "apt-mark showhold") == "kubectl\nkubelet\n"
    assert lab.ok("w-4", "apt-mark hold kubeadm") == "kubeadm set on hold.\n"
    assert lab.ok("w-4", "apt-mark hold kubeadm") == "kubeadm was already set on hold.\n"


def test_minor_repo_switch_needs_apt_get_update(lab: Lab) -> None:
    """Real apt: lists of a source no longer listed are not used, so a switched sources
    list offers nothing until ``apt-get update``; kubeadm 1.28's ``Depends: cri-tools (>=
    1.28.0)`` (kubernetes/release cmd/krel/templates/latest/metadata.yaml) upgrades the
    unheld cri-tools with it."""
    node = "w-3"
    lab.ok(node, "sed -i 's#/v1.27/#/v1.28/#' /etc/apt/sources.list.d/kubernetes.list")
    assert lab.ok(node, "apt-cache madison kubeadm") == ""
    r = lab.run(node, "apt-get install -y --allow-change-held-packages kubeadm=1.28.4-1.1")
    assert r.rc == 100 and "was not found" in r.err
    update = lab.ok(node, "apt-get update")
    assert "core:/stable:/v1.28/deb  InRelease" in update
    assert update.endswith("Reading package lists...\n")
    versions = [
        ln.split(" | ")[1].strip() for ln in lab.ok(node, "apt-cache madison kubeadm").splitlines()
    ]
    assert versions[0] == "1.28.15-1.1"
    assert "1.28.2-1.1" in versions and "1.28.3-1.1" not in versions  # missing_packages
    assert all(v.startswith("1.28.") for v in versions)
    r = lab.run(node, "apt-get install -y --allow-change-held-packages kubeadm=1.28.3-1.1")
    assert r.rc == 100 and r.err == "E: Version '1.28.3-1.1' for 'kubeadm' was not found\n"
    out = lab.ok(node, "apt-get install -y --allow-change-held-packages kubeadm=1.28.4-1.1")
    assert "Unpacking kubeadm (1.28.4-1.1) over (1.27.8-1.1) ..." in out
    assert "Setting up kubeadm (1.28.4-1.1) ..." in out
    assert "Unpacking cri-tools (1.28.0-1.1) over (1.27.0-1.1) ..." in out
    assert lab.ok(node, "kubeadm version -o short") == "v1.28.4\n"
    # real apt: installing over a hold with --allow-change-held-packages drops the hold
    assert lab.ok(node, "dpkg-query -W -f='${Version} ${Status}' kubeadm") == (
        "1.28.4-1.1 install ok installed"
    )
    digest = lab.ok(node, "sha256sum /usr/bin/kubeadm").split()[0]
    assert digest == (lab.dir / "releases/v1.28.4/kubeadm.sha256").read_text().strip()
    # the new binary is in the node's tree, the other nodes keep theirs
    assert lab.ok("w-4", "kubeadm version -o short") == "v1.27.8\n"


def test_repository_switch_the_documented_way(lab: Lab) -> None:
    """curl the minor's Release.key, gpg --dearmor it into the keyring apt's signed-by names,
    rewrite the sources list, apt-get update (the kubeadm docs' procedure)."""
    node = "n-1"
    url = repo_url(lab, "1.29")
    lab.ok(node, "rm -f /etc/apt/keyrings/kubernetes-apt-keyring.gpg")
    line = f"deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] {url} /"
    lab.ok(node, f"echo '{line}' > /etc/apt/sources.list.d/kubernetes.list")
    r = lab.run(node, "apt-get update")
    assert r.rc == 100
    assert "NO_PUBKEY" in r.err or "not signed" in r.err, r.err
    lab.ok(
        node,
        "install -d -m 0755 /etc/apt/keyrings && "
        f"key=$(curl -fsSL {url}Release.key) && "
        "printf '%s\\n' \"$key\" | "
        "gpg --dearmor --yes -o /etc/apt/keyrings/kubernetes-apt-keyring.gpg",
    )
    assert lab.ok(node, "apt-get update").endswith("Reading package lists...\n")
    assert "/v1.29/" in lab.ok(node, "apt-cache madison kubeadm | head -1")
    r = lab.run(node, f"curl -fsSL {repo_url(lab, '1.99')}Release.key")
    assert r.rc == 22 and r.err == "curl: (22) The requested URL returned error: 403\n"
    r = lab.run(node, "curl -fsSL https://example.com/")
    assert r.rc == 6 and "Could not resolve host: example.com" in r.err
    sha = lab.ok(node, "curl -sL https://dl.k8s.io/release/v1.29.2/bin/linux/amd64/kubeadm.sha256")
    assert sha == (lab.dir / "releases/v1.29.2/kubeadm.sha256").read_text()


def test_container_runtime_answers(lab: Lab) -> None:
    assert lab.ok("n-2", "containerd --version").split()[:3] == [
        "containerd",
        "github.com/containerd/containerd",
        "v1.7.2",
    ]
    assert lab.run("n-2", "command -v dockerd").rc != 0


# --------------------------------------------------------------------------- rhel


def test_rhel_node_dnf_and_rpm(lab: Lab) -> None:
    assert lab.ok("r-1", "rpm -q --qf '%{VERSION}-%{RELEASE}\\n' kubeadm") == "1.27.8-150500.1.1\n"
    assert lab.ok("r-1", "rpm -q kubelet") == "kubelet-1.27.8-150500.1.1.x86_64\n"
    assert "baseurl=https://pkgs.k8s.io/core:/stable:/v1.27/rpm/" in lab.ok(
        "r-1", "cat /etc/yum.repos.d/kubernetes.repo"
    )
    r = lab.run("r-1", "dnf install -y kubeadm-1.27.10")
    assert r.rc == 1
    assert (
        "All matches were filtered out by exclude filtering for argument: kubeadm-1.27.10" in r.out
    )
    assert r.err == "Error: Unable to find a match: kubeadm-1.27.10\n"
    listing = lab.ok("r-1", "dnf list --showduplicates kubeadm --disableexcludes=kubernetes")
    lines = listing.splitlines()
    assert lines[1] == "Installed Packages"
    assert lines[2].split() == ["kubeadm.x86_64", "1.27.8-150500.1.1", "@kubernetes"]
    assert lines[3] == "Available Packages"
    assert lines[4].split() == ["kubeadm.x86_64", "1.27.0-150500.1.1", "kubernetes"]
    out = lab.ok("r-1", "yum install -y kubeadm-1.27.10 --disableexcludes=kubernetes")
    assert "Upgraded:\n  kubeadm-1.27.10-150500.1.1.x86_64\n" in out and out.endswith("Complete!\n")
    assert lab.ok("r-1", "rpm -q --qf '%{VERSION}-%{RELEASE}\\n' kubeadm") == "1.27.10-150500.1.1\n"
    assert lab.ok("r-1", "kubeadm version -o short") == "v1.27.10\n"
    lab.ok("r-1", "dnf versionlock add kubelet")
    assert lab.ok("r-1", "dnf versionlock list").splitlines()[-1] == "kubelet-0:1.27.8-150500.1.1.*"
    r = lab.run("r-1", "dnf install -y kubelet-1.27.10 --disableexcludes=kubernetes")
    assert r.rc == 1 and "Unable to find a match" in r.err
    r = lab.run("r-1", "apt-get --version")  # the host's Debian tools are hidden
    assert r.rc == 127


# --------------------------------------------------------------------------- calls and faults


def test_calls_jsonl_records_argv_and_exit_code(lab: Lab) -> None:
    before = len(lab.calls("w-4"))
    lab.ok("w-4", "kubeadm version -o short")
    r = lab.run("w-4", "apt-get install -y kubeadm=0.0.1-1.1")
    assert r.rc == 100
    new = lab.calls("w-4")[before:]
    assert [c["argv"] for c in new] == [
        ["kubeadm", "version", "-o", "short"],
        ["apt-get", "install", "-y", "kubeadm=0.0.1-1.1"],
    ]
    assert [c["exit_code"] for c in new] == [0, 100]
    assert all(c["start"] <= c["end"] for c in new)


def test_exit_fault_fires_only_its_times(lab: Lab) -> None:
    first = lab.run("w-2", "kubeadm upgrade node")
    assert first.rc == 3 and first.err == "simulated failure\n" and first.out == ""
    second = lab.run("w-2", "kubeadm upgrade node")
    assert second.rc == 0, second.err
    assert "[upgrade] The configuration for this node was successfully updated!" in second.out
    counts = json.loads((lab.dir / "nodes/w-2/faults.json").read_text())
    assert counts["0"] == 1
    calls = [c for c in lab.calls("w-2") if c["argv"][:3] == ["kubeadm", "upgrade", "node"]]
    assert [(c["exit_code"], c.get("fault")) for c in calls] == [(3, 0), (0, None)]


def test_hang_fault_holds_the_command_then_fires_no_more(lab: Lab) -> None:
    client = lab.connect("w-2")
    try:
        chan = client.get_transport().open_session()  # type: ignore[union-attr]
        chan.exec_command("apt-get install -y kubeadm=1.27.8-1.1")
        # The first matching call hangs (60 s in the spec): no exit status while we look,
        # while other commands on the node still answer.
        assert not chan.status_event.wait(1.0)
        assert lab.ok("w-2", "hostname") == "w-2\n"
        assert not chan.exit_status_ready()
        chan.close()
    finally:
        client.close()
    # Kill the hung session (as an operator would); the fault does not fire again.
    hung = [p for p in runner._session_pids(lab.dir) if "apt-get" in runner._cmdline(p)]
    for pid in hung:
        os.kill(pid, 9)
    wait_for(lambda: not any(runner.alive(p) for p in hung), what="the hung apt-get to go")
    r = lab.run("w-2", "apt-get install -y kubeadm=1.27.8-1.1", timeout=30)
    assert r.rc == 0
    assert "kubeadm is already the newest version (1.27.8-1.1)." in r.out


def test_drop_fault_closes_the_session_without_exit_status(lab: Lab) -> None:
    client = lab.connect("w-2")
    try:
        _, stdout, _ = client.exec_command(
            "kubeadm config images pull --kubernetes-version v1.27.8"
        )
        stdout.read()
        assert stdout.channel.recv_exit_status() == -1  # paramiko: no exit-status came
    finally:
        client.close()
    out = lab.ok("w-2", "kubeadm config images pull --kubernetes-version v1.27.8")
    assert "[config/images] Pulled registry.k8s.io/kube-apiserver:v1.27.8\n" in out
    dropped = [c for c in lab.calls("w-2") if c.get("dropped")]
    assert [c["argv"][:4] for c in dropped] == [["kubeadm", "config", "images", "pull"]]
    assert dropped[0]["exit_code"] is None


def test_fifty_nodes_dialled_at_once_all_answer(lab: Lab) -> None:
    names = list(lab.info["nodes"])
    assert len(names) == 50

    def one(name: str) -> tuple[str, str, int]:
        client = lab.connect(name)
        try:
            _, stdout, _ = client.exec_command("hostname; kubeadm version -o short")
            out = stdout.read().decode()
            return name, out, stdout.channel.recv_exit_status()
        finally:
            client.close()

    with ThreadPoolExecutor(len(names)) as pool:
        results = list(pool.map(one, names))
    bad = [r for r in results if r[2] != 0 or r[1].split()[0] != r[0]]
    assert bad == []


def test_sftp_reads_and_writes_the_nodes_files(lab: Lab) -> None:
    sftp = lab.client("w-4").open_sftp()
    try:
        with sftp.open("/etc/hostname") as fh:
            assert fh.read() == b"w-4\n"
        with sftp.open("/etc/kubernetes/sftp-marker", "w") as fh:
            fh.write(b"via sftp\n")
    finally:
        sftp.close()
    assert lab.ok("w-4", "cat /etc/kubernetes/sftp-marker") == "via sftp\n"
    assert (lab.dir / "nodes/w-4/root/etc/kubernetes/sftp-marker").read_bytes() == b"via sftp\n"


def test_no_etcdctl_on_the_host(lab: Lab) -> None:
    """kubeadm installs no etcdctl (its package depends on kubelet, kubectl, cri-tools and
    kubernetes-cni only): etcd's tools live in the etcd container (test_lab_etcd.py)."""
    for node in ("cp-1", "w-4"):
        r = lab.run(node, "etcdctl endpoint health")
        assert r.rc == 127 and "etcdctl: not found" in r.err
    assert lab.ok("cp-1", "command -v crictl") == "/usr/bin/crictl\n"


# --------------------------------------------------------------------------- with the API server


def test_apply_refuses_a_two_minor_jump(api_lab: Lab) -> None:
    r = api_lab.run("cp-1", "kubeadm upgrade apply v1.29.0 -y")
    assert r.rc == 1
    assert r.err.startswith(
        "[upgrade/version] FATAL: the --version argument is invalid due to these fatal errors:\n\n"
        '\t- Specified version to upgrade to "v1.29.0" is too high; kubeadm can upgrade only 1 '
        "minor version at a time\n"
    )
    assert r.err.endswith("To see the stack trace of this error execute with --v=5 or higher\n")
    r = api_lab.run("w-1", "kubeadm upgrade apply v1.27.9 -y")  # no admin.conf on a worker
    assert r.rc == 1 and "open /etc/kubernetes/admin.conf: no such file or directory" in r.err


def test_kubeadm_and_kubelet_upgrade_move_the_cluster(api_lab: Lab) -> None:
    core = kube(api_lab)
    cp_prep = (
        "sed -i 's#/v1.27/#/v1.28/#' /etc/apt/sources.list.d/kubernetes.list && apt-get update -q"
        " && apt-mark unhold kubeadm && apt-get install -y kubeadm=1.28.4-1.1"
        " && apt-mark hold kubeadm"
    )
    api_lab.ok("cp-1", cp_prep)
    r = api_lab.run("cp-1", "kubeadm upgrade apply v1.28.5 -y")  # above kubeadm's patch: --force
    assert r.rc == 1 and "Can be bypassed if you pass the --force flag" in r.err
    out = api_lab.ok("cp-1", "kubeadm upgrade apply v1.28.4 -y")
    assert out.rstrip().splitlines()[-3] == (
        '[upgrade/successful] SUCCESS! Your cluster was upgraded to "v1.28.4". Enjoy!'
    )
    cm = core.read_namespaced_config_map("kubeadm-config", "kube-system")
    assert "kubernetesVersion: v1.28.4" in cm.data["ClusterConfiguration"]
    assert "image: registry.k8s.io/kube-apiserver:v1.28.4" in api_lab.ok(
        "cp-1", "cat /etc/kubernetes/manifests/kube-apiserver.yaml"
    )
    # A worker whose kubeadm is two minors newer than the cluster is refused by upgrade node.
    r = api_lab.run(
        "w-2",
        "sed -i 's#/v1.27/#/v1.30/#' /etc/apt/sources.list.d/kubernetes.list && apt-get update -q"
        " && apt-get install -y --allow-change-held-packages kubeadm=1.30.2-1.1 >/dev/null"
        " && kubeadm upgrade node",
    )
    assert r.rc == 1 and "[upgrade/version] FATAL: this version of kubeadm only supports" in r.err
    # The worker's own upgrade: kubeadm, upgrade node, kubelet, restart.
    api_lab.ok(
        "w-1",
        "sed -i 's#/v1.27/#/v1.28/#' /etc/apt/sources.list.d/kubernetes.list && apt-get update -q"
        " && apt-get install -y --allow-change-held-packages kubeadm=1.28.4-1.1",
    )
    out = api_lab.ok("w-1", "kubeadm upgrade node")
    assert "[upgrade] Skipping phase. Not a control plane node." in out
    assert "v1.28.4" in api_lab.ok("w-1", "head -1 /var/lib/kubelet/config.yaml")
    api_lab.ok("w-1", "apt-get install -y --allow-change-held-packages kubelet=1.28.4-1.1")
    r = api_lab.run("w-1", "systemctl restart kubelet")
    assert r.rc == 0 and "Run 'systemctl daemon-reload' to reload units." in r.err
    api_lab.ok("w-1", "systemctl daemon-reload && systemctl restart kubelet")
    assert api_lab.ok("w-1", "systemctl is-active kubelet") == "active\n"

    def upgraded() -> bool:
        node = core.read_node("w-1")
        ready = [c.status for c in node.status.conditions if c.type == "Ready"]
        return bool(node.status.node_info.kubelet_version == "v1.28.4" and ready == ["True"])

    wait_for(upgraded, what="w-1 Ready at v1.28.4")
    assert api_lab.ok("w-1", "kubelet --version") == "Kubernetes v1.28.4\n"


def test_kubectl_on_a_node_uses_the_host_client_for_cluster_commands(api_lab: Lab) -> None:
    cmd = (
        "kubectl --kubeconfig=/etc/kubernetes/admin.conf -n kube-system get configmap "
        "kubeadm-config -o jsonpath='{.data.ClusterConfiguration}'"
    )
    r = api_lab.run("cp-1", cmd)
    if api_lab.info.get("host_kubectl"):
        assert r.rc == 0, r.err
        assert "kubernetesVersion: v1.2" in r.out
    else:
        assert r.rc == 1 and "no kubectl client on this machine" in r.err
    # Without a kubeconfig, a node's kubectl knows its own version only.
    r = api_lab.run("w-2", "kubectl version -o json")
    assert r.rc == 1 and json.loads(r.out)["clientVersion"]["gitVersion"] == "v1.27.8"
    assert "The connection to the server localhost:8080 was refused" in r.err


# --------------------------------------------------------------------------- up / down


def _listening_ports() -> set[int]:
    ports: set[int] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[3] == "0A":
            ports.add(int(parts[1].split(":")[1], 16))
    return ports


def test_up_down_leaves_no_process_and_no_listening_port(tmp_path: Path) -> None:
    lab_dir = tmp_path / "short-lived"
    spec = {
        "ssh_user": "root",
        "nodes": [{"name": "cp-1", "role": "control-plane"}, {"name": "w-1", "role": "worker"}],
        "faults": [{"node": "w-1", "match": "kubeadm version", "hang": 120}],
    }
    lab = start_lab(lab_dir, spec)
    with pytest.raises(runner.LabRunning):
        runner.up(lab_dir)
    lab.ok("cp-1", "echo kept > /etc/kubernetes/kept")
    hanging = lab.connect("w-1")
    hanging.exec_command("kubeadm version")
    wait_for(lambda: runner._session_pids(lab_dir), what="the hanging node session")
    pids = runner.running_pids(lab_dir)
    api_port = int(lab.info["api"]["url"].rsplit(":", 1)[1])
    watched = set(pids["sshd"] + pids["apiserver"]) | runner._session_pids(lab_dir)
    assert len(watched) >= 3
    lab.close()

    result = runner.down(lab_dir)
    hanging.close()
    assert result.left == [] and result.listening == []
    assert not [p for p in watched if runner.alive(p)]
    assert lab.port not in _listening_ports() and api_port not in _listening_ports()
    assert runner.status(lab_dir)["state"] == "stopped"

    # A restart keeps the lab's state (files, keys) and answers again, on the same port:
    # the inventory (and a recorded run's inputs) stay as they were.
    inventory_before = (lab_dir / "inventory.yaml").read_text()
    again = start_lab(lab_dir, None)
    assert again.ok("cp-1", "cat /etc/kubernetes/kept") == "kept\n"
    assert again.port == lab.port
    assert (lab_dir / "inventory.yaml").read_text() == inventory_before
    st = runner.status(lab_dir)
    assert st["state"] == "running" and st["sshd"]["answering"] == 2
    again.close()
    runner.down(lab_dir, purge=True)
    assert not lab_dir.exists()


def test_only_processes_naming_the_lab_directory_count_as_the_labs(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    other = tmp_path / "lab2"
    other.mkdir()
    # A process whose argv names a file in `other` (GNU sleep would reject a path argument).
    argv = [
        sys.executable,
        "-c",
        "import time; time.sleep(60)",
        str(other / "sshd" / "sshd_config"),
    ]
    proc = subprocess.Popen(argv)
    try:
        # Between fork and exec the child still shows our own command line: wait for the exec.
        deadline = time.monotonic() + 30
        while "time.sleep" not in runner._cmdline(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert runner.ours(proc.pid, other)
        assert not runner.ours(proc.pid, lab_dir)
    finally:
        proc.kill()
        proc.wait()
    assert not runner.ours(proc.pid, other)


def test_path_mode_fallback_runs_the_node_tools_on_the_node_tree(tmp_path: Path) -> None:
    lab_dir = tmp_path / "path-lab"
    spec = labspec.parse_spec(
        {
            "nodes": [
                {"name": "cp-1", "role": "control-plane"},
                {"name": "w-1", "role": "worker", "kubelet": "v1.26.5"},
            ]
        }
    )
    runner.up(lab_dir, spec, start_api=False, mount="path")
    lab = Lab(lab_dir)
    try:
        assert lab.info["mount"]["mode"] == "path"
        assert runner.status(lab_dir)["mount"]["mode"] == "path"
        assert lab.ok("w-1", "kubelet --version") == "Kubernetes v1.26.5\n"
        assert lab.ok("cp-1", "kubelet --version") == "Kubernetes v1.27.8\n"
        # the real apt and dpkg would change the host's own files here: they refuse
        r = lab.run("w-1", "apt-mark unhold kubelet")
        assert r.rc == 127 and "needs the overlay mount mode" in r.err
        assert [c["argv"][0] for c in lab.calls("w-1")][-2:] == ["kubelet", "apt-mark"]
    finally:
        lab.close()
        runner.down(lab_dir, purge=True)


def test_up_refuses_a_directory_that_holds_something_else(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    with pytest.raises(ConfigError, match="not a directory `upgrader lab up` created"):
        runner.up(tmp_path, None, start_api=False)
    assert (tmp_path / "notes.txt").read_text() == "mine\n"
    # a directory lab up made, where something else was put before any lab was built
    made = tmp_path / "made"
    trust.create(made)
    (made / "notes.txt").write_text("mine\n")
    with pytest.raises(ConfigError, match="not empty and holds no lab"):
        runner.up(made, None, start_api=False)


# --------------------------------------------------------------------------- the CLI


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "upgrader", "lab", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "spec.yaml"
    bad.write_text(yaml.safe_dump({"nodes": [{"name": "cp-1", "role": "boss"}]}))
    r = _cli("up", "--dir", str(tmp_path / "x"), "--spec", str(bad))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and f"{bad}: nodes[0].role:" in r.stderr
    r = _cli("up", "--dir", str(tmp_path / "x"), "--spec", str(bad), "--workers", "3")
    assert r.returncode == 2 and "--spec excludes" in r.stderr
    r = _cli("status", "--dir", str(tmp_path / "nothing"))
    assert r.returncode == 2 and "not a lab directory" in r.stderr


def test_cli_up_status_down(tmp_path: Path) -> None:
    d = tmp_path / "cli-lab"
    r = _cli(
        "up", "--dir", str(d), "--control-planes", "1", "--workers", "1", "--version", "v1.28.4"
    )
    assert r.returncode == 0, r.stderr
    assert "inventory:" in r.stdout and "upgrader lab down --dir" in r.stdout
    r = _cli("up", "--dir", str(d))
    assert r.returncode == 0 and "already runs" in r.stdout
    r = _cli("status", "--dir", str(d), "--json")
    st = json.loads(r.stdout)
    assert r.returncode == 0 and st["state"] == "running" and st["version"] == "v1.28.4"
    assert st["mount"]["mode"] in ("overlay", "path")
    r = _cli("down", "--dir", str(d))
    assert r.returncode == 0 and "nothing listens" in r.stdout
    r = _cli("status", "--dir", str(d))
    assert r.returncode == 1 and "stopped" in r.stdout


def test_checksum_files_are_the_sha256_of_what_gets_installed(lab: Lab) -> None:
    body = (lab.dir / "nodes/w-4/root/usr/bin/kubectl").read_bytes()
    assert hashlib.sha256(body).hexdigest() == (
        (lab.dir / "releases/v1.27.8/kubectl.sha256").read_text()
    )


def test_the_labs_own_cpu_counts_what_its_sessions_ran(lab: Lab) -> None:
    # a busy loop in the node's shell, then the shell's own account of its CPU (`times`:
    # the shell's user and system time on the first line); the lab's count must hold it
    burn = "i=0; while [ $i -lt 150000 ]; do i=$((i+1)); done; times"
    before = cost.cpu_seconds(lab.dir)
    client = lab.connect("w-1")  # its own connection: sessions are collected when it ends
    try:
        _, stdout, _ = client.exec_command(burn, timeout=120)
        out = stdout.read().decode()
        assert stdout.channel.recv_exit_status() == 0
    finally:
        client.close()
    spent = cost.cpu_since(lab.dir, before)
    user, system = (float(t.split("m")[1].rstrip("s")) for t in out.split("\n")[0].split())
    assert user + system > 0.05, out
    assert spent >= user + system, (spent, out)
