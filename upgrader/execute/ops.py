"""The Kubernetes operations the engine needs, as a small protocol, and its implementation
on the real API.

Owns: :class:`KubeOps` (what a ``cordon``/``drain``/``uncordon``/``wait-ready``/
``wait-control-plane`` step does, and the node state the engine reads before and after a
run), :class:`DrainOptions` and :class:`ApiKubeOps`, which delegates every call to
``upgrader.kube.*`` (cordon, drain, readiness polls, retries on transient API errors live
there, not here). A drain that runs out of time raises :class:`upgrader.errors.DrainTimeout`
as ``upgrader.kube.drain`` raised it.

Must not: print, touch the state file, or import ``kubernetes`` at module import time (the
engine and its unit tests import this module for the protocol only).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from upgrader.kube.nodes import GatePace


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
    # --pod-selector: only the pods it matches are drained (None: all of them)
    pod_selector: str | None = None
    # --drain-fallback: "delete" deletes the pods a budget still refuses after the timeout
    fallback: str = "none"
    # told, before they are deleted, which pods the fallback deletes and which budgets
    # it overrides (``ns/name`` each)
    on_fallback: Callable[[tuple[str, ...], tuple[str, ...]], None] | None = None
    retry_interval: float = 5.0  # wait after a PodDisruptionBudget refused an eviction
    # told what a blocked drain waits for (pods, the budget's answer, time left): at once,
    # then at most every ``progress_every`` seconds
    on_progress: Callable[[str], None] | None = None
    progress_every: float = 30.0


@runtime_checkable
class KubeOps(Protocol):
    """The engine's view of the Kubernetes API. Every method either does its job or raises:
    :class:`upgrader.errors.KubernetesError` for an API failure (worth another attempt),
    :class:`upgrader.errors.StepFailed` when the operation itself gave up for good (a wait
    that timed out, a drain refused or timed out: :class:`upgrader.errors.DrainTimeout`)."""

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

    def wait_ready(
        self,
        node: str,
        kubelet_version: str,
        timeout: float,
        poll: float,
        on_progress: Callable[[str], None] | None = None,
        progress_every: float = 30.0,
    ) -> None:
        """Wait until the node is Ready and reports that kubelet version; ``on_progress``
        hears what it still waits for, every ``progress_every`` seconds."""
        ...

    def wait_control_plane(
        self,
        node: str,
        version: str,
        timeout: float,
        poll: float,
        on_progress: Callable[[str], None] | None = None,
        progress_every: float = 30.0,
    ) -> None:
        """Wait until the node's control-plane mirror pods run ``version`` and are Ready;
        ``on_progress`` hears each component's state, every ``progress_every`` seconds."""
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

        result = kdrain.drain(
            self._api,
            node,
            timeout=options.timeout,
            grace_period=options.grace_period,
            delete_emptydir_data=options.delete_emptydir_data,
            force=options.force,
            disable_eviction=options.disable_eviction,
            retry_delay=options.retry_interval,
            on_event=_blocked_reporter(options),
            pod_selector=options.pod_selector,
            fallback=options.fallback,
            on_fallback=options.on_fallback,
        )
        how = "evicted" if result.used_eviction else "deleted"
        text = f"{len(result.evicted)} pod(s) {how}, {len(result.skipped)} skipped"
        if result.fallback_deleted:
            text += f" ({len(result.fallback_deleted)} of them deleted by the drain fallback)"
        if options.pod_selector:
            text += f", {result.left} left on the node (--pod-selector {options.pod_selector})"
        if result.warnings:
            text += "; " + "; ".join(result.warnings)
        return text

    def wait_ready(
        self,
        node: str,
        kubelet_version: str,
        timeout: float,
        poll: float,
        on_progress: Callable[[str], None] | None = None,
        progress_every: float = 30.0,
    ) -> None:
        from upgrader.kube import nodes

        pace = _pace(timeout, poll, on_progress, progress_every)
        nodes.wait_node_ready(self._api, node, kubelet_version, **pace)

    def wait_control_plane(
        self,
        node: str,
        version: str,
        timeout: float,
        poll: float,
        on_progress: Callable[[str], None] | None = None,
        progress_every: float = 30.0,
    ) -> None:
        from upgrader.kube import nodes

        pace = _pace(timeout, poll, on_progress, progress_every)
        nodes.wait_control_plane(self._api, node, version, **pace)


def _pace(
    timeout: float, poll: float, on_progress: Callable[[str], None] | None, progress_every: float
) -> GatePace:
    """How a wait in ``upgrader.kube.nodes`` waits."""
    return {
        "timeout": timeout,
        "poll": poll,
        "on_progress": on_progress,
        "progress_every": progress_every,
    }


def _to_node_state(name: str, obj: Mapping[str, Any]) -> NodeState:
    """A Node object (JSON) -> NodeState."""
    from upgrader.kube import nodes

    return NodeState(
        name=name,
        ready=nodes.is_ready(obj),
        unschedulable=nodes.is_unschedulable(obj),
        kubelet_version=nodes.node_kubelet_version(obj),
    )


def _blocked_reporter(options: DrainOptions) -> Callable[[str], None] | None:
    """The drain's event callback that turns "cannot evict pod X yet" (a budget's 429) into
    a progress line: the first at once, then at most every ``progress_every`` seconds,
    naming the pods still refused, the budget's answer and the time left."""
    say = options.on_progress
    if say is None:
        return None
    started = time.monotonic()
    last = [float("-inf")]
    blocked: dict[str, str] = {}
    lock = threading.Lock()

    def on_event(message: str) -> None:
        prefix = "cannot evict pod "
        if not message.startswith(prefix):
            if message.startswith("pod "):  # "pod NS/NAME evicted", "... is already gone"
                with lock:
                    blocked.pop(message.split()[1], None)
            return
        pod = message[len(prefix) :].split(" ", 1)[0]
        reason = message.split("): ", 1)[-1]
        now = time.monotonic()
        with lock:
            blocked[pod] = reason
            if now - last[0] < options.progress_every:
                return
            last[0] = now
            pods = ", ".join(sorted(blocked))
        left = (
            f"{max(0.0, options.timeout - (now - started)):.0f}s of {options.timeout:g}s left"
            if options.timeout > 0
            else "no timeout"
        )
        say(f"drain held by a PodDisruptionBudget: {pods} not evicted yet: {reason}; {left}")

    return on_event
