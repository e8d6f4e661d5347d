"""The lab's Debian nodes run the machine's real apt, dpkg, gpg and curl on real ``.deb``
packages from signed repositories laid out like pkgs.k8s.io, and the product's package
steps hold up against them: dependencies (kubernetes/release
``cmd/krel/templates/latest/metadata.yaml``), holds, the dpkg lock."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_run import cli
from labkit import fast_playbooks

from upgrader.core.playbook import RepoConfig, StepContext, expand_step, load_playbooks
from upgrader.core.versions import KubeVersion
from upgrader_lab import debnode, debrepo, runner
from upgrader_lab import spec as labspec
from upgrader_lab.node import repo, wrapper

pytestmark = pytest.mark.integration

HOST_STATUS = Path("/var/lib/dpkg/status")


def _dpkg_deb(*args: str) -> str:
    return subprocess.run(
        ["dpkg-deb", *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout


# --------------------------------------------------------------------------- packages


@pytest.mark.parametrize(
    ("package", "version", "depends", "files"),
    [
        (
            "kubeadm",
            "1.28.4-1.1",
            "kubelet (>= 1.19.0), kubectl (>= 1.19.0), kubernetes-cni (>= 1.2.0), "
            "cri-tools (>= 1.28.0)",
            ["./usr/bin/kubeadm", "./usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf"],
        ),
        ("kubeadm", "1.30.2-1.1", "cri-tools (>= 1.30.0)", ["./usr/bin/kubeadm"]),
        ("kubeadm", "1.32.0-1.1", "", ["./usr/bin/kubeadm"]),
        (
            "kubelet",
            "1.28.4-1.1",
            "kubernetes-cni (>= 1.2.0)",
            ["./usr/bin/kubelet", "./usr/lib/systemd/system/kubelet.service"],
        ),
        ("kubectl", "1.28.4-1.1", "", ["./usr/bin/kubectl"]),
        ("cri-tools", "1.28.0-1.1", "", ["./usr/bin/crictl"]),
        ("kubernetes-cni", "1.2.0-2.1", "", ["./opt/cni/bin/bridge", "./opt/cni/bin/loopback"]),
    ],
)
def test_debs_pass_the_real_dpkg_deb(
    tmp_path: Path, package: str, version: str, depends: str, files: list[str]
) -> None:
    """Depends per kubernetes/release cmd/krel/templates/latest/metadata.yaml (kubeadm 1.28:
    kubelet, kubectl, kubernetes-cni >= 1.2.0, cri-tools >= 1.28.0; 1.30-1.31: cri-tools >=
    1.30.0 only; 1.32+: none; kubelet >= 1.28: kubernetes-cni >= 1.2.0), paths per the
    templates' *.spec %files; the real dpkg-deb reads the archive."""
    deb = debrepo.cached_deb(tmp_path, package, version, sys.executable)
    assert deb.name == f"{package}_{version}_amd64.deb"
    fields = _dpkg_deb("--field", str(deb), "Package", "Version", "Architecture", "Depends")
    got = dict(line.split(": ", 1) for line in fields.splitlines() if ": " in line)
    assert got["Package"] == package and got["Version"] == version
    assert got["Architecture"] == "amd64"
    assert got.get("Depends", "") == depends
    listing = _dpkg_deb("--contents", str(deb))
    paths = [line.split()[-1] for line in listing.splitlines()]
    assert all(f in paths for f in files), listing
    if package == "kubelet":  # debbuild: %config(noreplace) /etc/default/kubelet
        assert "./etc/default/kubelet" in paths
        conf = subprocess.run(
            ["dpkg-deb", "--ctrl-tarfile", str(deb)], capture_output=True, check=True, timeout=60
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(conf)) as tar:
            member = tar.extractfile("./conffiles")
            assert member is not None and member.read() == b"/etc/default/kubelet\n"
    assert all(
        p.startswith(("./usr/bin", "./usr/lib/", "./opt/", "./etc/", "./var/lib", "./"))
        for p in paths
    )


def test_every_minor_repository_satisfies_its_own_packages_depends() -> None:
    """Each minor's cri-tools and kubernetes-cni satisfy the Depends of every kubeadm and
    kubelet of that minor (metadata.yaml), so a node can install any of them from it."""

    def key(v: str) -> tuple[int, ...]:
        return tuple(int(x) for x in v.split("-")[0].split("."))

    for minor, versions in repo.build_repository().items():
        have = {
            "cri-tools": debrepo.cri_tools_version(minor),
            "kubernetes-cni": debrepo.cni_version(minor),
        }
        for v in versions:
            for pkg in ("kubeadm", "kubelet"):
                for dep in debrepo.depends(pkg, v):
                    name, _, rest = dep.partition(" (>= ")
                    if name in have:
                        assert key(have[name]) >= key(rest.rstrip(")")), (minor, pkg, v, dep)


