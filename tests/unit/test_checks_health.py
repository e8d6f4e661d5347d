"""Cluster health gates: nodes, control-plane pods, etcd, leftover lock, certificates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from upgrader.core.checks.health import (
    CommandOutcome,
    ConsecutivePasses,
    check_certs,
    check_control_plane_pods,
    check_etcd,
    check_lease,
    check_nodes_ready,
    parse_cert_dates,
    passed,
)
from upgrader.core.model import ClusterFacts, Facts, Finding, NodeFacts, Severity
from upgrader.core.versions import KubeVersion

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
Json = dict[str, Any]


def node_obj(name: str, ready: str | None) -> Json:
    conds = (
        []
        if ready is None
        else [
            {
                "type": "Ready",
                "status": ready,
                "reason": "KubeletNotReady" if ready != "True" else "KubeletReady",
                "message": "container runtime network not ready",
                "lastTransitionTime": "2026-03-01T11:00:00Z",
            }
        ]
    )
    return {"metadata": {"name": name}, "status": {"conditions": conds}}


def test_nodes_ready() -> None:
    found = check_nodes_ready(
        [
            node_obj("a", "True"),
            node_obj("b", "False"),
            node_obj("c", "Unknown"),
            node_obj("d", None),
        ]
    )
    assert [(f.code, f.node, f.severity) for f in found] == [
        ("NODE_NOT_READY", "b", Severity.BLOCKER),
        ("NODE_NOT_READY", "c", Severity.BLOCKER),
        ("NODE_NOT_READY", "d", Severity.BLOCKER),
    ]
    assert (
        "Ready=False (KubeletNotReady)" in found[0].message
        and "since 2026-03-01T11:00:00Z" in found[0].message
    )
    assert "no Ready condition" in found[2].message


def mirror(component: str, node: str, ready: str) -> Json:
    return {
        "metadata": {
            "name": f"{component}-{node}",
            "namespace": "kube-system",
            "annotations": {"kubernetes.io/config.mirror": "x"},
            "labels": {"component": component, "tier": "control-plane"},
        },
        "spec": {"nodeName": node},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": ready}]},
    }


def test_control_plane_pods() -> None:
    pods = [
        mirror("kube-apiserver", "cp1", "True"),
        mirror("etcd", "cp1", "False"),
        mirror("coredns", "cp1", "False"),
    ]
    not_mirror = mirror("kube-scheduler", "cp1", "False")
    del not_mirror["metadata"]["annotations"]
    found = check_control_plane_pods([*pods, not_mirror])
    assert [(f.code, f.node) for f in found] == [("CONTROL_PLANE_POD_NOT_READY", "cp1")]
    assert "etcd on cp1" in found[0].message


def test_etcd() -> None:
    found = check_etcd(
        {
            "cp1": CommandOutcome(
                0,
                "https://127.0.0.1:2379 is healthy: successfully committed proposal: took = 9.5ms",
            ),
            "cp2": CommandOutcome(
                1,
                "https://127.0.0.1:2379 is unhealthy: failed to commit proposal: "
                "context deadline exceeded\nError: unhealthy cluster",
            ),
            "cp3": CommandOutcome(127, "crictl: not found (cri-tools is not installed)"),
            "cp4": CommandOutcome(None, error="cannot connect to cp4:22: Connection refused"),
            "cp5": CommandOutcome(3, "upgrader: no /etc/kubernetes/manifests/etcd.yaml"),
            "cp6": CommandOutcome(
                4, "upgrader: the etcd static pod has no running container (crictl ps ...)"
            ),
        }
    )
    assert [(f.code, f.node, f.severity) for f in found] == [
        ("ETCD_UNHEALTHY", "cp2", Severity.BLOCKER),
        ("ETCD_HEALTH_UNKNOWN", "cp3", Severity.WARNING),
        ("ETCD_HEALTH_UNKNOWN", "cp4", Severity.WARNING),
        ("ETCD_HEALTH_UNKNOWN", "cp5", Severity.WARNING),
        ("ETCD_UNHEALTHY", "cp6", Severity.BLOCKER),
    ]
    assert "context deadline exceeded" in found[0].message
    assert "crictl (cri-tools) is not installed" in found[1].message
    assert "Connection refused" in found[2].message
    assert "not a kubeadm static pod" in found[3].message
    assert "no running container" in found[4].message


def test_etcd_health_runs_in_the_container_and_ignores_crictl_noise() -> None:
    from upgrader.core.checks.health import ETCD_HEALTH_COMMAND

    assert '$crictl exec "$c" etcdctl' in ETCD_HEALTH_COMMAND
    assert "--cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt" in ETCD_HEALTH_COMMAND
    warn = (
        'time="2026-01-01T00:00:00Z" level=warning msg="runtime connect using default '
        'endpoints: [unix:///var/run/dockershim.sock]."'
    )
    found = check_etcd({"cp1": CommandOutcome(1, warn + "\nError: unhealthy cluster")})
    assert len(found) == 1 and "level=warning" not in found[0].message
    assert "Error: unhealthy cluster" in found[0].message


def lease(holder: str | None, renewed: datetime, duration: int = 60) -> Json:
    return {
        "metadata": {"name": "upgrader-lock", "namespace": "kube-system"},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration,
            "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        },
    }


def test_lease() -> None:
    assert check_lease(None, NOW) == []
    assert check_lease(lease(None, NOW), NOW) == []
    fresh = check_lease(lease("ops@box/run1", NOW - timedelta(seconds=10)), NOW)
    assert [(f.code, f.severity, f.override) for f in fresh] == [
        ("LOCK_HELD", Severity.BLOCKER, "--break-lock")
    ]
    assert "ops@box/run1" in fresh[0].message and "expires in 50s" in fresh[0].message
    broken = check_lease(lease("ops@box/run1", NOW), NOW, break_lock=True)
    assert broken[0].severity == Severity.WARNING
    stale = check_lease(lease("ops@box/run1", NOW - timedelta(minutes=5)), NOW)
    assert [(f.code, f.severity) for f in stale] == [("LOCK_STALE", Severity.WARNING)]
    assert check_lease(lease("ops@box/run1", NOW), NOW, own_run_id="run1") == []


CERTS = """/etc/kubernetes/pki/apiserver.crt notAfter=Mar 20 10:00:00 2026 GMT
/etc/kubernetes/pki/ca.crt notAfter=Feb 27 10:00:00 2036 GMT
/etc/kubernetes/pki/front-proxy-client.crt notAfter=Feb  1 10:00:00 2026 GMT
/etc/kubernetes/pki/etcd/bad.crt Could not read certificate from /etc/kubernetes/pki/etcd/bad.crt
"""


def facts(**certs: str | None) -> Facts:
    nodes = tuple(
        NodeFacts(name=n, role="control-plane", extra={"certs": c}) for n, c in certs.items()
    )
    return Facts(ClusterFacts("c", KubeVersion.parse("v1.28.4")), nodes)


def test_cert_dates() -> None:
    got = parse_cert_dates(CERTS)
    assert got[0].not_after == datetime(2026, 3, 20, 10, 0, tzinfo=UTC)
    assert got[2].not_after == datetime(2026, 2, 1, 10, 0, tzinfo=UTC)
    assert got[3].not_after is None


def test_certs() -> None:
    found = check_certs(facts(cp1=CERTS, cp2="", cp3=None), NOW)
    assert [(f.code, f.node, f.severity) for f in found] == [
        ("CERT_EXPIRED", "cp1", Severity.BLOCKER),
        ("CERT_EXPIRING", "cp1", Severity.WARNING),
        ("CERT_EXPIRY_UNKNOWN", "cp2", Severity.INFO),
        ("CERT_EXPIRY_UNKNOWN", "cp3", Severity.INFO),
    ]
    assert "front-proxy-client.crt (2026-02-01)" in found[0].message
    assert "apiserver.crt (2026-03-20)" in found[1].message and "ca.crt" not in found[1].message
    assert check_certs(facts(cp1=CERTS), NOW, days=10) == found[:1]


def test_consecutive_passes() -> None:
    bad = [Finding("X", Severity.BLOCKER, "x")]
    warn = [Finding("Y", Severity.WARNING, "y")]
    c = ConsecutivePasses(3)
    assert [c.record(x) for x in ([], warn, bad, [], [], warn)] == [
        False,
        False,
        False,
        False,
        False,
        True,
    ]
    assert passed(warn) and not passed(bad)
    with pytest.raises(ValueError):
        ConsecutivePasses(0)
