"""The objects a fresh lab starts with, derived from the spec.

Owns the translation spec -> initial cluster: namespaces, Nodes (cordoned ones
unschedulable), control-plane mirror pods on CP nodes, the kubeadm-config and
kubelet-config ConfigMaps, the run's Lease when ``rbac.lease`` asks for it, the spec's
Deployments/DaemonSets/Pods and their PDBs. The controller then fills in ReplicaSets and
pods. Must not: write to disk or know HTTP.
"""

from __future__ import annotations

from typing import Any

from upgrader_lab.apiserver import objects as ob
from upgrader_lab.apiserver.spec import LabSpec

Json = dict[str, Any]

SYSTEM_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")


def initial_objects(spec: LabSpec, now: float) -> list[tuple[str, Json]]:
    out: list[tuple[str, Json]] = []
    namespaces = list(SYSTEM_NAMESPACES)
    for w in spec.workloads:
        if w.namespace not in namespaces:
            namespaces.append(w.namespace)
    for ns in namespaces:
        out.append(("namespaces", ob.build_namespace(ns, now)))
    nodes: dict[str, Json] = {}
    repo = spec.image_repository
    for i, n in enumerate(spec.nodes):
        node = ob.build_node(n, i, now)
        nodes[n.name] = node
        out.append(("nodes", node))
    for n in spec.nodes:
        if n.is_control_plane and n.control_plane:
            for comp in (*ob.CP_COMPONENTS, *([] if spec.etcd_external else ["etcd"])):
                pod = ob.mirror_pod(comp, nodes[n.name], n.control_plane, now, repo)
                out.append(("pods", pod))
    endpoint = ob.control_plane_endpoint(spec)
    out.append(
        (
            "configmaps",
            ob.kubeadm_config_map(
                spec.version, spec.cluster_name, endpoint, now, spec.etcd_external, repo
            ),
        )
    )
    out.append(("configmaps", ob.kubelet_config_map(now)))
    if spec.seed_lease:  # as after `kubectl apply` of what `upgrader rbac` prints
        lease_meta = ob.meta(
            "upgrader-lock", "kube-system", now, {"app.kubernetes.io/name": "upgrader"}
        )
        out.append(("leases", {"metadata": lease_meta, "spec": {}}))
    for w in spec.workloads:
        labels = ob.workload_labels(w)
        if w.kind == "Deployment":
            out.append(("deployments", ob.build_deployment(w, spec.version, now, repo)))
        elif w.kind == "DaemonSet":
            ds = ob.build_daemonset(w, spec.version, now, repo)
            ds["spec"]["template"]["spec"].setdefault("tolerations", [{"operator": "Exists"}])
            out.append(("daemonsets", ds))
        elif w.kind == "Pod" and w.node is not None:
            out.append(("pods", ob.build_bare_pod(w, nodes[w.node], spec.version, now, repo)))
        for p in w.pdbs:
            out.append(("poddisruptionbudgets", ob.build_pdb(p, w.namespace, labels, now)))
    return out
