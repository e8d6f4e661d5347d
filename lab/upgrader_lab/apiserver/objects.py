"""Builders of realistic Kubernetes objects (as JSON-shaped dicts) for the lab.

Owns the field shapes of the Nodes, Pods (mirror, DaemonSet, ReplicaSet, bare),
Deployments, ReplicaSets, DaemonSets, PDBs, Namespaces and kubeadm ConfigMaps the lab
serves, copied from what a kubeadm cluster's API returns. Objects carry no ``kind`` /
``apiVersion`` (the store adds them on the way out, as the real server does for list
items). Pure apart from clocks and randomness; must not touch the store or do I/O.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import random
import uuid
from typing import Any

import yaml

from upgrader.core.versions import KubeVersion
from upgrader_lab.apiserver.spec import LabSpec, NodeSpec, PdbSpec, WorkloadSpec

# kubeadm's etcd and CoreDNS tags per minor: one table with the nodes' manifests
from upgrader_lab.node.tree import COREDNS_BY_MINOR, etcd_version

Json = dict[str, Any]

CP_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
CP_LABEL = "node-role.kubernetes.io/control-plane"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
PAUSE_IMAGE = "registry.k8s.io/pause:3.9"
DEFAULT_REPOSITORY = "registry.k8s.io"  # kubeadm's default imageRepository
DEFAULT_DEPLOYMENT_IMAGE = "docker.io/library/nginx:1.25.3"
_ALNUM = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand alphabet

OS_IMAGE = {
    "debian": "Debian GNU/Linux 12 (bookworm)",
    "rhel": "Rocky Linux 9.3 (Blue Onyx)",
    "fedora": "Fedora Linux 41 (Server Edition)",
}
KERNEL = {
    "debian": "6.1.0-18-amd64",
    "rhel": "5.14.0-362.8.1.el9_3.x86_64",
    "fedora": "6.11.4-301.fc41.x86_64",
}

TOLERATIONS_DEFAULT = [
    {
        "key": "node.kubernetes.io/not-ready",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
    {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
]
# What the DaemonSet controller adds to every DaemonSet pod (util.AddOrUpdateDaemonPodTolerations).
TOLERATIONS_DAEMON = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]


# --------------------------------------------------------------------------- helpers


def ts(t: float) -> str:
    """metav1.Time: RFC 3339, second precision, UTC."""
    return dt.datetime.fromtimestamp(int(t), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ts(s: str) -> float:
    return dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()


def new_uid() -> str:
    return str(uuid.uuid4())


def rand_suffix(n: int = 5) -> str:
    return "".join(random.choice(_ALNUM) for _ in range(n))


def _hex(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def container_id(seed: str) -> str:
    return "containerd://" + _hex(seed + random.random().hex())


def image_id(image: str) -> str:
    repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return f"{repo}@sha256:{_hex(image)}"


def template_hash(template: Any) -> str:
    """pod-template-hash: FNV-32a of the template, digits mapped like rand.SafeEncodeString."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return "".join(_ALNUM[ord(c) % len(_ALNUM)] for c in str(h))


