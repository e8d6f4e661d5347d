"""etcd on the lab's control planes as kubeadm leaves it, over the lab's real sshd.

Upstream sources the simulation follows (and these tests pin):
* kubernetes/kubernetes ``cmd/kubeadm/app/phases/etcd/local.go`` (the static pod manifest:
  hostPath volumes ``etcd-data`` = ``/var/lib/etcd``, ``etcd-certs`` =
  ``/etc/kubernetes/pki/etcd``) and ``cmd/kubeadm/app/constants/constants.go``
  (``SupportedEtcdVersion``: 3.5.x up to 1.33, 3.6.x from 1.34);
* kubernetes-sigs/cri-tools v1.28 ``cmd/crictl/container.go`` (``ps`` columns, ``-q``,
  ``--name`` regexp, ``-o json``), ``cmd/crictl/exec.go`` (``exec`` flags; a failing
  command -> ``logrus.Fatal``, exit 1), ``cmd/crictl/main.go`` and ``main_unix.go`` (the
  deprecated default endpoints warning), ``cmd/crictl/util.go`` (13-character ids);
* etcd-io/etcd ``client/v3/snapshot/v3_snapshot.go`` (``snapshot save``: zap logs, ``.part``
  then rename, ``Snapshot saved at``; ``Server version`` from 3.6),
  ``etcdctl/ctlv3/command/snapshot_command.go`` (3.5: ``snapshot status`` deprecated; 3.6:
  only ``save``, and cobra prints the usage of ``snapshot`` and exits 0 for anything
  else), ``etcdutl/snapshot/v3_snapshot.go`` (``Status`` JSON, ``version`` from 3.6);
* containerd/runc: exec of a binary missing from the (distroless) image fails with
  ``exec: "sh": executable file not found in $PATH``.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator

import pytest
from test_lab_nodes import Lab, started_lab

pytestmark = pytest.mark.integration

CERTS = (
    "--endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt "
    "--cert=/etc/kubernetes/pki/etcd/server.crt --key=/etc/kubernetes/pki/etcd/server.key"
)
ETCD_ID = "$(crictl ps -q --name '^etcd$' 2>/dev/null)"


@pytest.fixture(scope="module")
def etcd_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """cp-1 at 1.27 (etcd 3.5.7), cp-2 at 1.34 (etcd 3.6.4; a lab node's own version),
    w-1 a worker."""
    # the node tools themselves, driven as root (the non-root login: test_lab_sudo.py)
    spec = {
        "ssh_user": "root",
        "version": "v1.27.8",
        "nodes": [
            {"name": "cp-1", "role": "control-plane"},
            {
                "name": "cp-2",
                "role": "control-plane",
                "control_plane": "v1.34.8",
                "kubeadm": "v1.34.8",
                "kubelet": "v1.34.8",
                "kubectl": "v1.34.8",
            },
            {"name": "w-1", "role": "worker"},
        ],
        "faults": [
            {
                "node": "cp-1",
                "match": "endpoint health",
                "times": 1,
                "exit": 1,
                "stderr": "https://127.0.0.1:2379 is unhealthy: failed to commit proposal: "
                "context deadline exceeded\nError: unhealthy cluster",
            }
        ],
    }
    with started_lab(tmp_path_factory.mktemp("lab") / "etcd-lab", spec) as the_lab:
        yield the_lab


def test_etcd_is_a_static_pod_with_kubeadm_manifest(etcd_lab: Lab) -> None:
    import yaml

    root = etcd_lab.dir / "nodes" / "cp-1" / "root"
    manifest = root / "etc/kubernetes/manifests/etcd.yaml"
    assert stat.S_IMODE(manifest.stat().st_mode) == 0o600
    pod = yaml.safe_load(manifest.read_text())
    c = pod["spec"]["containers"][0]
    assert c["image"] == "registry.k8s.io/etcd:3.5.7-0"
    assert "--data-dir=/var/lib/etcd" in c["command"] and "--name=cp-1" in c["command"]
    volumes = {v["name"]: v["hostPath"]["path"] for v in pod["spec"]["volumes"]}
    assert volumes == {"etcd-data": "/var/lib/etcd", "etcd-certs": "/etc/kubernetes/pki/etcd"}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts == volumes
    assert stat.S_IMODE((root / "var/lib/etcd").stat().st_mode) == 0o700
    two = yaml.safe_load(
        (etcd_lab.dir / "nodes/cp-2/root/etc/kubernetes/manifests/etcd.yaml").read_text()
    )
    assert two["spec"]["containers"][0]["image"] == "registry.k8s.io/etcd:3.6.4-0"
    assert not (etcd_lab.dir / "nodes/w-1/root/etc/kubernetes/manifests/etcd.yaml").exists()


def test_crictl_lists_the_static_pods(etcd_lab: Lab) -> None:
    r = etcd_lab.run("cp-1", "crictl ps")
    assert r.rc == 0
    lines = r.out.splitlines()
    assert lines[0].split() == [
        "CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD", "ID", "POD",
    ]  # fmt: skip
    names = {line.split()[-1] for line in lines[1:]}
    assert names == {
        "etcd-cp-1",
        "kube-apiserver-cp-1",
        "kube-controller-manager-cp-1",
        "kube-scheduler-cp-1",
    }
    assert all(len(line.split()[0]) == 13 and "Running" in line for line in lines[1:])
    # no /etc/crictl.yaml on a kubeadm node: the deprecated default endpoints warning
    assert 'level=warning msg="runtime connect using default endpoints:' in r.err
    ids = etcd_lab.ok("cp-1", "crictl ps -q --name '^etcd$' 2>/dev/null").split()
    assert len(ids) == 1 and len(ids[0]) == 64
    again = etcd_lab.ok("cp-1", "crictl --runtime-endpoint unix:///run/containerd/containerd.sock "
                        "ps -q --name '^etcd$' --state running")  # fmt: skip
    assert again.split() == ids  # stable id; no warning with an endpoint
    doc = json.loads(etcd_lab.ok("cp-1", "crictl ps -o json --name etcd 2>/dev/null"))
    (c,) = doc["containers"]
    assert c["id"] == ids[0] and c["state"] == "CONTAINER_RUNNING"
    assert c["labels"]["io.kubernetes.pod.name"] == "etcd-cp-1"
    assert c["labels"]["io.kubernetes.pod.namespace"] == "kube-system"
    assert etcd_lab.ok("w-1", "crictl ps -q 2>/dev/null") == ""  # a worker: no static pods
    assert etcd_lab.ok("cp-1", "crictl --version") == "crictl version v1.27.0\n"
    images = etcd_lab.ok("cp-1", "crictl images 2>/dev/null")
    assert "registry.k8s.io/etcd" in images and "3.5.7-0" in images


def test_etcdctl_endpoint_health_in_the_container(etcd_lab: Lab) -> None:
    health = f"crictl exec {ETCD_ID} etcdctl {CERTS} endpoint health"
    # the spec's fault fires once (an unhealthy member), then etcd answers
    r = etcd_lab.run("cp-1", health)
    assert r.rc == 1 and "Error: unhealthy cluster" in r.err
    out = etcd_lab.ok("cp-1", health + " 2>/dev/null")
    assert out.startswith("https://127.0.0.1:2379 is healthy: successfully committed proposal")
    # a certificate that is not there (inside the container: only the hostPath mounts)
    r = etcd_lab.run(
        "cp-1", f"crictl exec {ETCD_ID} etcdctl --cacert=/etc/kubernetes/pki/ca.crt endpoint health"
    )
    assert r.rc == 1
    assert "Error: open /etc/kubernetes/pki/ca.crt: no such file or directory" in r.err
    assert 'msg="execing command in container: command terminated with exit code 1"' in r.err


def test_snapshot_35_lands_on_the_node_only_under_a_hostpath(etcd_lab: Lab) -> None:
    save = f"crictl exec {ETCD_ID} etcdctl {CERTS} snapshot save"
    r = etcd_lab.run("cp-1", f"{save} /var/lib/etcd/s.db")
    assert r.rc == 0 and r.out == "Snapshot saved at /var/lib/etcd/s.db\n"
    logs = [json.loads(x) for x in r.err.splitlines() if x.startswith("{")]
    assert [x["msg"] for x in logs] == [
        "created temporary db file",
        "fetching snapshot",
        "fetched snapshot",
        "saved",
    ]
    assert logs[0]["path"] == "/var/lib/etcd/s.db.part"
    on_node = etcd_lab.dir / "nodes/cp-1/root/var/lib/etcd/s.db"
    assert stat.S_IMODE(on_node.stat().st_mode) == 0o600 and on_node.stat().st_size % 512 == 32
    # /tmp is the container's own: the file is not on the node
    assert etcd_lab.run("cp-1", f"{save} /tmp/x.db 2>/dev/null").rc == 0
    assert etcd_lab.run("cp-1", "test -e /tmp/x.db").rc == 1
    # 3.5: etcdctl snapshot status works, deprecated
    r = etcd_lab.run(
        "cp-1", f"crictl exec {ETCD_ID} etcdctl snapshot status /var/lib/etcd/s.db -w json"
    )
    assert r.rc == 0 and "Deprecated: Use `etcdutl snapshot status` instead." in r.err
    status = json.loads(r.out)
    assert set(status) == {"hash", "revision", "totalKey", "totalSize"}
    assert status["totalSize"] == on_node.stat().st_size
    util = json.loads(
        etcd_lab.ok(
            "cp-1", f"crictl exec {ETCD_ID} etcdutl snapshot status /var/lib/etcd/s.db -w json"
        )
    )
    assert util == status
    r = etcd_lab.run("cp-1", f"crictl exec {ETCD_ID} etcdutl snapshot status /nope.db")
    assert r.rc == 1 and "Error: stat /nope.db: no such file or directory" in r.err


def test_snapshot_36_has_no_etcdctl_status(etcd_lab: Lab) -> None:
    save = f"crictl exec {ETCD_ID} etcdctl {CERTS} snapshot save /var/lib/etcd/s.db"
    r = etcd_lab.run("cp-2", save)
    assert r.rc == 0
    assert r.out == "Snapshot saved at /var/lib/etcd/s.db\nServer version 3.6.0\n"
    # etcdctl 3.6: no `snapshot status`; cobra prints the usage of `snapshot`, exit 0
    r = etcd_lab.run(
        "cp-2", f"crictl exec {ETCD_ID} etcdctl snapshot status /var/lib/etcd/s.db -w json"
    )
    assert r.rc == 0 and r.out.startswith("NAME:\n  snapshot - Manages etcd node snapshots\n")
    assert "{" not in r.out.split("GLOBAL OPTIONS")[0]
    status = json.loads(
        etcd_lab.ok(
            "cp-2", f"crictl exec {ETCD_ID} etcdutl snapshot status /var/lib/etcd/s.db -w json"
        )
    )
    assert status["version"] == "3.6.0" and status["totalSize"] > 0
    assert etcd_lab.ok("cp-2", f"crictl exec {ETCD_ID} etcdctl version 2>/dev/null") == (
        "etcdctl version: 3.6.4\nAPI version: 3.6\n"
    )


def test_the_etcd_image_is_distroless(etcd_lab: Lab) -> None:
    for command in ("sh -c true", "sha256sum /var/lib/etcd/s.db", "cat /etc/hostname"):
        r = etcd_lab.run("cp-1", f"crictl exec {ETCD_ID} {command}")
        word = command.split()[0]
        assert r.rc == 1
        assert f'exec: \\"{word}\\": executable file not found in $PATH: unknown' in r.err
    r = etcd_lab.run("cp-1", "crictl exec 0000000000000 etcdctl version")
    assert r.rc == 1 and 'failed to find container \\"0000000000000\\"' in r.err


def test_containers_are_per_node(etcd_lab: Lab) -> None:
    """Containers are per node: cp-2's etcd id differs from cp-1's."""
    one = etcd_lab.ok("cp-1", "crictl ps -q --name '^etcd$' 2>/dev/null")
    two = etcd_lab.ok("cp-2", "crictl ps -q --name '^etcd$' 2>/dev/null")
    assert one and two and one != two
