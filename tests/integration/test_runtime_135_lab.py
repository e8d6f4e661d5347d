"""The 1.35 node rules shown on the lab: a cgroup v1 node and a containerd 1.7 node of a 1.34
cluster, planned to 1.35 and past it.

Upstream the lab follows: kubernetes.io/docs/concepts/architecture/cgroups (``stat -fc %T
/sys/fs/cgroup/`` says ``cgroup2fs`` on v2 and ``tmpfs`` on v1: the node's real ``stat``
runs in its mount namespace); github.com/containerd/containerd cmd/containerd/command/main.go
and Makefile (``containerd --version`` prints ``containerd <module path> v<version>
<commit>``, the module path ending ``/v2`` from 2.0); the kubelet's
``status.nodeInfo.containerRuntimeVersion`` (``containerd://1.7.2``). The rules: the
Kubernetes v1.35 release notes and KEP-5573 (a 1.35 kubelet exits at start on cgroup v1 unless
its config sets failCgroupV1: false)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from cli_run import cli
from labkit import lab_down, lab_up

from upgrader_lab.node import wrapper

pytestmark = pytest.mark.integration

SPEC: dict[str, Any] = {
    "version": "v1.34.2",
    "nodes": [
        {"name": "cp-1", "role": "control-plane", "runtime": "containerd://2.0.0"},
        {"name": "w-1", "role": "worker", "cgroup": "v1", "runtime": "containerd://2.1.4"},
        {
            "name": "w-2",
            "role": "worker",
            "runtime": "containerd://1.7.2",
            "labels": {"tier": "batch", "topology.kubernetes.io/zone": "zone-b"},
        },
    ],
}


def plan(d: Path, to: str) -> tuple[int, dict[str, Any]]:
    r = cli("plan", "-i", str(d / "inventory.yaml"), "--to", to, "--json")
    assert r.returncode in (0, 3), r.stderr
    return r.returncode, json.loads(r.stdout)


def of(doc: dict[str, Any], code: str) -> list[tuple[str, str | None]]:
    return [(f["severity"], f["node"]) for f in doc["findings"] if f["code"] == code]


def test_cgroup_v1_and_containerd_1x_on_the_lab(tmp_path: Path) -> None:
    d = tmp_path / "lab135"
    up = lab_up(d, SPEC)
    try:
        mode = json.loads((d / "lab.json").read_text())["mount"]["mode"]
        # lab up warns when a node's cgroup version cannot be shown (path mode, user namespace)
        cgroup_ok = "nodes show the host's /sys/fs/cgroup" not in up.stdout
        if mode == "overlay" and os.geteuid() == 0:
            assert cgroup_ok, up.stdout  # as root the node namespace can always mount it
        # the nodes' real commands
        if cgroup_ok:
            for name, fs in (("w-1", "tmpfs"), ("w-2", "cgroup2fs"), ("cp-1", "cgroup2fs")):
                got = wrapper.run_on_node(d, name, "stat -fc %T /sys/fs/cgroup/")
                assert (got.returncode, got.stdout.strip()) == (0, fs), (name, got.stderr)
        v17 = wrapper.run_on_node(d, "w-2", "containerd --version")
        assert v17.stdout.strip() == (
            "containerd github.com/containerd/containerd v1.7.2 "
            "0cae528dd6cb557f7201036e9f43420650207b58"
        )
        v2 = wrapper.run_on_node(d, "cp-1", "containerd --version")
        assert v2.stdout.strip() == (
            "containerd github.com/containerd/containerd/v2 v2.0.0 "
            "207ad711eabd375a01713109a8a197d197ff6542"
        )
        # the Node objects
        kubeconfig = str(d / "kubeconfig")
        r = cli("facts", "-i", str(d / "inventory.yaml"))
        assert r.returncode == 0, r.stderr
        facts = {n["name"]: n for n in json.loads(r.stdout)["nodes"]}
        if cgroup_ok:
            assert (facts["w-1"]["cgroup"], facts["w-2"]["cgroup"]) == ("v1", "v2")
        assert facts["w-2"]["container_runtime"] == "containerd://1.7.2"
        node = _get_node(d, kubeconfig, "w-2")
        assert node["metadata"]["labels"]["tier"] == "batch"
        assert node["metadata"]["labels"]["topology.kubernetes.io/zone"] == "zone-b"
        assert node["status"]["nodeInfo"]["containerRuntimeVersion"] == "containerd://1.7.2"

        # 1.34 -> 1.35: the cgroup v1 node blocks, containerd 1.7 warns
        rc, doc = plan(d, "v1.35.9")
        if cgroup_ok:
            assert rc == 3 and doc["blocked"]
            assert of(doc, "CGROUP_V1_UNSUPPORTED") == [("blocker", "w-1")]
            blocker = next(f for f in doc["findings"] if f["code"] == "CGROUP_V1_UNSUPPORTED")
            assert "w-1" in blocker["message"]
            assert "kubernetes-v1-35-release" in blocker["fix"]
        assert of(doc, "CONTAINERD_1X_LAST_MINOR") == [("warning", "w-2")]
        assert of(doc, "CONTAINERD_1X_UNSUPPORTED") == []

        if cgroup_ok:  # apply refuses before touching anything
            calls_before = (d / "nodes" / "cp-1" / "calls.jsonl").read_text()
            applied = cli("apply", "-i", str(d / "inventory.yaml"), "--to", "v1.35.9", "--yes")
            assert applied.returncode == 3, applied.stdout + applied.stderr
            assert "CGROUP_V1_UNSUPPORTED" in applied.stdout + applied.stderr
            calls_after = (d / "nodes" / "cp-1" / "calls.jsonl").read_text()
            new_calls = calls_after[len(calls_before) :]
            assert "apt-get install" not in new_calls and "upgrade apply" not in new_calls

        # 1.34 -> 1.36 (two hops): containerd 1.7 blocks too
        rc, doc = plan(d, "v1.36.4")
        assert rc == 3
        assert of(doc, "CONTAINERD_1X_UNSUPPORTED") == [("blocker", "w-2")]
        assert of(doc, "CONTAINERD_1X_LAST_MINOR") == []

        # 1.34 patch: none of the 1.35 rules
        rc, doc = plan(d, "v1.34.9")
        codes = {f["code"] for f in doc["findings"]}
        assert not codes & {
            "CGROUP_V1_UNSUPPORTED",
            "CONTAINERD_1X_LAST_MINOR",
            "CONTAINERD_1X_UNSUPPORTED",
        }
        if mode == "overlay":
            _kubelet_135_on_cgroup_v1(d, kubeconfig)
    finally:
        lab_down(d)


def _kubelet_135_on_cgroup_v1(d: Path, kubeconfig: str) -> None:
    """What the product's blocker prevents: a 1.35 kubelet on the cgroup v1 worker exits at
    start (KEP-5573), systemd keeps restarting it, the node stops posting status; with
    failCgroupV1: false in its config it starts and the node is Ready at 1.35."""
    install = (
        "sed -i 's,/v1.34/,/v1.35/,' /etc/apt/sources.list.d/kubernetes.list && "
        "apt-get update -q >/dev/null && apt-mark unhold kubelet >/dev/null && "
        "apt-get install -y kubelet=1.35.9-1.1 >/dev/null && systemctl daemon-reload && "
        "systemctl restart kubelet"
    )
    got = wrapper.run_on_node(d, "w-1", install, timeout=120)
    assert got.returncode == 0, got.stderr
    active = wrapper.run_on_node(d, "w-1", "systemctl is-active kubelet")
    assert (active.returncode, active.stdout.strip()) == (3, "activating")
    status = wrapper.run_on_node(d, "w-1", "systemctl status kubelet")
    assert "activating (auto-restart) (Result: exit-code)" in status.stdout
    assert "kubelet is configured to not run on a host using cgroup v1" in status.stdout
    node = _get_node(d, kubeconfig, "w-1")
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "Unknown" and ready["reason"] == "NodeStatusUnknown"
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.34.2"

    tolerate = (
        "echo 'failCgroupV1: false' >> /var/lib/kubelet/config.yaml && systemctl restart kubelet"
    )
    got = wrapper.run_on_node(d, "w-1", tolerate)
    assert got.returncode == 0, got.stderr
    assert wrapper.run_on_node(d, "w-1", "systemctl is-active kubelet").stdout.strip() == "active"
    deadline = time.monotonic() + 30
    while True:
        node = _get_node(d, kubeconfig, "w-1")
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        if ready["status"] == "True" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert ready["status"] == "True"
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.35.9"


def _get_node(d: Path, kubeconfig: str, name: str) -> dict[str, Any]:
    from upgrader.kube.client import make_api_client
    from upgrader.kube.retry import request_json

    client = make_api_client(Path(kubeconfig), None)
    try:
        import kubernetes.client

        api = kubernetes.client.CoreV1Api(client)
        return dict(request_json(api.read_node, name, what="read node"))
    finally:
        client.close()  # type: ignore[no-untyped-call]