def meta(
    name: str,
    namespace: str | None,
    created: float,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> Json:
    m: Json = {"name": name}
    if namespace is not None:
        m["namespace"] = namespace
    m["uid"] = new_uid()
    m["creationTimestamp"] = ts(created)
    if labels:
        m["labels"] = dict(labels)
    if annotations:
        m["annotations"] = dict(annotations)
    return m


def owner_ref(api_version: str, kind: str, obj: Json) -> Json:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def minor_of(version: str) -> int:
    return KubeVersion.parse(version).minor


def etcd_image(version: str, repository: str = DEFAULT_REPOSITORY) -> str:
    return f"{repository}/etcd:{etcd_version(version)}"


# --------------------------------------------------------------------------- nodes


def node_condition(ctype: str, status: str, reason: str, message: str, now: float) -> Json:
    return {
        "type": ctype,
        "status": status,
        "lastHeartbeatTime": ts(now),
        "lastTransitionTime": ts(now),
        "reason": reason,
        "message": message,
    }


def node_conditions(ready: str, now: float) -> list[Json]:
    """The four conditions a kubelet posts; ``ready`` is "True", "False" or "Unknown"."""
    conds = [
        node_condition(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
            now,
        ),
        node_condition(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
            now,
        ),
        node_condition(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
            now,
        ),
    ]
    if ready == "True":
        conds.append(
            node_condition("Ready", "True", "KubeletReady", "kubelet is posting ready status", now)
        )
    elif ready == "False":
        conds.append(
            node_condition(
                "Ready",
                "False",
                "KubeletNotReady",
                "container runtime status check may not have completed yet",
                now,
            )
        )
    else:
        for c in conds:
            c.update(
                status="Unknown",
                reason="NodeStatusUnknown",
                message="Kubelet stopped posting node status.",
            )
        conds.append(
            node_condition(
                "Ready", "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.", now
            )
        )
    return conds


# kubeadm's CRI endpoints (cmd/kubeadm/app/constants: CRISocketContainerd, CRISocketCRIO; a
# docker:// node of the lab is a dockershim node, kubeadm <= 1.23 DefaultDockerCRISocket),
# by the runtime name the kubelet reports.
_CRI_SOCKETS = {
    "containerd": "unix:///var/run/containerd/containerd.sock",
    "cri-o": "unix:///var/run/crio/crio.sock",
    "docker": "unix:///var/run/dockershim.sock",
}


def cri_socket(runtime: str) -> str:
    """The ``kubeadm.alpha.kubernetes.io/cri-socket`` annotation for a runtime version string."""
    return _CRI_SOCKETS.get(runtime.split("://", 1)[0], _CRI_SOCKETS["containerd"])


def build_node(n: NodeSpec, index: int, created: float) -> Json:
    labels = {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": n.name,
        "kubernetes.io/os": "linux",
    }
    taints: list[Json] = []
    if n.is_control_plane:
        labels[CP_LABEL] = ""
        labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
        taints.append({"key": CP_LABEL, "effect": "NoSchedule"})
    labels.update(n.labels)  # the spec's own labels (nodes[].labels)
    annotations = {
        "kubeadm.alpha.kubernetes.io/cri-socket": cri_socket(n.runtime),
        "node.alpha.kubernetes.io/ttl": "0",
        "volumes.kubernetes.io/controller-managed-attach-detach": "true",
    }
    spec: Json = {"podCIDR": f"10.244.{index}.0/24", "podCIDRs": [f"10.244.{index}.0/24"]}
    if n.cordoned:
        spec["unschedulable"] = True
        taints.append(
            {
                "key": "node.kubernetes.io/unschedulable",
                "effect": "NoSchedule",
                "timeAdded": ts(created),
            }
        )
    if taints:
        spec["taints"] = taints
    seed = _hex(n.name)
    capacity = {
        "cpu": "2",
        "ephemeral-storage": "30787492Ki",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        "memory": "4015648Ki",
        "pods": "110",
    }
    allocatable = dict(capacity, **{"ephemeral-storage": "28373752581", "memory": "3913248Ki"})
    return {
        "metadata": meta(n.name, None, created, labels, annotations),
        "spec": spec,
        "status": {
            "capacity": capacity,
            "allocatable": allocatable,
            "conditions": node_conditions("True", created),
            "addresses": [
                {"type": "InternalIP", "address": n.address},
                {"type": "Hostname", "address": n.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": seed[:32],
                "systemUUID": str(uuid.UUID(seed[32:64])),
                "bootID": new_uid(),
                "kernelVersion": KERNEL.get(n.flavor, KERNEL[n.os_family]),
                "osImage": OS_IMAGE.get(n.flavor, OS_IMAGE[n.os_family]),
                "containerRuntimeVersion": n.runtime,
                "kubeletVersion": n.kubelet,
                "kubeProxyVersion": n.kubelet,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "images": [],
        },
    }


def node_ready(node: Json) -> str:
    for c in node.get("status", {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return str(c.get("status", "Unknown"))
    return "Unknown"


def node_ip(node: Json) -> str:
    for a in node.get("status", {}).get("addresses") or []:
        if a.get("type") == "InternalIP":
            return str(a.get("address"))
    return ""


def is_control_plane(node: Json) -> bool:
    return CP_LABEL in (node.get("metadata", {}).get("labels") or {})


# --------------------------------------------------------------------------- namespaces


def build_namespace(name: str, created: float) -> Json:
    return {
        "metadata": meta(name, None, created, {"kubernetes.io/metadata.name": name}),
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


# --------------------------------------------------------------------------- pods


def _service_account_volume() -> tuple[Json, Json]:
    name = f"kube-api-access-{rand_suffix(5)}"
    volume = {
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "namespace",
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            }
                        ]
                    }
                },
            ],
        },
    }
    mount = {
        "name": name,
        "readOnly": True,
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
    }
    return volume, mount


