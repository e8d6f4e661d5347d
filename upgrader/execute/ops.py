"""The Kubernetes operations the engine needs, as a small protocol, and its implementation
on the real API.

Owns: :class:`KubeOps` (what a ``cordon``/``drain``/``uncordon``/``wait-ready``/
``wait-control-plane`` step does, and the node state the engine reads before and after a
run), :class:`DrainOptions`, :class:`DrainTimedOut`, and :class:`ApiKubeOps`, which
delegates every call to ``upgrader.kube.*`` (cordon, drain, readiness polls, retries on
transient API errors live there, not here).

Must not: print, touch the state file, or import ``kubernetes`` at module import time (the
engine and its unit tests import this module for the protocol only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from upgrader.errors import StepFailed


@dataclass(frozen=True)
class NodeState:
    """What the API says about one node right now."""

    name: str
    ready: bool
    unschedulable: bool
    kubelet_version: str | None


@dataclass(frozen=True)
class DrainOptions:
    """``kubectl drain``'s knobs, as the operator gave them to ``upgrader apply``."""

    timeout: float = 600.0
    grace_period: int | None = None
    delete_emptydir_data: bool = False
    force: bool = False
    disable_eviction: bool = False
    retry_interval: float = 5.0  # wait after a PodDisruptionBudget refused an eviction


class DrainTimedOut(StepFailed):
    """The drain did not finish in time; the message names the pods still there and what
    blocked each (the PodDisruptionBudget, by name)."""

    def __init__(
        self,
        message: str,
        node: str | None = None,
        remaining: Sequence[str] = (),
        blocked: Sequence[str] = (),
    ) -> None:
        super().__init__(message, node=node)
        self.remaining = tuple(remaining)
        self.blocked = tuple(blocked)


@runtime_checkable
class KubeOps(Protocol):
    """The engine's view of the Kubernetes API. Every method either does its job or raises:
    :class:`upgrader.errors.KubernetesError` for an API failure (worth another attempt),
    :class:`upgrader.errors.StepFailed` when the operation itself gave up for good (a wait
    that timed out, a drain refused or timed out: :class:`DrainTimedOut`)."""

    def node_state(self, node: str) -> NodeState: ...

    def cordon(self, node: str) -> bool:
        """Mark the node unschedulable; True when this call changed it."""
        ...

    def uncordon(self, node: str) -> bool:
        """Mark the node schedulable; True when this call changed it."""
        ...

    def drain(self, node: str, options: DrainOptions) -> str:
        """Evict the node's pods (the node is already cordoned); a one-line summary."""
        ...

    def wait_ready(self, node: str, kubelet_version: str, timeout: float, poll: float) -> None:
        """Wait until the node is Ready and reports that kubelet version."""
        ...

    def wait_control_plane(self, node: str, version: str, timeout: float, poll: float) -> None:
        """Wait until the node's control-plane mirror pods run ``version`` and are Ready."""
        ...


class ApiKubeOps:
    """:class:`KubeOps` on the real API (an ``kubernetes.client.ApiClient``)."""

    def __init__(self, api_client: Any) -> None:
        self._api = api_client

    def node_state(self, node: str) -> NodeState:
        from upgrader.kube import nodes

        return _to_node_state(node, nodes.get_node(self._api, node))

    def cordon(self, node: str) -> bool:
        from upgrader.kube import nodes

        return bool(nodes.cordon(self._api, node))

    def uncordon(self, node: str) -> bool:
        from upgrader.kube import nodes

        return bool(nodes.uncordon(self._api, node))

    def drain(self, node: str, options: DrainOptions) -> str:
        from upgrader.kube import drain as kdrain

        try:
            result = kdrain.drain(
                self._api,
                node,
                timeout=options.timeout,
                grace_period=options.grace_period,
                delete_emptydir_data=options.delete_emptydir_data,
                force=options.force,
                disable_eviction=options.disable_eviction,
                retry_delay=options.retry_interval,
            )
        except kdrain.DrainTimeout as e:
            raise DrainTimedOut(str(e), node=node, remaining=e.remaining, blocked=e.blocked) from e
        how = "evicted" if result.used_eviction else "deleted"
        text = f"{len(result.evicted)} pod(s) {how}, {len(result.skipped)} skipped"
        if result.warnings:
            text += "; " + "; ".join(result.warnings)
        return text

    def wait_ready(self, node: str, kubelet_version: str, timeout: float, poll: float) -> None:
        from upgrader.kube import nodes

        nodes.wait_node_ready(self._api, node, kubelet_version, timeout=timeout, poll=poll)

    def wait_control_plane(self, node: str, version: str, timeout: float, poll: float) -> None:
        from upgrader.kube import nodes

        nodes.wait_control_plane(self._api, node, version, timeout=timeout, poll=poll)


def _to_node_state(name: str, obj: Mapping[str, Any]) -> NodeState:
    """A Node object (JSON) -> NodeState."""
    from upgrader.kube import nodes

    return NodeState(
        name=name,
        ready=nodes.is_ready(obj),
        unschedulable=nodes.is_unschedulable(obj),
        kubelet_version=nodes.node_kubelet_version(obj),
    )
