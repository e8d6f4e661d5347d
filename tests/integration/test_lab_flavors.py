"""The lab's node flavors, tool by tool, run through the lab's own wrapper (what its sshd
ForceCommand runs). Each behaviour names the upstream source it follows:

* rhel (Rocky 9, dnf4): rpm-software-management/dnf ``dnf/base.py`` (``Base._finalize_base``:
  ``--downloadonly`` packages "saved in cache until the next successful transaction",
  deleted then unless ``keepcache``), ``dnf/base.py`` messages (``All matches were filtered
  out by exclude filtering for argument``), dnf-plugins-core ``plugins/versionlock.py``
  (``Adding versionlock on:``, ``pkgtup2spec`` = ``NAME-EPOCH:VERSION-RELEASE.*``); the
  kubeadm install page's ``exclude=kubelet kubeadm kubectl cri-tools kubernetes-cni``.
* fedora (Fedora 41, dnf5): rpm-software-management/dnf5 ``dnf5/main.cpp`` (``Unknown
  argument "..." for command "..."``, exit 2 = ``ExitCode::ARGPARSER_ERROR``; ``dnf5
  version``), ``libdnf5/base/log_event.cpp`` (``matches only excluded packages``),
  ``libdnf5/base/transaction.cpp`` (only the transaction's own packages leave the cache),
  ``dnf5/commands/versionlock`` and ``libdnf5/rpm/versionlock_config.cpp``;
  kubernetes/website#52027 (``--setopt=disable_excludes=kubernetes``).
* kubespray: kubernetes-sigs/kubespray ``roles/kubespray_defaults/defaults/main/main.yml``
  (``bin_dir: /usr/local/bin``, ``etcd_cert_dir``), ``roles/kubernetes/node/templates/
  kubelet.service.j2``, ``roles/etcd/templates/etcd-host.service.j2``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_run import cli
from labkit import lab_down, lab_up

from upgrader_lab.node import wrapper

pytestmark = pytest.mark.integration

SPEC = {
    "version": "v1.27.8",
    "nodes": [
        {"name": "ks-cp", "role": "control-plane", "flavor": "kubespray"},
        {"name": "r-1", "role": "worker", "flavor": "rhel"},
        {"name": "r-2", "role": "worker", "flavor": "rhel", "held": ["kubelet"]},
        {"name": "f-1", "role": "worker", "flavor": "fedora"},
        {"name": "f-2", "role": "worker", "flavor": "fedora"},
        {"name": "k-1", "role": "worker", "flavor": "kubespray"},
        {"name": "d-1", "role": "worker"},
    ],
}
EXCLUDED = "--disableexcludes=kubernetes"


class Nodes:
    def __init__(self, lab_dir: Path) -> None:
        self.dir = lab_dir

    def run(self, node: str, command: str) -> subprocess.CompletedProcess[str]:
        return wrapper.run_on_node(self.dir, node, command)

    def ok(self, node: str, command: str) -> str:
        proc = self.run(node, command)
        assert proc.returncode == 0, f"{command!r} on {node}: {proc.returncode} {proc.stderr}"
        return proc.stdout

    def db(self, node: str) -> dict[str, object]:
        path = self.dir / "nodes" / node / "root" / "var/lib/upgrader-lab/packages.json"
        data: dict[str, object] = json.loads(path.read_text())
        return data


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    lab_dir = tmp_path_factory.mktemp("flavors") / "lab"
    lab_up(lab_dir, SPEC, api=False)
    yield Nodes(lab_dir)
    lab_down(lab_dir)


# --------------------------------------------------------------------------- rhel (dnf4)


def test_rhel_dnf4_version_excludes_and_the_versionlock_plugin(nodes: Nodes) -> None:
    assert nodes.ok("r-1", "dnf --version").splitlines()[0] == "4.14.0"
    assert 'ID="rocky"' in nodes.ok("r-1", "cat /etc/os-release")
    assert "keepcache" not in nodes.ok("r-1", "cat /etc/dnf/dnf.conf")
    r = nodes.run("r-1", "dnf install -y kubeadm-1.27.10")
    assert r.returncode == 1
    assert "All matches were filtered out by exclude filtering for argument: kubeadm-1.27.10" in (
        r.stdout
    )
    assert r.stderr == "Error: Unable to find a match: kubeadm-1.27.10\n"
    # no plugin on r-1: the command does not exist
    r = nodes.run("r-1", "dnf versionlock list")
    assert r.returncode == 1 and r.stderr.startswith("No such command: versionlock.")
    # r-2 has it (held on an rpm node = versionlocked), with dnf4's list format
    assert nodes.ok("r-2", "dnf -q versionlock list") == "kubelet-0:1.27.8-150500.1.1.*\n"
    assert "kubelet-0:1.27.8-150500.1.1.*" in nodes.ok(
        "r-2", "cat /etc/dnf/plugins/versionlock.list"
    )
    r = nodes.run("r-2", f"dnf install -y kubelet-1.27.10 {EXCLUDED}")
    assert r.returncode == 1 and "filtered out by exclude filtering" in r.stdout
    out = nodes.ok("r-2", "dnf versionlock delete kubelet")
    assert "Deleting versionlock for: kubelet-0:1.27.8-150500.1.1.*" in out
    assert nodes.ok("r-2", "dnf -q versionlock list") == ""


def test_rhel_dnf4_next_install_deletes_downloadonly_packages_unless_keepcache(
    nodes: Nodes,
) -> None:
    pkgs = "kubeadm-1.27.9 kubelet-1.27.9 kubectl-1.27.9"
    out = nodes.ok("r-1", f"dnf install --downloadonly -y {pkgs} {EXCLUDED}")
    assert "The downloaded packages were saved in cache until the next successful" in out
    nodes.ok("r-1", f"dnf install -y kubeadm-1.27.9 {EXCLUDED}")
    out = nodes.ok("r-1", f"dnf install -y kubelet-1.27.9 kubectl-1.27.9 {EXCLUDED}")
    assert "Already downloaded" not in out  # deleted by the kubeadm transaction
    fetched = nodes.db("r-1")["fetched"]
    assert isinstance(fetched, list) and fetched.count("kubelet=1.27.9-150500.1.1") == 2
    # with keepcache on the first install they are still there
    pkgs = "kubeadm-1.27.10 kubelet-1.27.10 kubectl-1.27.10"
    nodes.ok("r-1", f"dnf install --downloadonly -y {pkgs} {EXCLUDED}")
    nodes.ok("r-1", f"dnf install -y kubeadm-1.27.10 {EXCLUDED} --setopt=keepcache=1")
    out = nodes.ok("r-1", f"dnf install -y kubelet-1.27.10 kubectl-1.27.10 {EXCLUDED}")
    assert "[SKIPPED] kubelet-1.27.10-150500.1.1.x86_64.rpm: Already downloaded" in out
    fetched = nodes.db("r-1")["fetched"]
    assert isinstance(fetched, list) and fetched.count("kubelet=1.27.10-150500.1.1") == 1
    assert nodes.db("r-1")["downloaded"] == []  # that last transaction cleaned up


# --------------------------------------------------------------------------- fedora (dnf5)


def test_fedora_dnf5_rejects_dnf4_flags_and_takes_the_setopt(nodes: Nodes) -> None:
    assert nodes.ok("f-1", "dnf --version").startswith("dnf5 version 5.")
    assert "ID=fedora\nVERSION_ID=41\n" in nodes.ok("f-1", "cat /etc/os-release")
    r = nodes.run("f-1", f"dnf list --showduplicates kubeadm {EXCLUDED}")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == (
        f'Unknown argument "{EXCLUDED}" for command "list". Add "--help" for more '
        "information about the arguments.\n"
    )
    r = nodes.run("f-1", "dnf install -y kubeadm-1.27.10")
    assert r.returncode == 1
    assert "Failed to resolve the transaction:\nArgument 'kubeadm-1.27.10' matches only " in (
        r.stderr
    )
    out = nodes.ok(
        "f-1", "dnf list --showduplicates kubeadm --setopt=disable_excludes=kubernetes 2>/dev/null"
    )
    lines = out.splitlines()
    assert lines[0] == "Installed packages"
    assert lines[1].split() == ["kubeadm.x86_64", "1.27.8-150500.1.1", "kubernetes"]
    assert "Available packages" in lines
    assert nodes.ok("f-1", "dnf makecache 2>/dev/null") == "Metadata cache created.\n"


def test_fedora_dnf5_keeps_other_downloads_and_has_a_builtin_versionlock(nodes: Nodes) -> None:
    opt = "--setopt=disable_excludes=kubernetes"
    nodes.ok("f-2", f"dnf install --downloadonly -y kubeadm-1.27.9 kubelet-1.27.9 {opt}")
    nodes.ok("f-2", f"dnf install -y kubeadm-1.27.9 {opt}")
    out = nodes.ok("f-2", f"dnf install -y kubelet-1.27.9 {opt}")
    assert "kubelet-0:1.27.9-150500.1.1.x86_64: Already downloaded" in out
    assert nodes.ok("f-2", "dnf versionlock add kubelet") == (
        'Adding versionlock on "kubelet = 1.27.9-150500.1.1".\n'
    )
    listed = nodes.ok("f-2", "dnf -q versionlock list")
    assert "Package name: kubelet\nevr = 1.27.9-150500.1.1\n" in listed
    assert 'name = "kubelet"' in nodes.ok("f-2", "cat /etc/dnf/versionlock.toml")
    r = nodes.run("f-2", f"dnf install -y kubelet-1.27.10 {opt}")
    assert r.returncode == 1
    assert "Argument 'kubelet-1.27.10' matches only packages excluded by versionlock." in r.stderr
    assert "Deleting versionlock entry:" in nodes.ok("f-2", "dnf versionlock delete kubelet")
    nodes.ok("f-2", f"dnf install -y kubelet-1.27.10 {opt}")


# --------------------------------------------------------------------------- kubespray


def test_kubespray_worker_binaries_in_usr_local_bin_and_no_packages(nodes: Nodes) -> None:
    for tool in ("kubeadm", "kubelet", "kubectl"):
        assert nodes.ok("k-1", f"command -v {tool}") == f"/usr/local/bin/{tool}\n"
    assert nodes.ok("k-1", "kubelet --version") == "Kubernetes v1.27.8\n"
    r = nodes.run("k-1", "dpkg-query -S /usr/local/bin/kubeadm")
    assert r.returncode == 1
    assert r.stderr == "dpkg-query: no path found matching pattern /usr/local/bin/kubeadm\n"
    assert nodes.run("k-1", "dpkg-query -W kubeadm").returncode == 1
    unit = nodes.ok("k-1", "cat /etc/systemd/system/kubelet.service")
    assert "ExecStart=/usr/local/bin/kubelet \\\n" in unit
    assert "EnvironmentFile=-/etc/kubernetes/kubelet.env" in unit
    # a Debian node's binaries are its packages' files
    assert nodes.ok("d-1", "dpkg-query -S /usr/bin/kubeadm") == "kubeadm: /usr/bin/kubeadm\n"
    # rpm -qf on an rpm node
    assert nodes.ok("r-2", "rpm -qf --qf '%{NAME}\\n' /usr/bin/kubelet") == "kubelet\n"


def test_kubespray_control_plane_runs_etcd_as_a_host_service(nodes: Nodes) -> None:
    assert "ExecStart=/usr/local/bin/etcd\n" in nodes.ok(
        "ks-cp", "cat /etc/systemd/system/etcd.service"
    )
    env = nodes.ok("ks-cp", "cat /etc/etcd.env")
    assert "ETCD_CERT_FILE=/etc/ssl/etcd/ssl/member-ks-cp.pem" in env
    certs = nodes.ok("ks-cp", "ls /etc/ssl/etcd/ssl").split()
    assert {"ca.pem", "admin-ks-cp.pem", "member-ks-cp-key.pem", "node-ks-cp.pem"} <= set(certs)
    assert nodes.ok("ks-cp", "etcd --version").startswith("etcd Version: 3.5.")
    manifests = nodes.ok("ks-cp", "ls /etc/kubernetes/manifests").split()
    assert "etcd.yaml" not in manifests and "kube-apiserver.yaml" in manifests
    assert nodes.ok("ks-cp", "command -v etcdctl") == "/usr/local/bin/etcdctl\n"


def test_lab_up_flavor_flag_builds_every_node_of_that_flavor(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    up = cli("lab", "up", "--dir", str(lab_dir), "--workers", "1", "--flavor", "fedora", "--no-api")
    try:
        assert up.returncode == 0, up.stderr
        info = json.loads((lab_dir / "lab.json").read_text())
        assert {n["flavor"] for n in info["nodes"].values()} == {"fedora"}
        out = wrapper.run_on_node(lab_dir, "w-1", "dnf --version").stdout
        assert out.startswith("dnf5 version")
        bad = cli("lab", "up", "--dir", str(tmp_path / "other"), "--flavor", "suse", "--no-api")
        assert bad.returncode != 0
        assert "--flavor: 'suse' is not one of debian, rhel, fedora, kubespray" in bad.stderr
        assert "Traceback" not in bad.stderr
    finally:
        cli("lab", "down", "--dir", str(lab_dir), timeout=120)
