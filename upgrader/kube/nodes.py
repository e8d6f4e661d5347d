"""Node operations through the API: read, cordon, uncordon, and the readiness gates.

Owns ``cordon``/``uncordon`` (a patch of ``spec.unschedulable`` guarded by the node's
``resourceVersion``; each says whether it changed anything, so the executor can record
provenance), ``wait_node_ready`` (until Ready=True at the expected kubelet version) and
``wait_control_plane`` (until the node's kube-apiserver, kube-controller-manager and
kube-scheduler mirror pods run the expected image tag and are Ready). Both re-read on every
change the watch of what they wait for reports (:mod:`upgrader.kube.watching`) and poll as
a fallback through :func:`~upgrader.core.waiting.poll_until` (soon at first, then backing
off to the caller's interval). Every function takes an ``ApiClient``
(``upgrader.kube.client`` builds it) and works on raw JSON dicts.

Must not: print, sleep a fixed time instead of polling a condition, or decide whether a
node should be cordoned (the executor does, remembering nodes that were cordoned before).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Generic, Required, TypedDict, TypeVar, Unpack

from kubernetes.client import ApiClient, CoreV1Api

from upgrader.core.versions import KubeVersion, VersionError
from upgrader.core.waiting import (
    FIRST_POLL,
    FIRST_SAY,
    Clock,
    Sleep,
    Wait,
    first_say,
    poll_until,
)
from upgrader.errors import ConfigError, StepFailed
from upgrader.kube.retry import DEFAULT_POLICY, ApiError, RetryPolicy, request_json
from upgrader.kube.watching import feed_sleep

log = logging.getLogger("upgrader.kube")
T = TypeVar("T")

CONTROL_PLANE_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
# Short retries inside a polling loop: the loop itself is the long retry.
POLL_POLICY = RetryPolicy(attempts=2, max_time=10.0, initial=0.2, max_delay=1.0, jitter=0.2)

_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)

# the wait's clock side lives in core.waiting; these names stay importable from here
__all__ = ["FIRST_POLL", "FIRST_SAY", "Clock", "Sleep", "first_say"]


def validate_node_name(node: str) -> str:
    """A Kubernetes node name (DNS-1123 subdomain), or :class:`ConfigError`. Node names go
    into URLs and field selectors, so they are checked before use."""
    if not isinstance(node, str) or len(node) > 253 or not _DNS1123_SUBDOMAIN.match(node):
        raise ConfigError(f"node name {node!r} is not a valid Kubernetes node name")
    return node


def as_version(v: KubeVersion | str, what: str) -> KubeVersion:
    if isinstance(v, KubeVersion):
        return v
    try:
        return KubeVersion.parse(v)
    except VersionError as e:
        raise ConfigError(f"{what}: {e}") from None


# --------------------------------------------------------------------------- pure readers


def is_unschedulable(node: Mapping[str, Any]) -> bool:
    return bool((node.get("spec") or {}).get("unschedulable"))


def condition(obj: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or ():
        if isinstance(c, Mapping) and c.get("type") == ctype:
            return c
    return None


def is_ready(obj: Mapping[str, Any]) -> bool:
    c = condition(obj, "Ready")
    return c is not None and c.get("status") == "True"


def node_kubelet_version(node: Mapping[str, Any]) -> str | None:
    v = ((node.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion")
    return str(v) if v else None


def _same_version(seen: str | None, want: KubeVersion) -> bool:
    if not seen:
        return False
    try:
        return KubeVersion.parse(seen) == want
    except VersionError:
        return False


def describe_ready(obj: Mapping[str, Any]) -> str:
    """``Ready=False (KubeletNotReady: container runtime is down)`` or ``no Ready condition``."""
    c = condition(obj, "Ready")
    if c is None:
        return "no Ready condition"
    extra = ": ".join(str(x) for x in (c.get("reason"), c.get("message")) if x)
    return f"Ready={c.get('status')}" + (f" ({extra})" if extra else "")


def image_tag(image: str) -> str | None:
    """``registry.k8s.io/kube-apiserver:v1.28.4@sha256:..`` -> ``v1.28.4``."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else None


# --------------------------------------------------------------------------- API calls


def get_node(api: ApiClient, node: str, *, policy: RetryPolicy = DEFAULT_POLICY) -> dict[str, Any]:
    """The node object (JSON). A missing node is an :class:`ApiError` with status 404."""
    validate_node_name(node)
    obj = request_json(CoreV1Api(api).read_node, node, what=f"GET node {node}", policy=policy)
    if not isinstance(obj, dict):
        raise ApiError(f"GET node {node}: unexpected response")
    return obj