def default_container(name: str, image: str) -> Json:
    return {
        "name": name,
        "image": image,
        "resources": {},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }


def pod_template(
    labels: dict[str, str], image: str, container: str, grace: int, empty_dir: bool
) -> Json:
    c = default_container(container, image)
    spec: Json = {
        "containers": [c],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": grace,
        "dnsPolicy": "ClusterFirst",
        "securityContext": {},
        "schedulerName": "default-scheduler",
    }
    if empty_dir:
        spec["volumes"] = [{"name": "scratch", "emptyDir": {}}]
        c["volumeMounts"] = [{"name": "scratch", "mountPath": "/scratch"}]
    return {"metadata": {"creationTimestamp": None, "labels": dict(labels)}, "spec": spec}


def pod_from_template(
    template: Json,
    name: str,
    namespace: str,
    created: float,
    owner: Json | None,
    extra_labels: dict[str, str] | None = None,
    node_name: str | None = None,
    generate_name: str | None = None,
) -> Json:
    """A new Pending pod as the API server stores it after admission (defaults applied)."""
    tmeta = template.get("metadata") or {}
    labels = dict(tmeta.get("labels") or {})
    labels.update(extra_labels or {})
    m = meta(name, namespace, created, labels, tmeta.get("annotations"))
    if generate_name:
        m = {
            "name": name,
            "generateName": generate_name,
            **{k: v for k, v in m.items() if k != "name"},
        }
    if owner is not None:
        m["ownerReferences"] = [owner]
    spec = default_pod_spec(copy.deepcopy(template.get("spec") or {}))
    if node_name:
        spec["nodeName"] = node_name
    return {
        "metadata": m,
        "spec": spec,
        "status": pending_status(created, scheduled=bool(node_name)),
    }


def default_pod_spec(spec: Json) -> Json:
    """Apply the server-side defaults and the ServiceAccount admission plugin."""
    volume, mount = _service_account_volume()
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    if not spec.get("hostNetwork") and "serviceAccountName" not in spec:
        spec["serviceAccountName"] = "default"
        spec["serviceAccount"] = "default"
        spec.setdefault("volumes", []).append(volume)
        for c in spec.get("containers") or []:
            c.setdefault("volumeMounts", []).append(dict(mount))
    for c in spec.get("containers") or []:
        c.setdefault("resources", {})
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        c.setdefault("imagePullPolicy", "IfNotPresent")
    tol = spec.setdefault("tolerations", [])
    keys = {t.get("key") for t in tol}
    for t in TOLERATIONS_DEFAULT:
        if t["key"] not in keys:
            tol.append(dict(t))
    spec.setdefault("priority", 0)
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    return spec


