"""The lab's node runtime facts: the spec keys ``runtime``, ``cgroup`` and ``labels``, what
the simulated ``containerd --version`` prints (containerd's cmd/containerd/command/main.go
prints ``Name Package Version Revision``; the Makefile sets ``PACKAGE`` to
``github.com/containerd/containerd`` up to 1.7 and ``.../containerd/v2`` from 2.0, and the
revision is the release tag's commit in github.com/containerd/containerd), and the Node
object of the lab API (``status.nodeInfo.containerRuntimeVersion``, the spec's labels)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from refusal import refusal

from upgrader.errors import ConfigError
from upgrader_lab import spec as labspec
from upgrader_lab.apiserver import objects
from upgrader_lab.apiserver.spec import parse_spec as api_parse_spec
from upgrader_lab.node import runtimes, tree


def two_nodes(**w1: Any) -> list[dict[str, Any]]:
    """A spec's nodes: control plane cp-1 and worker w-1 with the keys ``w1``."""
    return [{"name": "cp-1", "role": "control-plane"}, {"name": "w-1", "role": "worker", **w1}]


def resolve(**w1: Any) -> dict[str, Any]:
    spec = labspec.parse_spec({"version": "v1.34.2", "nodes": two_nodes(**w1)}, "s.yaml")
    return labspec.resolve(spec, Path("/labs/rt"), lambda _: False)


def test_runtime_cgroup_and_labels_resolve_with_defaults() -> None:
    out = resolve(
        runtime="containerd://v2.0.0",
        cgroup="v1",
        labels={"topology.kubernetes.io/zone": "a", "tier": "batch"},
    )
    cp, w = out["nodes"]
    assert (cp["runtime"], cp["cgroup"], cp["labels"]) == ("containerd://1.7.2", "v2", {})
    assert w["runtime"] == "containerd://2.0.0"  # as the kubelet reports it: no "v"
    assert w["cgroup"] == "v1"
    assert list(w["labels"].items()) == [("tier", "batch"), ("topology.kubernetes.io/zone", "a")]


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ({"runtime": "containerd-1.7"}, "nodes[1].runtime: 'containerd-1.7' is not a container"),
        ({"runtime": "rkt://1.30.0"}, "nodes[1].runtime: 'rkt://1.30.0' is not a container"),
        ({"cgroup": "v3"}, "nodes[1].cgroup: "),
        ({"labels": {"bad key!": "x"}}, "nodes[1].labels: 'bad key!' is not a valid label key"),
        ({"labels": {"Example.com/a": "x"}}, "is not a valid label key"),
        ({"labels": {"tier": "-x"}}, "nodes[1].labels: tier: '-x' is not a valid label value"),
        ({"labels": {"tier": 3}}, "nodes[1].labels.tier: "),
    ],
)
def test_bad_runtime_cgroup_or_labels_are_one_line_errors(
    node: dict[str, Any], expected: str
) -> None:
    assert expected in refusal(labspec.parse_spec, {"nodes": two_nodes(**node)}, "s.yaml")


@pytest.mark.parametrize(
    ("version", "text"),
    [
        (
            "1.7.2",
            "containerd github.com/containerd/containerd v1.7.2 "
            "0cae528dd6cb557f7201036e9f43420650207b58",
        ),
        (
            "2.0.0",
            "containerd github.com/containerd/containerd/v2 v2.0.0 "
            "207ad711eabd375a01713109a8a197d197ff6542",
        ),
    ],
)
def test_containerd_version_text_as_the_release_binaries_print_it(version: str, text: str) -> None:
    assert runtimes.version_text("containerd", version) == text


def test_containerd_version_text_of_an_untabled_release_keeps_the_shape() -> None:
    words = runtimes.version_text("containerd", "2.9.1").split()
    assert words[:3] == ["containerd", "github.com/containerd/containerd/v2", "v2.9.1"]
    assert len(words[3]) == 40 and int(words[3], 16) >= 0
    assert runtimes.containerd_package("1.6.39") == "github.com/containerd/containerd"


def test_node_info_and_cgroup_marker(tmp_path: Path) -> None:
    out = resolve(cgroup="v1", runtime="containerd://2.1.4")
    w = out["nodes"][1]
    info = tree.node_info(w, out, tmp_path)
    assert info["cgroup"] == "v1" and info["runtime"] == "containerd://2.1.4"
    tree.build_node(tmp_path, w, out, "/usr/bin/python3")
    ndir = tree.node_dir(tmp_path, "w-1")
    assert (ndir / "cgroup-v1").exists() and not (ndir / "cgroup-v2").exists()
    assert (ndir / "root/usr/bin/containerd").exists()


