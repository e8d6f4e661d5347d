"""Read the cluster's facts through the API: versions, kubeadm-config, nodes, mirror pods.

Owns :func:`read_cluster`: ``GET /version`` (gitVersion), the ``kube-system/kubeadm-config``
ConfigMap (``ClusterConfiguration.kubernetesVersion``), every node (kubeletVersion, Ready,
unschedulable, containerRuntimeVersion, the control-plane role label, the labels) and the
control-plane components' versions per node from their mirror pods in kube-system
(annotation ``kubernetes.io/config.mirror``, label ``component``, ``spec.nodeName``, the
image tag). Lists are paginated. Calls go through :func:`upgrader.kube.retry.request_json`
(transient failures retried with bounded exponential backoff and jitter; what remains is
a one-line :class:`~upgrader.kube.retry.ApiError`, a ``KubernetesError``). Oddities that do
not stop the read (no kubeadm-config, an image tag that is not a version) are reported
as ``problems``.

Must not: print, write anything to the cluster, or decide what the facts mean.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from kubernetes.client import ApiClient, CoreV1Api, VersionApi

from upgrader.core.model import ControlPlaneVersions
from upgrader.core.parsers import ParseError, parse_kubeadm_etcd
from upgrader.core.versions import KubeVersion, VersionError
from upgrader.kube.nodes import MIRROR_ANNOTATION, condition, image_tag, is_unschedulable
from upgrader.kube.retry import DEFAULT_POLICY, ApiError, RetryPolicy, request_json

KUBE_SYSTEM = "kube-system"
KUBEADM_CONFIG = "kubeadm-config"
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")
PAGE_SIZE = 500


@dataclass(frozen=True)
class NodeRead:
    name: str
    kubelet_version: KubeVersion | None
    kubelet_version_raw: str | None
    ready: bool | None  # Ready condition: True/False, None when Unknown or absent
    unschedulable: bool
    container_runtime: str | None  # "containerd://1.7.2"
    control_plane_label: bool
    labels: Mapping[str, str] = field(default_factory=dict)  # metadata.labels


@dataclass(frozen=True)
class ClusterRead:
    apiserver_version: KubeVersion | None  # GET /version gitVersion
    kubeadm_version: KubeVersion | None  # kubeadm-config ClusterConfiguration.kubernetesVersion
    nodes: Mapping[str, NodeRead]
    control_planes: Mapping[str, ControlPlaneVersions]  # node name -> mirror-pod versions
    problems: tuple[str, ...] = field(default=())
    # kubeadm-config etcd.external.endpoints: () for local etcd, None when unreadable
    etcd_external: tuple[str, ...] | None = None
    image_repository: str | None = None  # kubeadm-config ClusterConfiguration.imageRepository


def _version(raw: Any, what: str, problems: list[str]) -> KubeVersion | None:
    if raw is None or raw == "":
        return None
    try:
        return KubeVersion.parse(str(raw))
    except VersionError as e:
        problems.append(f"{what}: {e}")
        return None


def paged(
    fn: Callable[..., Any], *args: Any, what: str, policy: RetryPolicy
) -> Iterator[dict[str, Any]]:
    """Every item of a LIST call, page by page (``limit`` and ``continue``), each page read
    with :func:`request_json`'s retries; a response that is not a list object is an
    :class:`ApiError`."""
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"limit": PAGE_SIZE}
        if token:
            kwargs["_continue"] = token
        page = request_json(fn, *args, what=what, policy=policy, **kwargs)
        if not isinstance(page, dict):
            raise ApiError(f"{what}: unexpected response (not a list object)")
        for item in page.get("items") or ():
            if isinstance(item, dict):
                yield item
        token = (page.get("metadata") or {}).get("continue") or None
        if not token:
            return


def read_apiserver_version(
    api: ApiClient, problems: list[str], *, policy: RetryPolicy = DEFAULT_POLICY
) -> KubeVersion | None:
    doc = request_json(VersionApi(api).get_code, what="GET /version", policy=policy)
    raw = doc.get("gitVersion") if isinstance(doc, dict) else None
    if raw is None:
        problems.append("GET /version: no gitVersion in the response")
    return _version(raw, "GET /version gitVersion", problems)


_KUBEADM_CONFIG_GET = f"GET configmap {KUBE_SYSTEM}/{KUBEADM_CONFIG}"


def _cluster_configuration(api: ApiClient, policy: RetryPolicy) -> tuple[bool, Any]:
    """(whether ``kube-system/kubeadm-config`` exists, its ``data.ClusterConfiguration``)."""
    try:
        cm = request_json(
            CoreV1Api(api).read_namespaced_config_map,
            KUBEADM_CONFIG,
            KUBE_SYSTEM,
            what=_KUBEADM_CONFIG_GET,
            policy=policy,
        )
    except ApiError as e:
        if e.not_found:
            return False, None
        raise
    return True, ((cm or {}).get("data") or {}).get("ClusterConfiguration")


def read_kubeadm_version(
    api: ApiClient, problems: list[str], *, policy: RetryPolicy = DEFAULT_POLICY
) -> KubeVersion | None:
    return read_kubeadm_config(api, problems, policy=policy)[0]


def read_kubeadm_config(
    api: ApiClient, problems: list[str], *, policy: RetryPolicy = DEFAULT_POLICY
) -> tuple[KubeVersion | None, str | None]:
    """The ClusterConfiguration's ``kubernetesVersion`` and ``imageRepository`` (``None``
    when absent; kubeadm's default registry then applies)."""
    what = _KUBEADM_CONFIG_GET
    found, text = _cluster_configuration(api, policy)
    if not found:
        problems.append(f"{what}: not found (not a kubeadm cluster?)")
        return None, None
    if not isinstance(text, str):
        problems.append(f"{what}: no data.ClusterConfiguration")
        return None, None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        problems.append(f"{what}: ClusterConfiguration is not YAML: {' '.join(str(e).split())}")
        return None, None
    raw = doc.get("kubernetesVersion") if isinstance(doc, dict) else None
    if raw is None:
        problems.append(f"{what}: ClusterConfiguration has no kubernetesVersion")
    repo = doc.get("imageRepository") if isinstance(doc, dict) else None
    image_repository = repo if isinstance(repo, str) and repo.strip() else None
    return _version(raw, f"{what} kubernetesVersion", problems), image_repository