def pending_status(now: float, scheduled: bool) -> Json:
    st: Json = {"phase": "Pending", "qosClass": "BestEffort"}
    if scheduled:
        st["conditions"] = [
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": ts(now),
            }
        ]
    return st


def _cond(ctype: str, status: str, now: float) -> Json:
    return {"type": ctype, "status": status, "lastProbeTime": None, "lastTransitionTime": ts(now)}


def creating_status(pod: Json, node: Json, now: float) -> Json:
    """Scheduled and bound, containers being created (STATUS ContainerCreating)."""
    spec = pod.get("spec") or {}
    host_ip = node_ip(node)
    return {
        "phase": "Pending",
        "conditions": [
            _cond("Initialized", "True", now),
            dict(
                _cond("Ready", "False", now),
                reason="ContainersNotReady",
                message=_not_ready_msg(spec),
            ),
            dict(
                _cond("ContainersReady", "False", now),
                reason="ContainersNotReady",
                message=_not_ready_msg(spec),
            ),
            _cond("PodScheduled", "True", now),
        ],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": ts(now),
        "containerStatuses": [
            {
                "name": c.get("name"),
                "state": {"waiting": {"reason": "ContainerCreating"}},
                "lastState": {},
                "ready": False,
                "restartCount": 0,
                "image": c.get("image"),
                "imageID": "",
                "started": False,
            }
            for c in spec.get("containers") or []
        ],
        "qosClass": "BestEffort",
    }


def _not_ready_msg(spec: Json) -> str:
    names = " ".join(str(c.get("name")) for c in spec.get("containers") or [])
    return f"containers with unready status: [{names}]"


def pod_ip_for(pod: Json, node: Json) -> str:
    if (pod.get("spec") or {}).get("hostNetwork"):
        return node_ip(node)
    cidr = str((node.get("spec") or {}).get("podCIDR") or "10.244.0.0/24")
    prefix = cidr.split("/")[0].rsplit(".", 1)[0]
    return f"{prefix}.{random.randint(2, 254)}"


def running_status(pod: Json, node: Json, now: float, ready: bool = True) -> Json:
    spec = pod.get("spec") or {}
    old = pod.get("status") or {}
    host_ip = node_ip(node)
    pod_ip = old.get("podIP") or pod_ip_for(pod, node)
    started = old.get("startTime") or ts(now)
    r = "True" if ready else "False"
    ready_cond = _cond("Ready", r, now)
    cready_cond = _cond("ContainersReady", r, now)
    if not ready:
        ready_cond.update(reason="ContainersNotReady", message=_not_ready_msg(spec))
        cready_cond.update(reason="ContainersNotReady", message=_not_ready_msg(spec))
    statuses = []
    for c in spec.get("containers") or []:
        image = str(c.get("image"))
        statuses.append(
            {
                "name": c.get("name"),
                "state": {"running": {"startedAt": ts(now)}},
                "lastState": {},
                "ready": ready,
                "restartCount": 0,
                "image": image,
                "imageID": image_id(image),
                "containerID": container_id(f"{pod['metadata'].get('uid')}/{c.get('name')}"),
                "started": True,
            }
        )
    st: Json = {
        "phase": "Running",
        "conditions": [
            _cond("Initialized", "True", now),
            ready_cond,
            cready_cond,
            _cond("PodScheduled", "True", now),
        ],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": started,
        "containerStatuses": statuses,
        "qosClass": old.get("qosClass", "BestEffort"),
    }
    return st


def pod_is_ready(pod: Json) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


def controller_of(obj: Json) -> Json | None:
    for r in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if r.get("controller"):
            return dict(r)
    return None


# --------------------------------------------------------------------------- mirror pods


