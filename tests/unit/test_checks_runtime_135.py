"""The Kubernetes 1.35 node rules: cgroup v1 and containerd 1.x.

Upstream: the Kubernetes v1.35 release notes
(https://kubernetes.io/blog/2025/12/17/kubernetes-v1-35-release/) say 1.35 is the last minor
that supports containerd 1.x and that the kubelet refuses to start on cgroup v1 by default;
KEP-5573 (kubernetes/enhancements keps/sig-node/5573-remove-cgroup-v1) sets ``failCgroupV1``
to true in 1.35; kubernetes.io/docs/concepts/architecture/cgroups tells the version with
``stat -fc %T /sys/fs/cgroup/`` (``cgroup2fs`` v2, ``tmpfs`` v1)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from upgrader.core.checks.runtime import (
    RELEASE_NOTES_1_35,
    check_runtime_support,
    containerd_major,
    tolerates_cgroup_v1,
)
from upgrader.core.checks.suite import preflight_findings
from upgrader.core.model import ClusterFacts, Facts, NodeFacts, Severity
from upgrader.core.parsers import ParseError, Section, parse_cgroup_fs
from upgrader.core.versions import KubeVersion
from upgrader.gather import interpret_sections

V = KubeVersion.parse


def node(
    name: str, runtime: str | None = "containerd://2.0.0", cgroup: str | None = "v2"
) -> NodeFacts:
    return NodeFacts(name=name, role="worker", container_runtime=runtime, cgroup=cgroup)


def facts(*nodes: NodeFacts) -> Facts:
    return Facts(ClusterFacts("c", V("v1.34.2")), nodes)


def found(
    f: Facts, target: str, nodes: list[str] | None = None
) -> list[tuple[str, Severity, str | None]]:
    return [(x.code, x.severity, x.node) for x in check_runtime_support(f, V(target), nodes=nodes)]


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(("text", "want"), [("cgroup2fs\n", "v2"), ("tmpfs\n", "v1")])
def test_stat_of_sys_fs_cgroup(text: str, want: str) -> None:
    assert parse_cgroup_fs(text) == want


def test_stat_of_something_else_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="cgroup: /sys/fs/cgroup is 'sysfs'"):
        parse_cgroup_fs("sysfs\n")


@pytest.mark.parametrize(
    ("runtime", "major"),
    [
        ("containerd://1.7.2", 1),
        ("containerd://v2.0.0", 2),
        ("containerd://1.6.20~ds1", 1),
        ("cri-o://1.30.4", None),
        ("docker://24.0.7", None),
        (None, None),
    ],
)
def test_containerd_major(runtime: str | None, major: int | None) -> None:
    assert containerd_major(runtime) == major


def test_interpret_sections_reads_the_cgroup_probe() -> None:
    v1 = interpret_sections("w-1", "apt", {"cgroup": Section("cgroup", "tmpfs\n", 0)})
    assert v1.cgroup == "v1"
    v2 = interpret_sections("w-1", "apt", {"cgroup": Section("cgroup", "cgroup2fs\n", 0)})
    assert v2.cgroup == "v2"
    missing = interpret_sections("w-1", "apt", {"cgroup": Section("cgroup", "not found", 127)})
    assert missing.cgroup is None


def test_facts_json_round_trip_keeps_the_cgroup() -> None:
    f = facts(node("w-1", cgroup="v1"), node("w-2", cgroup=None))
    back = Facts.from_dict(f.to_dict())
    assert [n.cgroup for n in back.nodes] == ["v1", None]
    data = f.to_dict()
    data["nodes"][0]["cgroup"] = "v3"
    with pytest.raises(ValueError, match=r"nodes\[0\]\.cgroup: 'v3' is not v1 or v2"):
        Facts.from_dict(data)


# --------------------------------------------------------------------------- cgroup v1


def test_cgroup_v1_node_going_to_135_is_a_blocker_naming_the_node_and_source() -> None:
    f = facts(node("w-1", cgroup="v1"), node("w-2"))
    got = check_runtime_support(f, V("v1.35.9"))
    assert [(x.code, x.severity, x.node) for x in got] == [
        ("CGROUP_V1_UNSUPPORTED", Severity.BLOCKER, "w-1")
    ]
    assert "w-1" in got[0].message and "v1.35.9" in got[0].message
    assert RELEASE_NOTES_1_35 in (got[0].fix or "") and "5573" in (got[0].fix or "")
    assert got[0].override is None


def test_cgroup_v1_below_135_is_fine() -> None:
    assert found(facts(node("w-1", cgroup="v1")), "v1.34.9") == []


def test_cgroup_v1_past_135_is_a_blocker_too() -> None:
    assert found(facts(node("w-1", cgroup="v1")), "v1.36.4") == [
        ("CGROUP_V1_UNSUPPORTED", Severity.BLOCKER, "w-1")
    ]


def test_kubelet_configmap_with_fail_cgroup_v1_false_makes_it_a_warning() -> None:
    cm = (
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
        "failCgroupV1: false\n"
    )
    assert tolerates_cgroup_v1(cm)
    assert not tolerates_cgroup_v1(cm.replace("false", "true"))
    assert not tolerates_cgroup_v1(None) and not tolerates_cgroup_v1("{not: yaml")
    got = check_runtime_support(facts(node("w-1", cgroup="v1")), V("v1.35.9"), kubelet_configmap=cm)
    assert [(x.code, x.severity) for x in got] == [("CGROUP_V1_UNSUPPORTED", Severity.WARNING)]
    assert "failCgroupV1: false" in got[0].message


def test_unknown_cgroup_is_a_warning_only_from_135() -> None:
    f = facts(node("w-1", cgroup=None))
    assert found(f, "v1.35.0") == [("CGROUP_VERSION_UNKNOWN", Severity.WARNING, "w-1")]
    assert found(f, "v1.34.9") == []


def test_only_the_nodes_the_plan_upgrades() -> None:
    f = facts(node("w-1", cgroup="v1"), node("w-2", runtime="containerd://1.7.2"))
    assert found(f, "v1.36.4", nodes=["w-2"]) == [
        ("CONTAINERD_1X_UNSUPPORTED", Severity.BLOCKER, "w-2")
    ]


# --------------------------------------------------------------------------- containerd 1.x


def test_containerd_1x_at_135_is_a_warning() -> None:
    f = facts(node("w-1", runtime="containerd://1.7.2"), node("w-2"))
    got = check_runtime_support(f, V("v1.35.9"))
    assert [(x.code, x.severity, x.node) for x in got] == [
        ("CONTAINERD_1X_LAST_MINOR", Severity.WARNING, "w-1")
    ]
    assert "containerd://1.7.2" in got[0].message and RELEASE_NOTES_1_35 in (got[0].fix or "")


def test_containerd_1x_after_135_is_a_blocker() -> None:
    f = facts(node("w-1", runtime="containerd://1.7.28"))
    got = check_runtime_support(f, V("v1.36.4"))
    assert [(x.code, x.severity) for x in got] == [("CONTAINERD_1X_UNSUPPORTED", Severity.BLOCKER)]
    assert "v1.36.4" in got[0].message and "2.0 or later" in (got[0].fix or "")


@pytest.mark.parametrize("target", ["v1.34.9", "v1.33.10"])
def test_containerd_1x_before_135_is_fine(target: str) -> None:
    assert found(facts(node("w-1", runtime="containerd://1.7.2")), target) == []


@pytest.mark.parametrize("runtime", ["containerd://2.0.0", "cri-o://1.35.1", None])
def test_containerd_2_and_other_runtimes_pass(runtime: str | None) -> None:
    assert found(facts(node("w-1", runtime=runtime)), "v1.37.1") == []


def test_preflight_suite_runs_the_135_rules() -> None:
    f = facts(node("w-1", runtime="containerd://1.7.2", cgroup="v1"))
    got = preflight_findings(
        f,
        None,
        current=V("v1.34.2"),
        target=V("v1.35.9"),
        hops=[V("v1.35.9")],
        upgrade_nodes=["w-1"],
        drain_nodes=["w-1"],
        now=datetime(2026, 12, 4, tzinfo=UTC),
    )
    codes = {(x.code, x.severity) for x in got}
    assert ("CGROUP_V1_UNSUPPORTED", Severity.BLOCKER) in codes
    assert ("CONTAINERD_1X_LAST_MINOR", Severity.WARNING) in codes
