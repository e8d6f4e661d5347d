"""Kubelet hardening findings from /var/lib/kubelet/config.yaml and the kubelet flags."""

from __future__ import annotations

from typing import Any

import pytest

from upgrader.core.checks.kubelet import (
    KubeletConfigError,
    check_kubelet,
    check_kubelet_configmap,
    kubelet_posture,
    parse_kubelet_flags,
)
from upgrader.core.model import ClusterFacts, Facts, NodeFacts, Severity
from upgrader.core.versions import KubeVersion

# What kubeadm writes (v1.28), trimmed to the fields that matter plus neighbours.
KUBEADM_CONFIG = """apiVersion: kubelet.config.k8s.io/v1beta1
authentication:
  anonymous:
    enabled: false
  webhook:
    cacheTTL: 0s
    enabled: true
  x509:
    clientCAFile: /etc/kubernetes/pki/ca.crt
authorization:
  mode: Webhook
  webhook:
    cacheAuthorizedTTL: 0s
    cacheUnauthorizedTTL: 0s
cgroupDriver: systemd
kind: KubeletConfiguration
rotateCertificates: true
staticPodPath: /etc/kubernetes/manifests
"""

INSECURE = """apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous:
    enabled: true
authorization:
  mode: AlwaysAllow
readOnlyPort: 10255
"""


def facts(**extra_by_node: dict[str, Any]) -> Facts:
    nodes = tuple(
        NodeFacts(name=name, role="worker", extra=extra) for name, extra in extra_by_node.items()
    )
    return Facts(ClusterFacts("c", KubeVersion.parse("v1.28.4")), nodes)


def test_kubeadm_default_config_is_secure() -> None:
    p = kubelet_posture(KUBEADM_CONFIG)
    assert (p.anonymous_auth, p.authorization_mode, p.read_only_port) == (False, "Webhook", 0)
    assert p.problems == ()
    assert p.sources["read_only_port"] == "default"
    assert check_kubelet(facts(w1={"kubelet_config": KUBEADM_CONFIG})) == []


def test_insecure_config_gives_three_warnings() -> None:
    found = check_kubelet(facts(w1={"kubelet_config": INSECURE}))
    assert [f.code for f in found] == [
        "KUBELET_ANONYMOUS_AUTH",
        "KUBELET_AUTHORIZATION_MODE",
        "KUBELET_READ_ONLY_PORT",
    ]
    assert all(f.severity == Severity.WARNING and f.node == "w1" for f in found)
    assert "AlwaysAllow" in found[1].message and "10255" in found[2].message
    assert "readOnlyPort: 0" in (found[2].fix or "")
    assert "kubelet-config ConfigMap" in (found[0].fix or "")


def test_strict_makes_them_blockers_and_harden_makes_them_notes() -> None:
    f = facts(w1={"kubelet_config": INSECURE})
    assert {x.severity for x in check_kubelet(f, strict=True)} == {Severity.BLOCKER}
    notes = check_kubelet(f, harden=True, strict=True)
    assert {x.severity for x in notes} == {Severity.INFO}
    assert all("--harden-kubelet fixes it" in x.message for x in notes)


def test_flags_override_the_file() -> None:
    flags = (
        'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///var/run/containerd/'
        'containerd.sock --pod-infra-container-image=registry.k8s.io/pause:3.9"\n'
        "KUBELET_EXTRA_ARGS=--read-only-port=10255 --anonymous-auth=true\n"
    )
    p = kubelet_posture(KUBEADM_CONFIG, flags)
    assert p.read_only_port == 10255 and p.anonymous_auth is True
    assert p.sources["read_only_port"] == "flag --read-only-port"
    found = check_kubelet(facts(w1={"kubelet_config": KUBEADM_CONFIG, "kubelet_flags": flags}))
    assert [f.code for f in found] == ["KUBELET_ANONYMOUS_AUTH", "KUBELET_READ_ONLY_PORT"]
    assert "flag" in (found[1].fix or "")
    # and the other way round: a flag can secure an insecure file
    good = kubelet_posture(INSECURE, 'KUBELET_EXTRA_ARGS="--read-only-port=0"')
    assert good.read_only_port == 0


def test_parse_kubelet_flags_forms() -> None:
    assert parse_kubelet_flags(
        '# comment\nKUBELET_EXTRA_ARGS="--a=1 --b 2 --c"\nexport X=--d=4\n'
    ) == {"a": "1", "b": "2", "c": "true", "d": "4"}
    assert parse_kubelet_flags(None) == {}


def test_unreadable_and_invalid_config() -> None:
    found = check_kubelet(facts(w1={"kubelet_config": None}, w2={"kubelet_config": "a: [b"}))
    assert [(f.code, f.node) for f in found] == [
        ("KUBELET_CONFIG_UNREADABLE", "w1"),
        ("KUBELET_CONFIG_UNREADABLE", "w2"),
    ]
    with pytest.raises(KubeletConfigError):
        kubelet_posture("- a list\n")


def test_nodes_without_the_fact_and_unselected_nodes_are_skipped() -> None:
    f = facts(w1={}, w2={"kubelet_config": INSECURE})
    assert check_kubelet(f, nodes=["w1"]) == []
    assert {x.node for x in check_kubelet(f)} == {"w2"}


def test_configmap_posture() -> None:
    assert check_kubelet_configmap(None) == []
    assert check_kubelet_configmap(KUBEADM_CONFIG) == []
    found = check_kubelet_configmap(INSECURE, strict=True)
    assert [(f.code, f.severity, f.node) for f in found] == [
        ("KUBELET_CONFIGMAP_INSECURE", Severity.BLOCKER, None)
    ]
    assert "kubeadm upgrade writes to every node" in found[0].message
