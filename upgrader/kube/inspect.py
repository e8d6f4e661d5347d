"""Read-only views of one node for the operator: its pods and its recent events.

Owns the two LIST calls ``--hold-uncordon`` shows before a node is uncordoned. Returns plain
tuples for :mod:`upgrader.execute.pauses` to render; must not change anything in the cluster.
"""

from __future__ import annotations

from typing import Any

from kubernetes.client import ApiClient, CoreV1Api

from upgrader.kube.nodes import is_ready, validate_node_name
from upgrader.kube.retry import request_json

PodLine = tuple[str, str, str]  # namespace/name, phase, "ready"/"not ready"
EventLine = tuple[str, str, str, str]  # time, type, reason, message


def node_pods(api: ApiClient, node: str) -> list[PodLine]:
    """The pods bound to ``node``: (namespace/name, phase, ready or not)."""
    validate_node_name(node)
    doc = request_json(
        CoreV1Api(api).list_pod_for_all_namespaces,
        field_selector=f"spec.nodeName={node}",
        what=f"LIST pods on {node}",
    )
    out: list[PodLine] = []
    for p in (doc or {}).get("items") or []:
        md: dict[str, Any] = p.get("metadata") or {}
        phase = str((p.get("status") or {}).get("phase") or "Unknown")
        ready = "ready" if is_ready(p) else "not ready"
        out.append((f"{md.get('namespace', '')}/{md.get('name', '')}", phase, ready))
    return sorted(out)


def node_events(api: ApiClient, node: str, limit: int = 10) -> list[EventLine]:
    """The latest ``limit`` events about the Node object ``node``, oldest first."""
    validate_node_name(node)
    doc = request_json(
        CoreV1Api(api).list_event_for_all_namespaces,
        field_selector=f"involvedObject.kind=Node,involvedObject.name={node}",
        what=f"LIST events of node {node}",
    )
    out: list[EventLine] = []
    for e in (doc or {}).get("items") or []:
        when = str(e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp") or "")
        out.append(
            (
                when,
                str(e.get("type") or ""),
                str(e.get("reason") or ""),
                str(e.get("message") or ""),
            )
        )
    out.sort(key=lambda x: x[0])
    return out[-limit:]
