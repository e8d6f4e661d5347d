"""Preflight checks against the lab: a real sshd per lab, the simulated node tools, the lab's
Kubernetes API over HTTPS. Each lab is started once (``upgrader lab up``) and several
assertions share it: the default lab triggers nothing; a lab bound to exactly the rules of
``upgrader rbac`` passes the permission check (and its health gate recovers from an etcd
fault); a lab missing two of those rules is blocked naming them; one "bad" lab (v1.24 ->
v1.25) triggers every other check, each beside a node or object that does not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cli_run import cli
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from labkit import LabFiles, running_lab

from upgrader.core.checks.kubelet import check_kubelet
from upgrader.core.model import Facts, Finding
from upgrader.rbac import lab_rules, render_rbac, subject_from
from upgrader_lab.apiserver.certs import self_signed

pytestmark = pytest.mark.integration

# Every code the preflight checks emit (docs/FINDINGS.md).
PREFLIGHT_CODES = {
    "PERMISSION_MISSING",
    "PERMISSION_MISSING_OPTIONAL",
    "PERMISSION_UNKNOWN",
    "KUBELET_ANONYMOUS_AUTH",
    "KUBELET_AUTHORIZATION_MODE",
    "KUBELET_READ_ONLY_PORT",
    "KUBELET_CONFIG_UNREADABLE",
    "KUBELET_CONFIGMAP_INSECURE",
    "DOCKERSHIM_REMOVED",
    "DOCKERD_TCP_NO_TLS",
    "DOCKER_DAEMON_JSON_INVALID",
    "CGROUP_V1_UNSUPPORTED",
    "CGROUP_VERSION_UNKNOWN",
    "CONTAINERD_1X_LAST_MINOR",
    "CONTAINERD_1X_UNSUPPORTED",
    "REMOVED_API_REQUESTED",
    "REMOVED_API_APPLIED",
    "REMOVED_API_UNCHECKED",
    "DRAIN_EMPTYDIR",
    "DRAIN_UNMANAGED_POD",
    "DRAIN_ORPHANED_DAEMONSET_POD",
    "DRAIN_PDB_BLOCKS",
    "DRAIN_MULTIPLE_PDBS",
    "DRAIN_PDB_NO_DISRUPTION_NOW",
    "NODE_NOT_READY",
    "CONTROL_PLANE_POD_NOT_READY",
    "ETCD_UNHEALTHY",
    "ETCD_HEALTH_UNKNOWN",
    "LOCK_HELD",
    "LOCK_STALE",
    "CERT_EXPIRED",
    "CERT_EXPIRING",
    "CERT_EXPIRY_UNKNOWN",
    "PREFLIGHT_INCOMPLETE",
}
INSECURE_KUBELET = {
    "anonymous_auth": True,
    "authorization_mode": "AlwaysAllow",
    "read_only_port": 10255,
}
ETCD_FAILURE = (
    "https://127.0.0.1:2379 is unhealthy: failed to commit proposal: context deadline exceeded\n"
    "Error: unhealthy cluster"
)


@dataclass
class Plan:
    rc: int
    doc: dict[str, Any]

    @property
    def findings(self) -> list[dict[str, Any]]:
        return list(self.doc["findings"])

    def of(self, code: str) -> list[dict[str, Any]]:
        return [f for f in self.findings if f["code"] == code]

    def nodes(self, code: str) -> set[str | None]:
        return {f["node"] for f in self.of(code)}

    @property
    def preflight_codes(self) -> set[str]:
        return {f["code"] for f in self.findings if f["code"] in PREFLIGHT_CODES}

    @property
    def blocker_codes(self) -> set[str]:
        return {f["code"] for f in self.findings if f["severity"] == "blocker"}


class Lab(LabFiles):
    def plan(self, to: str, *flags: str) -> Plan:
        r = cli("plan", "-i", str(self.inventory), "--to", to, "--json", *flags)
        assert r.returncode in (0, 3), r.stderr
        return Plan(r.returncode, json.loads(r.stdout))

    @contextmanager
    def api(self) -> Iterator[Any]:
        """An ApiClient on the lab's kubeconfig (TLS verified), closed afterwards."""
        from upgrader.kube.client import make_api_client

        client = make_api_client(self.dir / "kubeconfig", None)
        try:
            yield client
        finally:
            client.close()  # type: ignore[no-untyped-call]

    def call(self, fn_name: str, api_class: str, *args: Any, **kwargs: Any) -> Any:
        """One API call through upgrader's request_json (raw JSON, retried)."""
        import kubernetes.client

        from upgrader.kube.retry import request_json

        with self.api() as api:
            fn = getattr(getattr(kubernetes.client, api_class)(api), fn_name)
            return request_json(fn, *args, what=fn_name, **kwargs)

    def admin(self, path: str, body: dict[str, Any]) -> None:
        """POST to the lab's admin API (what the node tools do)."""
        import http.client
        import ssl

        info = json.loads((self.dir / "lab.json").read_text())["api"]
        token = Path(info["token_file"]).read_text().strip()
        host, port = info["url"].removeprefix("https://").split(":")
        ctx = ssl.create_default_context(cafile=info["ca"])
        conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=30)
        conn.request(
            "POST",
            f"/_lab/v1/{path}",
            json.dumps(body),
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        conn.close()


@contextmanager
def lab(tmp_path: Path, name: str, spec: dict[str, Any] | None = None) -> Iterator[Lab]:
    with running_lab(tmp_path / name, spec) as d:
        yield Lab(d)


def _pool_for(lab: Lab) -> tuple[Any, Any]:
    from upgrader.inventory import load_inventory
    from upgrader.transport.ssh import SSHPool

    return load_inventory(lab.inventory), SSHPool()


# --------------------------------------------------------------------------- default lab


def test_default_lab_triggers_no_check(tmp_path: Path) -> None:
    from upgrader.preflight import health_gate, wait_pdbs_recovered, wait_until_healthy

    with lab(tmp_path, "default") as lb:
        p = lb.plan("v1.28.4")
        assert p.rc == 0 and not p.doc["blocked"]
        # certificates: the lab's nodes carry none, which is a note, never more
        assert p.preflight_codes <= {"CERT_EXPIRY_UNKNOWN"}
        assert {f["severity"] for f in p.of("CERT_EXPIRY_UNKNOWN")} <= {"info"}

        inv, pool = _pool_for(lb)
        try:
            with lb.api() as api:

                def gate() -> list[Finding]:
                    return health_gate(
                        api,
                        transports=lambda n: pool.get(inv.ssh_target(n)),
                        control_planes=["cp-1"],
                    )

                assert gate() == []
                result = wait_until_healthy(gate, validate_count=3, interval=0.0, timeout=60)
                assert result.passed and result.evaluations == 3

                # post-flight: the budgets as they were allow disruptions; a budget that
                # no longer does (here: tightened to maxUnavailable 0) is named
                before = lb.call("list_pod_disruption_budget_for_all_namespaces", "PolicyV1Api")[
                    "items"
                ]
                assert {p["status"]["disruptionsAllowed"] for p in before} == {1}
                assert wait_pdbs_recovered(api, before, timeout=0) == []
                lb.call(
                    "patch_namespaced_pod_disruption_budget",
                    "PolicyV1Api",
                    "web",
                    "default",
                    {"spec": {"maxUnavailable": 0}},
                    _content_type="application/merge-patch+json",
                )
                problems = wait_pdbs_recovered(api, before, timeout=0.5, interval=0.1)
                assert len(problems) == 1 and "PodDisruptionBudget default/web" in problems[0]
        finally:
            pool.close()


# --------------------------------------------------------------------------- RBAC


def test_rbac_exactly_the_printed_rules_pass(tmp_path: Path) -> None:
    from upgrader.preflight import health_gate, wait_until_healthy

    printed = cli("rbac", "--serviceaccount", "kube-system/upgrader")
    assert printed.returncode == 0, printed.stderr
    # the documents render_rbac renders (their kinds and rules: tests/unit/test_checks_access.py)
    assert printed.stdout == render_rbac(subject_from(serviceaccount="kube-system/upgrader"))

    spec = {
        "nodes": [
            {"name": "cp-1", "role": "control-plane", "kubelet_config": INSECURE_KUBELET},
            {"name": "w-1", "role": "worker", "kubelet_config": INSECURE_KUBELET},
            {"name": "w-2", "role": "worker"},
        ],
        # the rules and the Lease `upgrader rbac` printed (no create right on leases)
        "rbac": {"allow": lab_rules(), "lease": True},
        "faults": [
            {
                "node": "cp-1",
                "match": "endpoint health",
                "times": 1,
                "exit": 1,
                "stderr": ETCD_FAILURE,
            }
        ],
    }
    with lab(tmp_path, "rbac", spec) as lb:
        inv, pool = _pool_for(lb)
        try:
            with lb.api() as api:
                # the gate fails once (the injected etcd fault), then passes twice in a row
                seen: list[list[Finding]] = []

                def gate() -> list[Finding]:
                    seen.append(
                        health_gate(
                            api,
                            transports=lambda n: pool.get(inv.ssh_target(n)),
                            control_planes=["cp-1"],
                        )
                    )
                    return seen[-1]

                result = wait_until_healthy(gate, validate_count=2, interval=0.0, timeout=60)
        finally:
            pool.close()
        assert result.passed and result.evaluations == 3
        assert [f.code for f in seen[0]] == ["ETCD_UNHEALTHY"]
        assert "context deadline exceeded" in seen[0][0].message
        assert seen[1] == seen[2] == []

        p = lb.plan("v1.28.4")
        assert p.rc == 0, p.findings
        assert not {c for c in p.preflight_codes if c.startswith("PERMISSION")}
        assert not p.of("PREFLIGHT_INCOMPLETE")
        assert p.nodes("KUBELET_READ_ONLY_PORT") == {"cp-1", "w-1"}
        harden = lb.plan("v1.28.4", "--harden-kubelet")
        assert {f["severity"] for f in harden.of("KUBELET_READ_ONLY_PORT")} == {"info"}
        steps = [s["id"] for n in harden.doc["nodes"] for s in n["steps"]]
        assert "v1.28.4/w-2/worker/harden-kubelet" in steps
        assert "v1.28.4/w-2/worker/verify-kubelet-hardening" in steps

        # the whole run works with nothing more than those rules, and hardens the kubelets
        extra = lb.root("w-1") / "etc" / "default" / "kubelet"
        extra.parent.mkdir(parents=True, exist_ok=True)
        extra.write_text('KUBELET_EXTRA_ARGS="--read-only-port=10255 --max-pods=200"\n')
        r = cli(
            "apply",
            *("-i", str(lb.inventory), "--to", "v1.28.4", "--yes", "-q", "--harden-kubelet"),
            timeout=400,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        nodes = lb.call("list_node", "CoreV1Api")["items"]
        assert {n["status"]["nodeInfo"]["kubeletVersion"] for n in nodes} == {"v1.28.4"}
        assert extra.read_text() == (
            'KUBELET_EXTRA_ARGS="--max-pods=200 --anonymous-auth=false '
            '--authorization-mode=Webhook --read-only-port=0"\n'
        )
        (backup,) = extra.parent.glob("kubelet.upgrader-backup-*")
        assert "--read-only-port=10255" in backup.read_text()
        facts = cli("facts", "-i", str(lb.inventory))
        assert facts.returncode == 0, facts.stderr
        after = Facts.from_dict(json.loads(facts.stdout))
        assert check_kubelet(after) == []


def test_rbac_missing_rules_are_blockers_naming_them(tmp_path: Path) -> None:
    rules = [
        r
        for r in lab_rules()
        if r["resources"] != ["pods/eviction"]
        and not (r["resources"] == ["leases"] and "update" in r["verbs"])
    ]
    # keep reading the lease by name (the check reads it), lose only "update"
    rules.append(
        {
            "verbs": ["get"],
            "group": "coordination.k8s.io",
            "resources": ["leases"],
            "namespaces": ["kube-system"],
            "resourceNames": ["upgrader-lock"],
        }
    )
    with lab(tmp_path, "norbac", {"rbac": {"allow": rules}}) as lb:
        p = lb.plan("v1.28.4")
        assert p.rc == 3
        missing = p.of("PERMISSION_MISSING")
        assert {f["severity"] for f in missing} == {"blocker"}
        text = "\n".join(f["message"] for f in missing)
        # the printed Lease was not applied here: creating it is then needed, and not allowed
        assert len(missing) == 3, text
        assert 'create leases (group "coordination.k8s.io") in namespace kube-system' in text
        assert "only while the Lease does not exist" in text
        assert 'create pods/eviction (group "")' in text
        assert 'update leases (group "coordination.k8s.io") named upgrader-lock' in text
        assert "kube-system" in text
        assert all("upgrader rbac" in f["fix"] for f in missing)


# --------------------------------------------------------------------------- every check


BAD_SPEC: dict[str, Any] = {
    "version": "v1.24.17",
    "nodes": [
        {"name": "cp-1", "role": "control-plane", "kubelet_config": INSECURE_KUBELET},
        {"name": "w-1", "role": "worker", "runtime": "docker://20.10.24"},
        {"name": "w-2", "role": "worker", "never_ready": True},
    ],
    "workloads": [
        {"kind": "Deployment", "name": "web", "replicas": 3, "pdb": {"maxUnavailable": 1}},
        {"kind": "Deployment", "name": "db", "replicas": 2, "pdb": {"minAvailable": 2}},
        {
            "kind": "Deployment",
            "name": "multi",
            "replicas": 1,
            "pdbs": [{"maxUnavailable": 1}, {"name": "multi-2", "minAvailable": 0}],
        },
        {"kind": "DaemonSet", "namespace": "kube-system", "name": "kube-proxy"},
        {"kind": "Pod", "name": "lonely", "node": "w-1", "empty_dir": True},
    ],
    "deprecated_api_requests": [
        {
            "group": "policy",
            "version": "v1beta1",
            "resource": "poddisruptionbudgets",
            "subresource": "",
            "removed_release": "1.25",
        }
    ],
    "faults": [
        {"node": "cp-1", "match": "endpoint health", "times": 1, "exit": 1, "stderr": ETCD_FAILURE}
    ],
}


def _cert(path: Path, not_after: datetime) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = self_signed(key, path.stem, not_after - timedelta(days=400), not_after)
    cert = builder.sign(key, hashes.SHA256())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _break_things(lb: Lab) -> None:
    """What the spec cannot say: node files, API objects, a held lock, a NotReady node."""
    from upgrader.kube import lease

    # dockerd: on TCP without TLS on w-2; with tlsverify on w-1 (fine)
    d2 = lb.root("w-2") / "etc" / "docker"
    d2.mkdir(parents=True)
    (d2 / "daemon.json").write_text(
        json.dumps({"hosts": ["unix:///var/run/docker.sock", "tcp://0.0.0.0:2375"]})
    )
    d1 = lb.root("w-1") / "etc" / "docker"
    d1.mkdir(parents=True)
    (d1 / "daemon.json").write_text(
        json.dumps({"hosts": ["tcp://0.0.0.0:2376"], "tlsverify": True})
    )
    # certificates on cp-1: one expired, one expiring in 10 days, one good for a year
    now = datetime.now(UTC)
    pki = lb.root("cp-1") / "etc" / "kubernetes" / "pki"
    _cert(pki / "front-proxy-client.crt", now - timedelta(days=2))
    _cert(pki / "apiserver.crt", now + timedelta(days=10))
    _cert(pki / "etcd" / "server.crt", now + timedelta(days=365))

    # an object last applied in a version v1.25 removes; and one in a served version
    for name, version in (("legacy", "policy/v1beta1"), ("current", "policy/v1")):
        applied = {"apiVersion": version, "kind": "PodDisruptionBudget", "metadata": {"name": name}}
        body = {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {
                "name": name,
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": json.dumps(applied)
                },
            },
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": name}}},
        }
        lb.call("create_namespaced_pod_disruption_budget", "PolicyV1Api", "default", body)
    # what kubeadm upgrade would write to every node
    cm = lb.call("read_namespaced_config_map", "CoreV1Api", "kubelet-config", "kube-system")
    cm["data"]["kubelet"] += "readOnlyPort: 10255\n"
    lb.call("replace_namespaced_config_map", "CoreV1Api", "kubelet-config", "kube-system", cm)
    # a control-plane mirror pod that is not Ready
    lb.call(
        "patch_namespaced_pod_status",
        "CoreV1Api",
        "kube-scheduler-cp-1",
        "kube-system",
        {"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Crash"}]}},
        _content_type="application/merge-patch+json",
    )
    # another run holds the lock
    with lb.api() as api:
        lease.acquire(api, "other", holder="ops@elsewhere/other", duration=3600)
    # w-2's kubelet restarts and never comes back (spec never_ready)
    lb.admin("nodes/w-2/kubelet-restart", {})