def _set_unschedulable(api: ApiClient, node: str, value: bool) -> bool:
    verb = "cordon" if value else "uncordon"
    last: ApiError | None = None
    for _ in range(8):
        obj = get_node(api, node)
        if is_unschedulable(obj) == value:
            log.info("%s %s: already %s", verb, node, "cordoned" if value else "schedulable")
            return False
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        body: dict[str, Any] = {"spec": {"unschedulable": True if value else None}}
        if rv:
            body["metadata"] = {"resourceVersion": rv}  # fail (409) if it changed meanwhile
        try:
            request_json(
                CoreV1Api(api).patch_node,
                node,
                body,
                what=f"PATCH node {node} ({verb})",
                _content_type="application/strategic-merge-patch+json",
            )
        except ApiError as e:
            if e.conflict:
                last = e
                log.info("%s %s: node changed meanwhile, re-reading", verb, node)
                continue
            raise
        log.info("%s %s: done", verb, node)
        return True
    raise ApiError(f"{verb} {node}: the node kept changing under us ({last})", 409)


def cordon(api: ApiClient, node: str) -> bool:
    """Mark ``node`` unschedulable. True if we changed it, False if it already was."""
    return _set_unschedulable(api, node, True)


def uncordon(api: ApiClient, node: str) -> bool:
    """Mark ``node`` schedulable. True if we changed it, False if it already was."""
    return _set_unschedulable(api, node, False)


def _fatal(e: ApiError) -> bool:
    return e.status in (401, 403)


@dataclass
class _Seen(Generic[T]):
    """What a readiness gate last read (kept across API errors) and its last API error."""

    value: T | None = None
    error: str | None = None
    ok: bool = False


class GatePace(TypedDict, total=False):
    """How a readiness gate (:func:`wait_node_ready`, :func:`wait_control_plane`) waits:
    ``timeout`` seconds (required), polling every ``poll`` seconds (2) as a fallback to
    the watch, on ``clock`` (``time.monotonic``) and ``sleep`` (None: the real one, woken
    by the watch); ``on_progress`` hears what it still waits for, after :func:`first_say`
    seconds and then every ``progress_every`` seconds (30)."""

    timeout: Required[float]
    poll: float
    clock: Clock
    sleep: Sleep | None
    on_progress: Callable[[str], None] | None
    progress_every: float


def _gate(
    read: Callable[[], T],
    ok: Callable[[T], bool],
    progress: Callable[[_Seen[T]], str],
    *,
    what: str,
    feed: Callable[[Sleep | None], AbstractContextManager[Sleep]],
    pace: GatePace,
) -> _Seen[T]:
    """Re-``read`` until ``ok``, tolerating API errors other than 401/403 until the
    timeout (:func:`~upgrader.core.waiting.poll_until`: re-checks soon, then every
    ``poll``), napping on ``feed``'s sleep, so a watched change re-reads at once."""
    seen: _Seen[T] = _Seen()

    def attempt() -> _Seen[T]:
        try:
            seen.value, seen.error = read(), None
            seen.ok = ok(seen.value)
        except ApiError as e:
            if _fatal(e):
                raise
            seen.error = str(e)
            log.info("%s, API error: %s", what, e)
        return seen

    poll = pace.get("poll", 2.0)
    with feed(pace.get("sleep")) as nap:
        wait = Wait(
            pace["timeout"],
            clock=pace.get("clock", time.monotonic),
            sleep=nap,
            on_progress=pace.get("on_progress"),
            progress_every=pace.get("progress_every", 30.0),
        )
        poll_until(
            attempt,
            lambda s: s.ok,
            wait=wait,
            first=min(FIRST_POLL, poll),
            cap=poll,
            progress=progress,
        )
    return seen


def wait_node_ready(
    api: ApiClient,
    node: str,
    kubelet_version: KubeVersion | str,
    **pace: Unpack[GatePace],
) -> dict[str, Any]:
    """Wait until ``node`` is Ready=True and reports ``kubelet_version``; return the node.
    The node is re-read on every change its watch reports (``sleep`` None: the real
    clock), and polled as a fallback (``pace``: see :class:`GatePace`). API errors while
    the node (or the API server) restarts are tolerated until the timeout. Timeout ->
    :class:`StepFailed` naming the node, the expected version and the last version and
    Ready condition seen. After :func:`first_say` seconds of waiting, then every
    ``progress_every`` seconds, ``on_progress`` hears what was last seen and the time
    left."""
    want = as_version(kubelet_version, f"node {node}: expected kubelet version")

    def ok(obj: dict[str, Any]) -> bool:
        seen = node_kubelet_version(obj)
        if is_ready(obj) and _same_version(seen, want):
            log.info("node %s: Ready at kubelet %s", node, seen)
            return True
        log.debug("node %s: kubelet %s, %s", node, seen, describe_ready(obj))
        return False

    def last_seen(s: _Seen[dict[str, Any]]) -> str:
        obj = s.value
        return f"last seen kubelet {kubelet_version_or(obj)}, {describe_ready(obj)}" if obj else ""

    def progress(s: _Seen[dict[str, Any]]) -> str:
        seen_now = last_seen(s) if s.value is not None else f"not read yet ({s.error})"
        return f"waiting for {node} to be Ready at kubelet {want}: {seen_now}"

    got = _gate(
        lambda: get_node(api, node, policy=POLL_POLICY),
        ok,
        progress,
        what=f"node {node}: waiting for Ready",
        feed=lambda nap: feed_sleep(
            nap,
            CoreV1Api(api).list_node,
            what=f"node {node}",
            field_selector=f"metadata.name={node}",
        ),
        pace=pace,
    )
    if got.ok and got.value is not None:
        return got.value
    seen_text = last_seen(got) if got.value is not None else "the node was never read"
    if got.error:
        seen_text += f"; last API error: {got.error}"
    raise StepFailed(
        f"node {node} did not become Ready at kubelet {want} "
        f"within {pace['timeout']:g}s: {seen_text}",
        node=node,
    )


