"""Read-only views of one node for the operator: its pods and its recent events.

Owns the two LIST calls ``--hold-uncordon`` shows before a node is uncordoned. Returns plain
tuples for :mod:`upgrader.execute.pauses` to render; must not change anything in the cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes.client import ApiClient, CoreV1Api

from upgrader.kube.nodes import is_ready, validate_node_name
from upgrader.kube.retry import request_json

PodLine = tuple[str, str, str]  # namespace/name, phase, "ready"/"not ready"
EventLine = tuple[str, str, str, str]  # time, type, reason, message


def _items(node: str, call: Callable[..., Any], field_selector: str, what: str) -> list[Any]:
    """The ``items`` of one LIST call about ``node`` (checked first; ``what`` names the call
    in an error), none when empty."""
    validate_node_name(node)
    doc = request_json(call, field_selector=field_selector, what=what)
    return list((doc or {}).get("items") or [])


def node_pods(api: ApiClient, node: str) -> list[PodLine]:
    """The pods bound to ``node``: (namespace/name, phase, ready or not)."""
    pods = _items(
        node,
        CoreV1Api(api).list_pod_for_all_namespaces,
        f"spec.nodeName={node}",
        f"LIST pods on {node}",
    )
    return sorted(_pod_line(p) for p in pods)


def _pod_line(pod: dict[str, Any]) -> PodLine:
    md: dict[str, Any] = pod.get("metadata") or {}
    phase = str((pod.get("status") or {}).get("phase") or "Unknown")
    ready = "ready" if is_ready(pod) else "not ready"
    return f"{md.get('namespace', '')}/{md.get('name', '')}", phase, ready


def node_events(api: ApiClient, node: str, limit: int = 10) -> list[EventLine]:
    """The latest ``limit`` events about the Node object ``node``, oldest first."""
    events = _items(
        node,
        CoreV1Api(api).list_event_for_all_namespaces,
        f"involvedObject.kind=Node,involvedObject.name={node}",
        f"LIST events of node {node}",
    )
    return sorted((_event_line(e) for e in events), key=lambda x: x[0])[-limit:]


def _event_line(e: dict[str, Any]) -> EventLine:
    when = str(e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp") or "")
    return when, str(e.get("type") or ""), str(e.get("reason") or ""), str(e.get("message") or "")