def _gpgv(keyring: Path, repo_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real ``gpgv`` with ``keyring`` on ``args`` (files of ``repo_dir``)."""
    return subprocess.run(
        ["gpgv", "--keyring", str(keyring), *args],
        cwd=repo_dir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_repository_is_signed_indexed_and_lacks_missing_versions(tmp_path: Path) -> None:
    """pkgs.k8s.io's flat layout (core:/stable:/v1.NN/deb/ with InRelease, Release,
    Release.gpg, Release.key, Packages, Packages.gz, amd64/*.deb): the real gpgv accepts
    InRelease and Release.gpg with the dearmored Release.key; a missing version is absent."""
    debrepo.write_repositories(tmp_path, {"1.28": ["1.28.0", "1.28.1", "1.28.4"]}, sys.executable)
    d = debrepo.repo_dir(tmp_path, "1.28")
    assert d == tmp_path / "pkgs" / "core:" / "stable:" / "v1.28" / "deb"
    for name in ("InRelease", "Release", "Release.gpg", "Release.key", "Packages", "Packages.gz"):
        assert (d / name).is_file(), name
    keyring = tmp_path / "keyring.gpg"
    keyring.write_bytes(debnode.dearmor((d / "Release.key").read_bytes()))
    for args in (["InRelease"], ["Release.gpg", "Release"]):
        proc = _gpgv(keyring, d, *args)
        assert proc.returncode == 0, proc.stderr
    packages = (d / "Packages").read_text()
    assert "Version: 1.28.3-1.1" not in packages
    stanza = next(
        s for s in packages.split("\n\n") if "Version: 1.28.4-1.1" in s and "kubeadm" in s
    )
    assert (
        "Depends: kubelet (>= 1.19.0), kubectl (>= 1.19.0), kubernetes-cni (>= 1.2.0), " in stanza
    )
    assert "Filename: amd64/kubeadm_1.28.4-1.1_amd64.deb" in stanza
    assert "Package: cri-tools\nVersion: 1.28.0-1.1" in packages
    assert "Package: kubernetes-cni\nVersion: 1.2.0-2.1" in packages

    # publishing the missing version later (a rebuild) keeps the key the nodes trust: the
    # old keyring still verifies the new InRelease, which now lists 1.28.3
    key = debrepo.signing_key_path(tmp_path)
    assert key.is_file() and key.stat().st_mode & 0o777 == 0o600
    debrepo.write_repositories(
        tmp_path, {"1.28": ["1.28.0", "1.28.1", "1.28.3", "1.28.4"]}, sys.executable
    )
    assert "Version: 1.28.3-1.1" in (d / "Packages").read_text()
    again = _gpgv(keyring, d, "InRelease")
    assert again.returncode == 0, again.stderr


# --------------------------------------------------------------------------- a lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    lab_dir = tmp_path_factory.mktemp("apt") / "lab"
    spec = labspec.parse_spec(
        {
            "version": "v1.27.8",
            "nodes": [
                {"name": "cp-1", "role": "control-plane"},
                {"name": "w-1", "role": "worker"},
                {"name": "w-2", "role": "worker", "held": ["kubeadm", "cri-tools"]},
            ],
        }
    )
    runner.up(lab_dir, spec, start_api=False)
    try:
        yield lab_dir
    finally:
        runner.down(lab_dir, purge=True)


def _run(lab_dir: Path, node: str, command: str) -> subprocess.CompletedProcess[str]:
    return wrapper.run_on_node(lab_dir, node, command, timeout=180)


def _ok(lab_dir: Path, node: str, command: str) -> str:
    proc = _run(lab_dir, node, command)
    assert proc.returncode == 0, f"{command!r} on {node}: {proc.stderr}"
    return proc.stdout


def worker_step_command(name: str, ctx: StepContext) -> str:
    """The command of the default playbook's worker step ``name``, rendered for ``ctx``."""
    pb = load_playbooks()
    spec = next(s for s in pb.phase("worker").steps if s.name == name)
    command = expand_step(spec, "worker", ctx).command
    assert command is not None
    return command


def test_nodes_start_as_the_install_page_leaves_them(lab: Path) -> None:
    """kubernetes.io "Installing kubeadm" (Debian): keyring from Release.key, the
    sources line with signed-by, the packages installed and held, apt-get update run."""
    info = json.loads((lab / "lab.json").read_text())
    url = info["pkgserver"]["url_template"].replace("{minor}", "1.27")
    assert _ok(lab, "w-1", "cat /etc/apt/sources.list.d/kubernetes.list") == (
        f"deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] {url} /\n"
    )
    assert _ok(lab, "w-1", "ls /etc/apt/sources.list.d") == "kubernetes.list\n"
    assert _ok(lab, "w-1", "apt-mark showhold") == "kubeadm\nkubectl\nkubelet\n"
    assert _ok(lab, "w-2", "apt-mark showhold") == "cri-tools\nkubeadm\n"
    madison = _ok(lab, "w-1", "apt-cache madison kubeadm").splitlines()
    assert madison[0].split(" | ")[2] == url.rstrip("/") + "  Packages"
    assert _ok(lab, "cp-1", "kubeadm version -o short") == "v1.27.8\n"
    # real curl trusts the lab CA through the node's ca-certificates.crt
    key = _ok(lab, "w-1", f"curl -fsSL {url}Release.key")
    assert key.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    status = inventory_packages(lab)
    assert status == {
        "manager": "apt",
        "repository": "custom",
        "url_template": info["pkgserver"]["url_template"],
        "release_checksums": "./releases",
    }
    assert runner.status(lab)["pkgserver"]["pids"]


def inventory_packages(lab: Path) -> dict[str, Any]:
    doc = yaml.safe_load((lab / "inventory.yaml").read_text())
    return dict(doc["packages"])


def test_a_node_install_leaves_the_hosts_dpkg_database_unchanged(lab: Path) -> None:
    """Each node has its own dpkg database and apt state (overlays of /var/lib, /var/cache,
    /var/log, /usr/bin, /usr/lib, /opt, /etc): an install on a node writes none of the
    host's files."""
    before = hashlib.sha256(HOST_STATUS.read_bytes()).hexdigest()
    out = _ok(
        lab,
        "w-1",
        "apt-get install -y --allow-change-held-packages kubectl=1.27.9-1.1 && "
        "dpkg-query -W -f='${Version}' kubectl",
    )
    assert out.endswith("1.27.9-1.1")
    assert hashlib.sha256(HOST_STATUS.read_bytes()).hexdigest() == before
    assert "Version: 1.27.9-1.1\n" not in HOST_STATUS.read_text()
    # the other nodes keep theirs
    assert _ok(lab, "w-2", "dpkg-query -W -f='${Version}' kubectl") == "1.27.8-1.1"


def test_a_held_cri_tools_breaks_the_naive_install_as_real_apt_does(lab: Path) -> None:
    """The issue's reproduction: kubeadm 1.28 Depends: cri-tools (>= 1.28.0)
    (kubernetes/release metadata.yaml); with cri-tools held, real apt refuses, even with
    --allow-change-held-packages."""
    _ok(lab, "w-2", "sed -i 's#/v1.27/#/v1.28/#' /etc/apt/sources.list.d/kubernetes.list")
    _ok(lab, "w-2", "apt-get update -qq")
    r = _run(lab, "w-2", "apt-get install -y --allow-change-held-packages kubeadm=1.28.4-1.1")
    assert r.returncode == 100
    assert "kubeadm : Depends: cri-tools (>= 1.28.0) but 1.27.0-1.1 is to be installed" in r.stdout
    assert "E: Unable to correct problems, you have held broken packages." in r.stderr
    # the product's kubeadm-package step for this node (facts: cri-tools held)
    command = worker_step_command(
        "kubeadm-package",
        StepContext(
            KubeVersion.parse("v1.28.4"),
            "w-2",
            "worker",
            "lab",
            "apt",
            pkg_version="1.28.4-1.1",
            held_deps=("cri-tools",),
        ),
    )
    assert "apt-mark unhold kubeadm cri-tools" in command
    _ok(lab, "w-2", command)
    assert _ok(lab, "w-2", "dpkg-query -W -f='${Package} ${Version}\\n' cri-tools kubeadm") == (
        "cri-tools 1.28.0-1.1\nkubeadm 1.28.4-1.1\n"
    )
    assert _ok(lab, "w-2", "apt-mark showhold") == "cri-tools\nkubeadm\n"


def test_the_repository_step_refreshes_a_replaced_signing_key(tmp_path: Path) -> None:
    """The pkgs.k8s.io key expired once and was replaced (DESIGN section 5): the product's
    repository step fetches Release.key on every visit, so a node whose repository is at
    the hop's minor already gets the new key and apt-get update works again."""
    lab_dir = tmp_path / "lab"
    spec = labspec.parse_spec({"nodes": [{"name": "cp-1", "role": "control-plane"}]})
    runner.up(lab_dir, spec, start_api=False)
    try:
        debrepo.rotate_key(lab_dir)
        r = _run(lab_dir, "cp-1", "apt-get update")
        # real apt keeps the old lists and only warns (exit 0): the signature error is easy
        # to miss, which is why the step fetches the key every time
        assert r.returncode == 0 and "NO_PUBKEY" in r.stderr, r.stderr
        url = json.loads((lab_dir / "lab.json").read_text())["pkgserver"]["url_template"]
        command = worker_step_command(
            "package-repository",
            StepContext(
                KubeVersion.parse("v1.27.9"),
                "cp-1",
                "control-plane",
                "lab",
                "apt",
                repo=RepoConfig("custom", url),
            ),
        )
        r = _run(lab_dir, "cp-1", command)
        assert r.returncode == 0 and "NO_PUBKEY" not in r.stderr, r.stderr
        assert "1.27.9-1.1" in _ok(lab_dir, "cp-1", "apt-cache madison kubeadm")
    finally:
        runner.down(lab_dir, purge=True)


# Holds dpkg's frontend lock while its sentinel file (argv[1]) exists (60 s at most): the
# test releases it 3 s after the product's command started, however loaded the machine is.
LOCKER = (
    f"{sys.executable} -c 'import fcntl, os, sys, time; "
    'f = open("/var/lib/dpkg/lock-frontend", "w"); '
    'fcntl.lockf(f, fcntl.LOCK_EX); print("locked", flush=True); t = time.monotonic(); '
    'exec("while os.path.exists(sys.argv[1]) and time.monotonic() - t < 60: time.sleep(0.05)")\''
)


def test_the_package_step_waits_for_a_held_dpkg_lock(lab: Path) -> None:
    """unattended-upgrades holds /var/lib/dpkg/lock-frontend (an fcntl lock, as apt and dpkg
    take it); apt-mark fails at once on it, the product's step waits (apt-get check /
    install with -o DPkg::Lock::Timeout) and then succeeds."""
    command = worker_step_command(
        "kubeadm-package",
        StepContext(
            KubeVersion.parse("v1.27.9"), "w-1", "worker", "lab", "apt", pkg_version="1.27.9-1.1"
        ),
    )
    script = (
        "touch /tmp/upgrader-lab-locker.$$.hold; "
        f"{LOCKER} /tmp/upgrader-lab-locker.$$.hold > /tmp/upgrader-lab-locker.$$ & "
        "while ! grep -q locked /tmp/upgrader-lab-locker.$$ 2>/dev/null; do sleep 0.1; done; "
        "apt-mark unhold kubeadm >/dev/null 2>&1; echo naive=$?; "
        "(sleep 3; rm -f /tmp/upgrader-lab-locker.$$.hold) & "
        f"{command}; rc=$?; rm -f /tmp/upgrader-lab-locker.$$; echo rc=$rc"
    )
    started = time.monotonic()
    out = _ok(lab, "w-1", script)
    assert "naive=100" in out  # apt-mark does not wait
    tail = out.strip().splitlines()[-1]
    assert tail == "rc=0", out
    assert time.monotonic() - started >= 3.0
    assert _ok(lab, "w-1", "dpkg-query -W -f='${Version} ${Status}' kubeadm") == (
        "1.27.9-1.1 hold ok installed"
    )


def test_faults_still_apply_to_the_real_tools(tmp_path: Path) -> None:
    """A fault's ``match`` is checked by the node's shim before the real apt-get runs; the
    call is recorded in calls.jsonl with the real tool's exit code."""
    lab_dir = tmp_path / "lab"
    spec = labspec.parse_spec(
        {
            "version": "v1.27.8",
            "nodes": [{"name": "cp-1", "role": "control-plane"}],
            "faults": [
                {
                    "node": "cp-1",
                    "match": "apt-get install -y",
                    "times": 1,
                    "exit": 100,
                    "stderr": "E: simulated",
                }
            ],
        }
    )
    runner.up(lab_dir, spec, start_api=False)
    try:
        r = _run(lab_dir, "cp-1", "apt-get install -y kubectl=1.27.8-1.1")
        assert r.returncode == 100 and r.stderr == "E: simulated\n"
        r = _run(lab_dir, "cp-1", "apt-get install -y nosuchpkg")
        assert r.returncode == 100 and r.stderr == "E: Unable to locate package nosuchpkg\n"
        calls = [
            json.loads(line)
            for line in (lab_dir / "nodes/cp-1/calls.jsonl").read_text().splitlines()
        ]
        assert [(c["argv"][-1], c["exit_code"]) for c in calls[-2:]] == [
            ("kubectl=1.27.8-1.1", 100),
            ("nosuchpkg", 100),
        ]
        assert calls[-2].get("fault") == 0 and "fault" not in calls[-1]
    finally:
        runner.down(lab_dir, purge=True)


def test_lab_up_down_stops_the_package_server(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    spec = labspec.parse_spec({"nodes": [{"name": "cp-1", "role": "control-plane"}]})
    runner.up(lab_dir, spec, start_api=False)
    st = runner.status(lab_dir)
    pid = st["pkgserver"]["pids"][0]
    port = st["pkgserver"]["port"]
    assert runner.alive(pid)
    down = runner.down(lab_dir)
    assert pid in down.stopped and not down.listening
    assert not runner.alive(pid)
    # a restart keeps the port the nodes' sources lists name
    runner.up(lab_dir, None, start_api=False)
    try:
        assert runner.status(lab_dir)["pkgserver"]["port"] == port
        assert (
            _ok(lab_dir, "cp-1", "apt-get update -qq && apt-cache madison kubelet | wc -l") != "0\n"
        )
    finally:
        runner.down(lab_dir, purge=True)


# --------------------------------------------------------------------------- apply


def test_apply_with_cri_tools_held_on_a_worker_keeps_exactly_the_holds(tmp_path: Path) -> None:
    """Issue 11 item 2 on the real apt: kubeadm/kubelet 1.28 Depend on cri-tools (>= 1.28.0)
    and kubernetes-cni (>= 1.2.0) (kubernetes/release metadata.yaml); cri-tools is held on
    w-1. The plan says so (PACKAGE_DEPENDENCY_HELD), apply succeeds, cri-tools is upgraded
    and every node keeps exactly the holds it had."""
    lab_dir = tmp_path / "lab"
    spec = labspec.parse_spec(
        {
            "version": "v1.27.8",
            "delays": {"kubelet_ready": 0.3, "pod_termination": 0.1},
            "nodes": [
                {"name": "cp-1", "role": "control-plane"},
                {
                    "name": "w-1",
                    "role": "worker",
                    "held": ["kubeadm", "kubelet", "kubectl", "cri-tools"],
                },
                {"name": "w-2", "role": "worker"},
            ],
        }
    )
    runner.up(lab_dir, spec)
    try:
        inventory = str(lab_dir / "inventory.yaml")
        plan = cli("plan", "-i", inventory, "--to", "v1.28.4", timeout=300)
        assert plan.returncode == 0, plan.stderr + plan.stdout
        assert "PACKAGE_DEPENDENCY_HELD" in plan.stdout
        assert "apt-mark unhold kubeadm cri-tools" in plan.stdout
        playbooks = fast_playbooks(tmp_path / "playbooks")
        args = ["apply", "-i", inventory, "--to", "v1.28.4", "--yes"]
        apply = cli(*args, "--playbooks", str(playbooks), timeout=900)
        assert apply.returncode == 0, apply.stderr[-3000:] + apply.stdout[-3000:]
        query = "dpkg-query -W -f='${Package} ${Version}\\n' cri-tools kubeadm kubelet"
        assert _ok(lab_dir, "w-1", query) == (
            "cri-tools 1.28.0-1.1\nkubeadm 1.28.4-1.1\nkubelet 1.28.4-1.1\n"
        )
        assert _ok(lab_dir, "w-1", "apt-mark showhold") == (
            "cri-tools\nkubeadm\nkubectl\nkubelet\n"
        )
        for node in ("cp-1", "w-2"):
            assert _ok(lab_dir, node, "apt-mark showhold") == "kubeadm\nkubectl\nkubelet\n"
            assert _ok(lab_dir, node, "dpkg-query -W -f='${Version}' cri-tools") == "1.28.0-1.1"
    finally:
        runner.down(lab_dir, purge=True)
