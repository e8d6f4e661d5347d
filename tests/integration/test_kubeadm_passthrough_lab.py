"""kubeadm pass-through end to end against the lab (issue 14 item 3): ``apply --patches
DIR`` copies the patch files to the control-plane node (root's 0700 directory, sha256
checked) and ``kubeadm upgrade apply`` on cp-1 gets ``--patches <that directory>`` and
applies them (the lab's kubeadm records each patch it applied, as kubeadm's
``[patches] Applied patch ...`` lines say); ``--kubeadm-config`` with an
UpgradeConfiguration for a 1.27 -> 1.28 upgrade is refused as a plan finding (exit 3,
nothing run)."""

from __future__ import annotations

import hashlib
import json
import stat
from collections.abc import Callable
from pathlib import Path

from apply_kit import ADDONS, Lab, cluster_spec
from brief_text import unfold

PATCHES = "/etc/kubernetes/upgrader/patches"


def test_patches_reach_kubeadm_upgrade_apply_on_cp1_and_are_applied(
    make_lab: Callable[..., Lab],
    tmp_path: Path,
) -> None:
    lab = make_lab(cluster_spec("v1.28.4", workers=1, workloads=ADDONS))
    patches = tmp_path / "patches"
    patches.mkdir()
    api_patch = b"spec:\n  containers:\n  - {name: kube-apiserver, env: [{name: X, value: '1'}]}\n"
    etcd_patch = b'[{"op": "add", "path": "/metadata/labels/x", "value": "y"}]\n'
    (patches / "kube-apiserver+strategic.yaml").write_bytes(api_patch)
    (patches / "etcd+json.json").write_bytes(etcd_patch)

    r = lab.apply("--skip-etcd-snapshot", "--patches", str(patches), to="v1.29.2")
    assert r.returncode == 0, r.stdout + r.stderr
    # the plan shows the copy step and the flag
    assert "kubeadm-files, kubeadm-upgrade-plan, kubeadm-upgrade-apply" in r.stdout
    out = unfold(r.stdout)
    assert "kubeadm-files on cp-1:" in out and "| sha256sum --status -c -" in out
    assert f"kubeadm upgrade apply v1.29.2 -y --patches {PATCHES}" in out
    applies = [c for c in lab.calls("cp-1") if c.startswith("kubeadm upgrade apply")]
    assert applies == [f"kubeadm upgrade apply v1.29.2 -y --patches {PATCHES}"]
    # the worker got neither the files nor the flag
    nodes = [c for c in lab.calls("w-1") if c.startswith("kubeadm upgrade node")]
    assert nodes == ["kubeadm upgrade node"]
    assert not (lab.dir / "nodes/w-1/root/etc/kubernetes/upgrader").exists()
    # the lab's kubeadm applied both patches, reading what upgrader copied
    applied = json.loads(
        (lab.dir / "nodes/cp-1/root/var/lib/upgrader-lab/patches-applied.json").read_text()
    )
    assert sorted((a["command"], a["target"], a["dir"], a["sha256"]) for a in applied) == [
        ("apply", "etcd", PATCHES, hashlib.sha256(etcd_patch).hexdigest()),
        ("apply", "kube-apiserver", PATCHES, hashlib.sha256(api_patch).hexdigest()),
    ]
    # root's directory, 0700; the files 0600
    remote = lab.dir / "nodes/cp-1/root/etc/kubernetes/upgrader"
    assert stat.S_IMODE(remote.stat().st_mode) == 0o700
    assert stat.S_IMODE((remote / "patches").stat().st_mode) == 0o700
    for f in (remote / "patches").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert lab.state_doc()["steps"]["v1.29.2/cp-1/first-control-plane/kubeadm-files"]["status"] in (
        "done",
        "succeeded",
        "ok",
    )


def test_an_upgrade_configuration_for_a_128_target_is_a_finding_and_nothing_runs(
    make_lab: Callable[..., Lab],
    tmp_path: Path,
) -> None:
    lab = make_lab(cluster_spec("v1.27.8", workers=1, workloads=ADDONS))
    config = tmp_path / "upgrade.yaml"
    config.write_text(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: UpgradeConfiguration\n"
        "apply:\n  etcdUpgrade: false\n"
    )
    before = {n: len(lab.calls(n)) for n in ("cp-1", "w-1")}
    r = lab.apply("--skip-etcd-snapshot", "--kubeadm-config", str(config), to="v1.28.4")
    assert r.returncode == 3, r.stdout + r.stderr
    assert "KUBEADM_CONFIG_UNSUPPORTED" in r.stdout
    assert "Traceback" not in r.stderr
    for n in ("cp-1", "w-1"):
        ran = lab.calls(n)[before[n] :]
        assert not [c for c in ran if c.startswith(("kubeadm upgrade", "apt-get install"))], ran
    assert not (lab.dir / "nodes/cp-1/root/etc/kubernetes/upgrader").exists()