def mirror_pod(
    component: str, node: Json, version: str, created: float, repository: str = DEFAULT_REPOSITORY
) -> Json:
    """The mirror pod the kubelet creates for a kubeadm static pod manifest."""
    node_name = node["metadata"]["name"]
    ip = node_ip(node)
    image = (
        etcd_image(version, repository)
        if component == "etcd"
        else f"{repository}/{component}:{version}"
    )
    config_hash = _hex(f"{node_name}/{component}/{image}")[:32]
    annotations = {
        "kubernetes.io/config.hash": config_hash,
        MIRROR_ANNOTATION: config_hash,
        "kubernetes.io/config.seen": dt.datetime.fromtimestamp(created, dt.UTC).strftime(
            "%Y-%m-%dT%H:%M:%S.%f000Z"
        ),
        "kubernetes.io/config.source": "file",
    }
    if component == "kube-apiserver":
        annotations["kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"] = (
            f"{ip}:6443"
        )
    if component == "etcd":
        annotations["kubeadm.kubernetes.io/etcd.advertise-client-urls"] = f"https://{ip}:2379"
    m = meta(
        f"{component}-{node_name}",
        "kube-system",
        created,
        {"component": component, "tier": "control-plane"},
        annotations,
    )
    m["ownerReferences"] = [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "name": node_name,
            "uid": node["metadata"]["uid"],
            "controller": True,
        }
    ]
    command = {
        "kube-apiserver": [
            "kube-apiserver",
            f"--advertise-address={ip}",
            "--secure-port=6443",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
        ],
        "kube-controller-manager": [
            "kube-controller-manager",
            "--leader-elect=true",
            "--use-service-account-credentials=true",
        ],
        "kube-scheduler": ["kube-scheduler", "--leader-elect=true"],
        "etcd": ["etcd", f"--advertise-client-urls=https://{ip}:2379", "--data-dir=/var/lib/etcd"],
    }[component]
    container = default_container(component, image)
    container["command"] = command
    spec: Json = {
        "containers": [container],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "nodeName": node_name,
        "hostNetwork": True,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "schedulerName": "default-scheduler",
        "tolerations": [{"operator": "Exists", "effect": "NoExecute"}],
        "priorityClassName": "system-node-critical",
        "priority": 2000001000,
        "enableServiceLinks": True,
        "preemptionPolicy": "PreemptLowerPriority",
    }
    pod: Json = {"metadata": m, "spec": spec, "status": {}}
    pod["status"] = running_status(pod, node, created)
    pod["status"]["qosClass"] = "Burstable"
    return pod


# --------------------------------------------------------------------------- workloads


def workload_labels(w: WorkloadSpec) -> dict[str, str]:
    if w.kind == "DaemonSet" and w.name == "kube-proxy":
        return {"k8s-app": "kube-proxy"}
    return {"app": w.name}


def coredns_image(version: str, repository: str = DEFAULT_REPOSITORY) -> str:
    """kubeadm's ``GetDNSImage``: ``coredns/coredns`` in the default registry, ``coredns``
    under any other imageRepository."""
    prefix = f"{repository}/coredns" if repository == DEFAULT_REPOSITORY else repository
    return f"{prefix}/coredns:{COREDNS_BY_MINOR.get(minor_of(version), 'v1.12.1')}"


def workload_image(
    w: WorkloadSpec, cluster_version: str, repository: str = DEFAULT_REPOSITORY
) -> str:
    if w.image:
        return w.image
    if w.kind == "DaemonSet" and w.name == "kube-proxy" and w.namespace == "kube-system":
        return f"{repository}/kube-proxy:{cluster_version}"
    if w.kind == "Deployment" and w.name == "coredns" and w.namespace == "kube-system":
        return coredns_image(cluster_version, repository)
    if w.kind == "Deployment":
        return DEFAULT_DEPLOYMENT_IMAGE
    return PAUSE_IMAGE