def read_kubeadm_etcd(
    api: ApiClient, problems: list[str], *, policy: RetryPolicy = DEFAULT_POLICY
) -> tuple[str, ...] | None:
    """kubeadm-config's ``etcd.external.endpoints`` (``()``: local etcd); None when the
    ConfigMap cannot say (its absence is reported by :func:`read_kubeadm_version`)."""
    found, text = _cluster_configuration(api, policy)
    if not found or not isinstance(text, str):
        return None
    try:
        return parse_kubeadm_etcd(text)
    except ParseError as e:
        problems.append(f"{_KUBEADM_CONFIG_GET}: {e}")
        return None


def _node_read(obj: Mapping[str, Any], problems: list[str]) -> NodeRead | None:
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        problems.append("a node without metadata.name was skipped")
        return None
    info = (obj.get("status") or {}).get("nodeInfo") or {}
    raw = info.get("kubeletVersion")
    ready_cond = condition(obj, "Ready")
    ready = None
    if ready_cond is not None and ready_cond.get("status") in ("True", "False"):
        ready = ready_cond.get("status") == "True"
    labels = meta.get("labels") or {}
    runtime = info.get("containerRuntimeVersion")
    return NodeRead(
        name=name,
        kubelet_version=_version(raw, f"node {name} kubeletVersion", problems),
        kubelet_version_raw=str(raw) if raw else None,
        ready=ready,
        unschedulable=is_unschedulable(obj),
        container_runtime=str(runtime) if runtime else None,
        control_plane_label=isinstance(labels, Mapping) and CONTROL_PLANE_LABEL in labels,
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else {},
    )


def read_nodes(
    api: ApiClient, problems: list[str], *, policy: RetryPolicy = DEFAULT_POLICY
) -> dict[str, NodeRead]:
    nodes: dict[str, NodeRead] = {}
    for obj in paged(CoreV1Api(api).list_node, what="LIST nodes", policy=policy):
        n = _node_read(obj, problems)
        if n is not None:
            nodes[n.name] = n
    return nodes


def _component_image(pod: Mapping[str, Any], component: str) -> str | None:
    containers = [c for c in (pod.get("spec") or {}).get("containers") or () if isinstance(c, dict)]
    for c in containers:
        if c.get("name") == component and isinstance(c.get("image"), str):
            return str(c["image"])
    if containers and isinstance(containers[0].get("image"), str):
        return str(containers[0]["image"])
    return None


def read_control_planes(
    api: ApiClient, problems: list[str], *, policy: RetryPolicy = DEFAULT_POLICY
) -> dict[str, ControlPlaneVersions]:
    """Per node, the versions of its control-plane mirror pods."""
    found: dict[str, dict[str, Any]] = {}
    pods = paged(
        CoreV1Api(api).list_namespaced_pod,
        KUBE_SYSTEM,
        what=f"LIST pods in {KUBE_SYSTEM}",
        policy=policy,
    )
    for pod in pods:
        meta = pod.get("metadata") or {}
        if MIRROR_ANNOTATION not in (meta.get("annotations") or {}):
            continue
        component = (meta.get("labels") or {}).get("component")
        node = (pod.get("spec") or {}).get("nodeName")
        if component not in COMPONENTS or not isinstance(node, str) or not node:
            continue
        image = _component_image(pod, component)
        tag = image_tag(image) if image else None
        where = f"pod {KUBE_SYSTEM}/{meta.get('name')} image {image!r}"
        versions = found.setdefault(node, {})
        if tag is None:
            problems.append(f"{where}: no tag")
        elif component == "etcd":
            versions["etcd"] = tag
        else:
            versions[component] = _version(tag, where, problems)
    return {
        node: ControlPlaneVersions(
            apiserver=v.get("kube-apiserver"),
            controller_manager=v.get("kube-controller-manager"),
            scheduler=v.get("kube-scheduler"),
            etcd=v.get("etcd"),
        )
        for node, v in found.items()
    }


def read_cluster(api: ApiClient, *, policy: RetryPolicy = DEFAULT_POLICY) -> ClusterRead:
    """Everything the gatherer needs from the API, in four reads (plus pagination).
    Raises :class:`~upgrader.kube.retry.ApiError` (a ``KubernetesError``) when a read
    fails for good."""
    problems: list[str] = []
    apiserver = read_apiserver_version(api, problems, policy=policy)
    kubeadm, image_repository = read_kubeadm_config(api, problems, policy=policy)
    nodes = read_nodes(api, problems, policy=policy)
    control_planes = read_control_planes(api, problems, policy=policy)
    etcd_external = read_kubeadm_etcd(api, problems, policy=policy) if kubeadm else None
    return ClusterRead(
        apiserver,
        kubeadm,
        nodes,
        control_planes,
        tuple(problems),
        etcd_external=etcd_external,
        image_repository=image_repository,
    )
