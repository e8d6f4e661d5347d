"""Dockershim removal and a dockerd reachable over TCP without tlsverify."""

from __future__ import annotations

from typing import Any

from upgrader.core.checks.runtime import (
    check_dockerd,
    check_runtime,
    parse_daemon_json,
    parse_dockerd_cmdline,
)
from upgrader.core.model import ClusterFacts, Facts, NodeFacts, Severity
from upgrader.core.versions import KubeVersion

V = KubeVersion.parse


def node(name: str, runtime: str | None = None, **extra: Any) -> NodeFacts:
    return NodeFacts(name=name, role="worker", container_runtime=runtime, extra=extra)


def facts(*nodes: NodeFacts) -> Facts:
    return Facts(ClusterFacts("c", V("v1.23.17")), nodes)


def test_docker_runtime_to_124_is_a_blocker() -> None:
    f = facts(node("w1", "docker://20.10.24"), node("w2", "containerd://1.7.2"))
    found = check_runtime(f, V("v1.24.17"))
    assert [(x.code, x.severity, x.node) for x in found] == [
        ("DOCKERSHIM_REMOVED", Severity.BLOCKER, "w1")
    ]
    assert "docker://20.10.24" in found[0].message and "v1.24.17" in found[0].message
    assert "cri-dockerd" in (found[0].fix or "")


def test_docker_runtime_below_124_is_fine() -> None:
    assert check_runtime(facts(node("w1", "docker://20.10.24")), V("v1.23.17")) == []


def test_cri_dockerd_endpoint_is_fine() -> None:
    flags = 'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///var/run/cri-dockerd.sock"'
    via_flag = node("w1", "docker://24.0.7", kubelet_flags=flags)
    via_config = node(
        "w2",
        "docker://24.0.7",
        kubelet_config="containerRuntimeEndpoint: unix:///run/cri-dockerd.sock\n",
    )
    assert check_runtime(facts(via_flag, via_config), V("v1.28.4")) == []
    shim = node(
        "w3",
        "docker://24.0.7",
        kubelet_flags='KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/containerd/containerd.sock"',
    )
    assert [x.node for x in check_runtime(facts(shim), V("v1.28.4"))] == ["w3"]


def test_daemon_json_parsing() -> None:
    d = parse_daemon_json('{"hosts": ["unix:///var/run/docker.sock", "tcp://0.0.0.0:2375"]}')
    assert d.tcp == ("tcp://0.0.0.0:2375",) and not d.tlsverify
    d = parse_daemon_json('{"hosts": ["tcp://0.0.0.0:2376"], "tlsverify": true}')
    assert d.tlsverify


def test_dockerd_cmdline_parsing() -> None:
    c = parse_dockerd_cmdline(
        "/usr/bin/dockerd -H fd:// -H tcp://0.0.0.0:2375 --host=tcp://10.0.0.5:2377 "
        "--containerd=/run/containerd/containerd.sock"
    )
    assert c.tcp == ("tcp://0.0.0.0:2375", "tcp://10.0.0.5:2377") and not c.tlsverify
    assert parse_dockerd_cmdline("dockerd -Htcp://1.2.3.4:2375 --tlsverify").tlsverify
    assert parse_dockerd_cmdline("dockerd --tlsverify=false -H tcp://a:1").tlsverify is False


def test_dockerd_tcp_without_tls_is_a_warning_naming_the_address() -> None:
    f = facts(
        node("w1", docker_daemon_json='{"hosts": ["tcp://0.0.0.0:2375"]}'),
        node(
            "w2",
            docker_daemon_json='{"hosts": ["tcp://0.0.0.0:2376"], "tlsverify": true}',
            dockerd_cmdlines=["/usr/bin/dockerd -H tcp://0.0.0.0:2376"],
        ),
        node("w3", dockerd_cmdlines=["/usr/bin/dockerd -H fd:// -H tcp://127.0.0.1:2375 "]),
        node("w4", docker_daemon_json=None, dockerd_cmdlines=[]),
    )
    found = check_dockerd(f)
    assert [(x.code, x.node, x.severity) for x in found] == [
        ("DOCKERD_TCP_NO_TLS", "w1", Severity.WARNING),
        ("DOCKERD_TCP_NO_TLS", "w3", Severity.WARNING),
    ]
    assert "tcp://0.0.0.0:2375 (/etc/docker/daemon.json)" in found[0].message
    assert "tcp://127.0.0.1:2375 (dockerd command line)" in found[1].message


def test_invalid_daemon_json() -> None:
    found = check_dockerd(facts(node("w1", docker_daemon_json="{not json")))
    assert [x.code for x in found] == ["DOCKER_DAEMON_JSON_INVALID"]