def test_lab_api_node_shows_runtime_and_spec_labels() -> None:
    out = resolve(runtime="cri-o://1.30.4", labels={"tier": "batch", "kubernetes.io/os": "linux"})
    spec = api_parse_spec(out, "spec.json")
    cp = objects.build_node(spec.nodes[0], 0, 0.0)
    w = objects.build_node(spec.nodes[1], 1, 0.0)
    assert w["metadata"]["labels"]["tier"] == "batch"
    assert w["metadata"]["labels"]["kubernetes.io/hostname"] == "w-1"
    assert "tier" not in cp["metadata"]["labels"]
    assert w["status"]["nodeInfo"]["containerRuntimeVersion"] == "cri-o://1.30.4"
    assert cp["status"]["nodeInfo"]["containerRuntimeVersion"] == "containerd://1.7.2"
    annotations = w["metadata"]["annotations"]
    assert annotations["kubeadm.alpha.kubernetes.io/cri-socket"] == "unix:///var/run/crio/crio.sock"


def test_lab_api_spec_refuses_labels_that_are_not_strings() -> None:
    data = {"nodes": [{"name": "cp-1", "role": "control-plane", "labels": {"a": 1}}]}
    with pytest.raises(ConfigError, match=r"nodes\[0\]\.labels: must be a mapping of strings"):
        api_parse_spec(data, "spec.json")


# --------------------------------------------------------------------------- admin endpoints


def _in_process_api() -> tuple[Any, Any, Any]:
    from upgrader_lab.apiserver.api import Api
    from upgrader_lab.apiserver.controller import Controller
    from upgrader_lab.apiserver.seed import initial_objects
    from upgrader_lab.apiserver.store import Store

    out = resolve(cgroup="v1")
    out["delays"]["kubelet_ready"] = 0
    spec = api_parse_spec(out, "spec.json")
    store = Store(None)
    store.cluster = {"version": spec.version}
    store.seed(initial_objects(spec, 1_700_000_000.0))
    controller = Controller(store, spec, clock=lambda: 1_700_000_100.0)
    controller.settle()
    return Api(store, spec, clock=lambda: 1_700_000_100.0), store, controller


def _call(api: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    import json

    from upgrader_lab.apiserver.api import Request

    data = json.dumps(body).encode() if body is not None else b""
    r = api.handle(
        Request(method, path, {}, {"content-type": "application/json", "accept": "*/*"}, data)
    )
    return r.code, json.loads(r.body)


def _ready(api: Any, node: str) -> tuple[str, str, str]:
    _, obj = _call(api, "GET", f"/api/v1/nodes/{node}")
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    return ready["status"], ready["reason"], obj["status"]["nodeInfo"]["kubeletVersion"]


def test_a_kubelet_that_does_not_start_leaves_the_node_unknown_at_its_old_version() -> None:
    api, _, controller = _in_process_api()
    code, _ = _call(
        api, "POST", "/_lab/v1/nodes/w-1/kubelet-restart", {"version": "v1.35.9", "starts": False}
    )
    assert code == 200
    controller.reconcile()
    assert _ready(api, "w-1") == ("Unknown", "NodeStatusUnknown", "v1.34.2")
    code, body = _call(api, "POST", "/_lab/v1/nodes/w-1/kubelet-restart", {"starts": "no"})
    assert code == 400 and "starts: must be true or false" in body["message"]
    code, _ = _call(api, "POST", "/_lab/v1/nodes/w-1/kubelet-restart", {"version": "v1.35.9"})
    controller.reconcile()
    assert _ready(api, "w-1") == ("True", "KubeletReady", "v1.35.9")


def test_fault_counters_read_and_cleared_through_the_admin_api() -> None:
    api, store, _ = _in_process_api()
    store.faults = {"1": 2, "3": 1}
    assert _call(api, "GET", "/_lab/v1/faults") == (200, {"faults": {"1": 2, "3": 1}})
    assert _call(api, "POST", "/_lab/v1/faults/clear", {}) == (
        200,
        {"cleared": {"1": 2, "3": 1}},
    )
    assert _call(api, "GET", "/_lab/v1/faults") == (200, {"faults": {}})
    assert _call(api, "GET", "/_lab/v1/faults/clear")[0] == 405
    assert _call(api, "POST", "/_lab/v1/faults", {})[0] == 405


def test_lab_up_can_say_why_a_node_would_not_show_its_cgroup_version() -> None:
    from upgrader_lab.node import wrapper

    path = wrapper.MountMode("path", False, "chosen with --mount path")
    other = "v1" if wrapper.host_cgroup() == "v2" else "v2"
    assert wrapper.cgroup_problem(path) == (
        f"mount mode 'path': cgroup {other} nodes show the host's /sys/fs/cgroup"
    )
    # the mount node-ns makes for such nodes is the one CGROUP_MOUNTS holds for that version
    assert "tmpfs" in wrapper.CGROUP_MOUNTS["v1"] and "cgroup2" in wrapper.CGROUP_MOUNTS["v2"]