def _workload_template(
    w: WorkloadSpec, cluster_version: str, repository: str
) -> tuple[dict[str, str], Json]:
    labels = workload_labels(w)
    image = workload_image(w, cluster_version, repository)
    return labels, pod_template(labels, image, w.name, w.grace_period, w.empty_dir)


def build_deployment(
    w: WorkloadSpec, cluster_version: str, created: float, repository: str = DEFAULT_REPOSITORY
) -> Json:
    labels, tmpl = _workload_template(w, cluster_version, repository)
    return {
        "metadata": dict(
            meta(w.name, w.namespace, created, labels, {"deployment.kubernetes.io/revision": "1"}),
            generation=1,
        ),
        "spec": default_deployment_spec(
            {"replicas": w.replicas, "selector": {"matchLabels": dict(labels)}, "template": tmpl}
        ),
        "status": {},
    }


def default_deployment_spec(spec: Json) -> Json:
    spec.setdefault("replicas", 1)
    spec.setdefault(
        "strategy",
        {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
    )
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _default_template(spec)
    return spec


def _default_template(spec: Json) -> None:
    t = spec.setdefault("template", {})
    t.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    ps = t.setdefault("spec", {})
    ps.setdefault("restartPolicy", "Always")
    ps.setdefault("terminationGracePeriodSeconds", 30)
    ps.setdefault("dnsPolicy", "ClusterFirst")
    ps.setdefault("securityContext", {})
    ps.setdefault("schedulerName", "default-scheduler")
    for c in ps.get("containers") or []:
        if isinstance(c, dict):
            c.setdefault("resources", {})
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            c.setdefault("imagePullPolicy", "IfNotPresent")


def default_daemonset_spec(spec: Json) -> Json:
    spec.setdefault(
        "updateStrategy",
        {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
    )
    spec.setdefault("revisionHistoryLimit", 10)
    _default_template(spec)
    return spec


def default_replicaset_spec(spec: Json) -> Json:
    spec.setdefault("replicas", 1)
    _default_template(spec)
    return spec


def build_daemonset(
    w: WorkloadSpec, cluster_version: str, created: float, repository: str = DEFAULT_REPOSITORY
) -> Json:
    labels, tmpl = _workload_template(w, cluster_version, repository)
    if w.name == "kube-proxy":
        tmpl["spec"]["hostNetwork"] = True
        tmpl["spec"]["priorityClassName"] = "system-node-critical"
        tmpl["spec"]["tolerations"] = [{"operator": "Exists"}]
        tmpl["spec"]["nodeSelector"] = {"kubernetes.io/os": "linux"}
    return {
        "metadata": dict(
            meta(
                w.name,
                w.namespace,
                created,
                labels,
                {"deprecated.daemonset.template.generation": "1"},
            ),
            generation=1,
        ),
        "spec": default_daemonset_spec(
            {"selector": {"matchLabels": dict(labels)}, "template": tmpl}
        ),
        "status": {},
    }


def build_bare_pod(
    w: WorkloadSpec,
    node: Json,
    cluster_version: str,
    created: float,
    repository: str = DEFAULT_REPOSITORY,
) -> Json:
    _, tmpl = _workload_template(w, cluster_version, repository)
    pod = pod_from_template(
        tmpl, w.name, w.namespace, created, None, node_name=node["metadata"]["name"]
    )
    pod["status"] = running_status(pod, node, created)
    return pod


def build_pdb(p: PdbSpec, namespace: str, labels: dict[str, str], created: float) -> Json:
    spec: Json = {"selector": {"matchLabels": dict(labels)}}
    if p.min_available is not None:
        spec["minAvailable"] = p.min_available
    if p.max_unavailable is not None:
        spec["maxUnavailable"] = p.max_unavailable
    m = dict(meta(p.name, namespace, created), generation=1)
    return {"metadata": m, "spec": spec, "status": {}}


def pdb_counts(*, allowed: int, healthy: int, desired: int, expected: int) -> Json:
    """The counters of a PodDisruptionBudget's status, in the real server's key order."""
    return {
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
    }


# --------------------------------------------------------------------------- kubeadm


def etcd_section(external: tuple[str, ...]) -> Json:
    """ClusterConfiguration ``etcd``: local (stacked, kubeadm's default) or external with
    the apiserver's etcd client certificate, as kubeadm's docs configure it."""
    if not external:
        return {"local": {"dataDir": "/var/lib/etcd"}}
    return {
        "external": {
            "caFile": "/etc/kubernetes/pki/etcd/ca.crt",
            "certFile": "/etc/kubernetes/pki/apiserver-etcd-client.crt",
            "endpoints": list(external),
            "keyFile": "/etc/kubernetes/pki/apiserver-etcd-client.key",
        }
    }


def cluster_configuration(
    version: str,
    cluster_name: str,
    endpoint: str,
    etcd: Json | None = None,
    repository: str = DEFAULT_REPOSITORY,
) -> str:
    """kubeadm's ClusterConfiguration as stored in kube-system/kubeadm-config."""
    v1beta4 = minor_of(version) >= 31
    doc: Json = {
        "apiServer": {
            "certSANs": ["127.0.0.1", "localhost"],
            "extraArgs": [{"name": "authorization-mode", "value": "Node,RBAC"}]
            if v1beta4
            else {"authorization-mode": "Node,RBAC"},
        },
        "apiVersion": "kubeadm.k8s.io/v1beta4" if v1beta4 else "kubeadm.k8s.io/v1beta3",
        "caCertificateValidityPeriod": "87600h0m0s" if v1beta4 else None,
        "certificateValidityPeriod": "8760h0m0s" if v1beta4 else None,
        "certificatesDir": "/etc/kubernetes/pki",
        "clusterName": cluster_name,
        "controlPlaneEndpoint": endpoint,
        "controllerManager": {},
        "dns": {},
        "encryptionAlgorithm": "RSA-2048" if v1beta4 else None,
        "etcd": etcd if etcd is not None else etcd_section(()),
        "imageRepository": repository,
        "kind": "ClusterConfiguration",
        "kubernetesVersion": version,
        "networking": {
            "dnsDomain": "cluster.local",
            "podSubnet": "10.244.0.0/16",
            "serviceSubnet": "10.96.0.0/12",
        },
        "proxy": {} if v1beta4 else None,
        "scheduler": {},
    }
    if not v1beta4:
        doc["apiServer"]["timeoutForControlPlane"] = "4m0s"
    clean = {k: v for k, v in doc.items() if v is not None}
    return yaml.safe_dump(clean, sort_keys=True, default_flow_style=False)


def kubeadm_config_map(
    version: str,
    cluster_name: str,
    endpoint: str,
    created: float,
    etcd_external: tuple[str, ...] = (),
    repository: str = DEFAULT_REPOSITORY,
) -> Json:
    text = cluster_configuration(
        version, cluster_name, endpoint, etcd_section(etcd_external), repository
    )
    return {
        "metadata": meta("kubeadm-config", "kube-system", created),
        "data": {"ClusterConfiguration": text},
    }


def kubelet_config_map(created: float) -> Json:
    cfg = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"cacheTTL": "0s", "enabled": True},
            "x509": {"clientCAFile": "/etc/kubernetes/pki/ca.crt"},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "systemd",
        "clusterDNS": ["10.96.0.10"],
        "clusterDomain": "cluster.local",
        "rotateCertificates": True,
        "staticPodPath": "/etc/kubernetes/manifests",
    }
    return {
        "metadata": meta("kubelet-config", "kube-system", created),
        "data": {"kubelet": yaml.safe_dump(cfg, sort_keys=True)},
    }


def control_plane_endpoint(spec: LabSpec) -> str:
    for n in spec.nodes:
        if n.is_control_plane:
            return f"{n.address}:6443"
    return "127.0.0.1:6443"