def kubelet_version_or(obj: Mapping[str, Any], default: str = "unknown") -> str:
    return node_kubelet_version(obj) or default


def _component_pod(
    pods: list[Mapping[str, Any]], component: str, node: str
) -> Mapping[str, Any] | None:
    for p in pods:
        md = p.get("metadata") or {}
        if (md.get("labels") or {}).get("component") == component or md.get(
            "name"
        ) == f"{component}-{node}":
            return p
    return None


def _component_state(
    pod: Mapping[str, Any] | None, component: str, want: KubeVersion
) -> tuple[bool, str]:
    if pod is None:
        return False, f"{component}: no mirror pod on the node"
    containers = (pod.get("spec") or {}).get("containers") or []
    c = next((x for x in containers if x.get("name") == component), None)
    if c is None and containers:
        c = containers[0]
    tag = image_tag(str((c or {}).get("image") or ""))
    ready = is_ready(pod)
    ok = ready and _same_version(tag, want)
    mirror = (
        ""
        if MIRROR_ANNOTATION in ((pod.get("metadata") or {}).get("annotations") or {})
        else (", not a mirror pod")
    )
    return ok, f"{component}: image tag {tag or 'unknown'}, {describe_ready(pod)}{mirror}"


def control_plane_status(
    api: ApiClient, node: str, version: KubeVersion | str, *, policy: RetryPolicy = DEFAULT_POLICY
) -> tuple[bool, list[str]]:
    """(all components at ``version`` and Ready, one line per component)."""
    validate_node_name(node)
    want = as_version(version, f"node {node}: expected control-plane version")
    doc = request_json(
        CoreV1Api(api).list_namespaced_pod,
        "kube-system",
        field_selector=f"spec.nodeName={node}",
        what=f"LIST kube-system pods on {node}",
        policy=policy,
    )
    pods = list((doc or {}).get("items") or [])
    states = [
        _component_state(_component_pod(pods, c, node), c, want) for c in CONTROL_PLANE_COMPONENTS
    ]
    return all(ok for ok, _ in states), [line for _, line in states]


def wait_control_plane(
    api: ApiClient,
    node: str,
    version: KubeVersion | str,
    **pace: Unpack[GatePace],
) -> list[str]:
    """Wait until the node's kube-apiserver, kube-controller-manager and kube-scheduler
    mirror pods show ``version`` as their image tag and are Ready; return their status
    lines. The node's kube-system pods are re-read on every change their watch reports
    (``sleep`` None: the real clock), and polled as a fallback (``pace``: see
    :class:`GatePace`). API errors (the API server restarting) are tolerated until the
    timeout, which raises :class:`StepFailed` naming each component's last state. After
    :func:`first_say` seconds of waiting, then every ``progress_every`` seconds,
    ``on_progress`` hears each component's last state (image tag, Ready or not) and the
    time left."""
    want = as_version(version, f"node {node}: expected control-plane version")

    def ok(state: tuple[bool, list[str]]) -> bool:
        if state[0]:
            log.info("node %s: control plane at %s and Ready", node, want)
        else:
            log.debug("node %s: control plane not there yet: %s", node, "; ".join(state[1]))
        return state[0]

    def progress(s: _Seen[tuple[bool, list[str]]]) -> str:
        lines = s.value[1] if s.value else []
        seen_now = "; ".join(lines) if lines else "no pod list read yet"
        if s.error:
            seen_now += f" (last API error: {s.error})"
        return f"waiting for the control plane of {node} to run {want} and be Ready: {seen_now}"

    got = _gate(
        lambda: control_plane_status(api, node, want, policy=POLL_POLICY),
        ok,
        progress,
        what=f"node {node}: waiting for the control plane",
        feed=lambda nap: feed_sleep(
            nap,
            CoreV1Api(api).list_namespaced_pod,
            "kube-system",
            what=f"kube-system pods on {node}",
            field_selector=f"spec.nodeName={node}",
        ),
        pace=pace,
    )
    lines = got.value[1] if got.value else []
    if got.ok:
        return lines
    detail = "; ".join(lines) if lines else "no pod list was read"
    if got.error:
        detail += f"; last API error: {got.error}"
    raise StepFailed(
        f"node {node}: control plane not at {want} and Ready within {pace['timeout']:g}s: {detail}",
        node=node,
    )
