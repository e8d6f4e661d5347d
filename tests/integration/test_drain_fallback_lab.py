"""``upgrader apply --drain-fallback delete --pod-selector`` end to end against the lab
(1 control plane + 2 workers): a budget that never allows an eviction holds the ``db``
pods; with ``--drain-timeout 5 --drain-fallback delete`` the run deletes them once the
timeout ran out, says so (progress line, event, transcript, summary) and finishes, while
``--pod-selector app=db`` leaves the ``web`` pods where they are (checked with the
Kubernetes client). Real CLI in a subprocess, real sshd, the lab's API over HTTPS (helpers
of apply_kit)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from apply_kit import TARGET, Lab, all_at, cluster_spec
from kubernetes.client import CoreV1Api

from upgrader.kube.client import make_api_client


def _pods_by_node(lab: Lab) -> dict[str, set[str]]:
    api = make_api_client(lab.dir / "kubeconfig", None)
    try:
        out: dict[str, set[str]] = {}
        for p in CoreV1Api(api).list_namespaced_pod("default").items:
            out.setdefault(p.spec.node_name, set()).add(p.metadata.name)
        return out
    finally:
        api.close()


def test_fallback_deletes_held_pods_and_the_selector_leaves_the_others(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab(
        cluster_spec(
            "v1.27.8",
            workers=2,
            workloads=[
                # minAvailable 2 of 2: the budget never allows an eviction
                {
                    "kind": "Deployment",
                    "name": "db",
                    "replicas": 2,
                    "grace_period": 1,
                    "pdb": {"minAvailable": 2},
                },
                {"kind": "Deployment", "name": "web", "replicas": 2, "grace_period": 0},
            ],
        )
    )
    before = _pods_by_node(lab)
    web_before = {n: {p for p in ps if p.startswith("web")} for n, ps in before.items()}
    db_before = {p for ps in before.values() for p in ps if p.startswith("db")}
    assert db_before and any(web_before.values())

    # without the fallback, the preflight says the drain cannot finish
    refused = lab.apply("--drain-timeout", "5")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "DRAIN_PDB_BLOCKS" in refused.stdout + refused.stderr
    assert not lab.state.exists()

    r = lab.apply("--drain-timeout", "5", "--drain-fallback", "delete", "--pod-selector", "app=db")
    assert r.returncode == 0, r.stdout + r.stderr
    all_at(lab)
    out = r.stdout + r.stderr
    # the plan said so before it ran
    flat = " ".join(out.split())  # the brief plan wraps its prose at 120 columns
    assert "then the pods they still hold are deleted, only pods matching app=db" in flat
    assert "(passed by --drain-fallback delete)" in flat
    # the progress line names the pods and the budget
    said = [line for line in out.splitlines() if "drain fallback: deleted pod(s)" in line]
    assert said and all("overriding PodDisruptionBudget default/db" in s for s in said), out
    deleted = {e for s in said for e in s.split("deleted pod(s) ", 1)[1].split(" (")[0].split(", ")}
    # only db pods (a replacement the controller put on w-2 may be among them)
    assert deleted and all(p.startswith("default/db-") for p in deleted), deleted
    assert deleted & {f"default/{p}" for p in db_before}

    events = [e for e in lab.events_list() if e["event"] == "drain-fallback"]
    assert {p for e in events for p in e["pods"]} == deleted
    assert all(e["budgets"] == ["default/db"] for e in events)
    summary = json.loads(lab.state.with_name(lab.state.name + ".summary.json").read_text())
    in_summary = {p for n in summary["nodes"] for p in n["fallback_deleted"]}
    assert in_summary == deleted
    assert "drain fallback: deleted pod(s)" in r.stdout.split("Summary of run", 1)[1]
    transcripts = Path(lab.state_doc()["transcripts"])
    noted = "".join((transcripts / f"{w}.log").read_text() for w in ("w-1", "w-2"))
    assert "drain fallback: deleted pod(s)" in noted

    # --pod-selector app=db: every web pod is still on the node it ran on
    after = _pods_by_node(lab)
    for node, webs in web_before.items():
        assert webs <= after.get(node, set()), (node, webs, after)
    assert lab.state_doc()["status"] == "succeeded"
    assert lab.nodes()["w-1"]["kubelet"] == TARGET