def _pods_of(lb: Lab, app: str) -> set[str]:
    """The nodes the pods of ``app`` run on."""
    pods = lb.call("list_namespaced_pod", "CoreV1Api", "default", label_selector=f"app={app}")
    return {str(p["spec"]["nodeName"]) for p in pods["items"]}


def test_every_check_triggers_beside_what_passes(tmp_path: Path) -> None:
    from upgrader.kube import lease

    with lab(tmp_path, "bad", BAD_SPEC) as lb:
        _break_things(lb)
        p = lb.plan("v1.25.16")
        assert p.rc == 3
        msg = {f["code"]: f["message"] for f in p.findings}

        # kubelet hardening: cp-1 only, warnings without --strict
        for code in (
            "KUBELET_ANONYMOUS_AUTH",
            "KUBELET_AUTHORIZATION_MODE",
            "KUBELET_READ_ONLY_PORT",
        ):
            assert p.nodes(code) == {"cp-1"}, code
            assert {f["severity"] for f in p.of(code)} == {"warning"}
        assert "10255" in msg["KUBELET_READ_ONLY_PORT"]
        assert p.nodes("KUBELET_CONFIGMAP_INSECURE") == {None}

        # runtime: w-1 on docker; dockerd on TCP without TLS on w-2 only
        assert p.nodes("DOCKERSHIM_REMOVED") == {"w-1"}
        assert "docker://20.10.24" in msg["DOCKERSHIM_REMOVED"]
        assert p.nodes("DOCKERD_TCP_NO_TLS") == {"w-2"}
        assert "tcp://0.0.0.0:2375" in msg["DOCKERD_TCP_NO_TLS"]
        assert "2376" not in msg["DOCKERD_TCP_NO_TLS"]

        # removed APIs: the metric and the legacy object, not the current one
        assert "policy/v1beta1 poddisruptionbudgets" in msg["REMOVED_API_REQUESTED"]
        applied = p.of("REMOVED_API_APPLIED")
        assert len(applied) == 1 and "PodDisruptionBudget default/legacy" in applied[0]["message"]
        assert 'group "policy", version v1beta1' in applied[0]["message"]

        # drainability: db (minAvailable == replicas) and multi (two budgets) where they run,
        # the unmanaged emptyDir pod on w-1; web (maxUnavailable 1) nowhere
        assert p.nodes("DRAIN_PDB_BLOCKS") == _pods_of(lb, "db")
        assert all("default/db" in f["message"] for f in p.of("DRAIN_PDB_BLOCKS"))
        assert p.nodes("DRAIN_MULTIPLE_PDBS") == _pods_of(lb, "multi")
        assert "default/multi, default/multi-2" in msg["DRAIN_MULTIPLE_PDBS"]
        assert p.nodes("DRAIN_EMPTYDIR") == {"w-1"} and "default/lonely" in msg["DRAIN_EMPTYDIR"]
        assert p.nodes("DRAIN_UNMANAGED_POD") == {"w-1"}
        assert not any("default/web" in f["message"] for f in p.findings)
        assert {f["override"] for f in p.of("DRAIN_EMPTYDIR")} == {"--delete-emptydir-data"}

        # health: w-2 NotReady, the scheduler pod, etcd (the fault), the lock, certificates
        assert p.nodes("NODE_NOT_READY") == {"w-2"}
        assert p.nodes("CONTROL_PLANE_POD_NOT_READY") == {"cp-1"}
        assert "kube-scheduler" in msg["CONTROL_PLANE_POD_NOT_READY"]
        assert p.nodes("ETCD_UNHEALTHY") == {"cp-1"}
        assert "ops@elsewhere/other" in msg["LOCK_HELD"]
        assert "front-proxy-client.crt" in msg["CERT_EXPIRED"]
        assert "apiserver.crt" in msg["CERT_EXPIRING"]
        assert "etcd/server.crt" not in msg["CERT_EXPIRING"] + msg["CERT_EXPIRED"]
        assert not p.of("PERMISSION_MISSING") and not p.of("PREFLIGHT_INCOMPLETE")
        assert p.blocker_codes >= {
            "DOCKERSHIM_REMOVED",
            "REMOVED_API_REQUESTED",
            "REMOVED_API_APPLIED",
            "DRAIN_PDB_BLOCKS",
            "DRAIN_MULTIPLE_PDBS",
            "DRAIN_EMPTYDIR",
            "DRAIN_UNMANAGED_POD",
            "NODE_NOT_READY",
            "CONTROL_PLANE_POD_NOT_READY",
            "ETCD_UNHEALTHY",
            "LOCK_HELD",
            "CERT_EXPIRED",
        }

        # The lock left behind by a run that died, and the operator's flags.
        past = datetime.now(UTC) - timedelta(hours=2)
        with lb.api() as api:
            lease.acquire(api, "other", holder="ops@elsewhere/other", duration=60, now=lambda: past)
        q = lb.plan(
            "v1.25.16", "--strict", "--delete-emptydir-data", "--force", "--disable-eviction"
        )
        assert q.rc == 3
        assert q.of("LOCK_STALE") and not q.of("LOCK_HELD")
        assert not q.of("ETCD_UNHEALTHY")  # the fault fired once; etcd answers now
        for code in (
            "KUBELET_ANONYMOUS_AUTH",
            "KUBELET_READ_ONLY_PORT",
            "KUBELET_CONFIGMAP_INSECURE",
        ):
            assert {f["severity"] for f in q.of(code)} == {"blocker"}, code
        for code in (
            "DRAIN_EMPTYDIR",
            "DRAIN_UNMANAGED_POD",
            "DRAIN_PDB_BLOCKS",
            "DRAIN_MULTIPLE_PDBS",
        ):
            assert q.of(code) and {f["severity"] for f in q.of(code)} == {"warning"}, code
            assert all("(passed by --" in f["message"] for f in q.of(code))
        # --disable-eviction needs "delete pods", which this (unrestricted) lab grants
        assert not q.of("PERMISSION_MISSING")
