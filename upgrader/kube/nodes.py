"""Node operations through the API: read, cordon, uncordon, and the readiness gates.

Owns ``cordon``/``uncordon`` (a patch of ``spec.unschedulable`` guarded by the node's
``resourceVersion``; each says whether it changed anything, so the executor can record
provenance), ``wait_node_ready`` (poll until Ready=True at the expected kubelet version)
and ``wait_control_plane`` (poll until the node's kube-apiserver, kube-controller-manager
and kube-scheduler mirror pods run the expected image tag and are Ready); both re-check
soon at first, then back off to the caller's interval (:func:`poll_intervals`). Every function
takes an ``ApiClient`` (``upgrader.kube.client`` builds it) and works on raw JSON dicts.

Must not: print, sleep a fixed time instead of polling a condition, or decide whether a
node should be cordoned (the executor does, remembering nodes that were cordoned before).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes.client import ApiClient, CoreV1Api

from upgrader.core.versions import KubeVersion, VersionError
from upgrader.core.waiting import (
    FIRST_POLL,
    FIRST_SAY,
    Clock,
    Sleep,
    Wait,
    first_say,
    poll_intervals,
)
from upgrader.errors import ConfigError, StepFailed
from upgrader.kube.retry import DEFAULT_POLICY, ApiError, RetryPolicy, request_json

log = logging.getLogger("upgrader.kube")

CONTROL_PLANE_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
# Short retries inside a polling loop: the loop itself is the long retry.
POLL_POLICY = RetryPolicy(attempts=2, max_time=10.0, initial=0.2, max_delay=1.0, jitter=0.2)

_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)

# the wait's clock side lives in core.waiting; these names stay importable from here
__all__ = ["FIRST_POLL", "FIRST_SAY", "Clock", "Sleep", "first_say", "poll_intervals"]


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


def wait_node_ready(
    api: ApiClient,
    node: str,
    kubelet_version: KubeVersion | str,
    timeout: float,
    poll: float = 2.0,
    *,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
    on_progress: Callable[[str], None] | None = None,
    progress_every: float = 30.0,
) -> dict[str, Any]:
    """Poll until ``node`` is Ready=True and reports ``kubelet_version``; return the node.
    API errors while the node (or the API server) restarts are tolerated until the
    timeout. Timeout -> :class:`StepFailed` naming the node, the expected version and
    the last version and Ready condition seen. After :func:`first_say` seconds of waiting,
    then every ``progress_every`` seconds, ``on_progress`` hears what was last seen and the
    time left."""
    want = as_version(kubelet_version, f"node {node}: expected kubelet version")
    wait = Wait(
        timeout, clock=clock, sleep=sleep, on_progress=on_progress, progress_every=progress_every
    )
    gaps = poll_intervals(poll)
    last_obj: dict[str, Any] | None = None
    last_err: str | None = None
    while True:
        try:
            obj = get_node(api, node, policy=POLL_POLICY)
            last_obj, last_err = obj, None
            seen = node_kubelet_version(obj)
            if is_ready(obj) and _same_version(seen, want):
                log.info("node %s: Ready at kubelet %s", node, seen)
                return obj
            log.debug("node %s: kubelet %s, %s", node, seen, describe_ready(obj))
        except ApiError as e:
            if _fatal(e):
                raise
            last_err = str(e)
            log.info("node %s: waiting for Ready, API error: %s", node, e)
        now = wait.now()
        if now >= wait.deadline:
            break
        if wait.due(now):
            seen_now = (
                f"last seen kubelet {kubelet_version_or(last_obj)}, {describe_ready(last_obj)}"
                if last_obj is not None
                else f"not read yet ({last_err})"
            )
            wait.say(f"waiting for {node} to be Ready at kubelet {want}: {seen_now}", now)
        wait.nap(next(gaps), now)
    if last_obj is not None:
        seen_text = f"last seen kubelet {kubelet_version_or(last_obj)}, {describe_ready(last_obj)}"
    else:
        seen_text = "the node was never read"
    if last_err:
        seen_text += f"; last API error: {last_err}"
    raise StepFailed(
        f"node {node} did not become Ready at kubelet {want} within {timeout:g}s: {seen_text}",
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
    timeout: float,
    poll: float = 2.0,
    *,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
    on_progress: Callable[[str], None] | None = None,
    progress_every: float = 30.0,
) -> list[str]:
    """Poll until the node's kube-apiserver, kube-controller-manager and kube-scheduler
    mirror pods show ``version`` as their image tag and are Ready; return their status
    lines. API errors (the API server restarting) are tolerated until the timeout, which
    raises :class:`StepFailed` naming each component's last state. After
    :func:`first_say` seconds of waiting, then every ``progress_every`` seconds,
    ``on_progress`` hears each component's last state (image tag, Ready or not) and the
    time left."""
    want = as_version(version, f"node {node}: expected control-plane version")
    wait = Wait(
        timeout, clock=clock, sleep=sleep, on_progress=on_progress, progress_every=progress_every
    )
    gaps = poll_intervals(poll)
    lines: list[str] = []
    last_err: str | None = None
    while True:
        try:
            ok, lines = control_plane_status(api, node, want, policy=POLL_POLICY)
            last_err = None
            if ok:
                log.info("node %s: control plane at %s and Ready", node, want)
                return lines
            log.debug("node %s: control plane not there yet: %s", node, "; ".join(lines))
        except ApiError as e:
            if _fatal(e):
                raise
            last_err = str(e)
            log.info("node %s: waiting for the control plane, API error: %s", node, e)
        now = wait.now()
        if now >= wait.deadline:
            break
        if wait.due(now):
            seen_now = "; ".join(lines) if lines else "no pod list read yet"
            if last_err:
                seen_now += f" (last API error: {last_err})"
            wait.say(
                f"waiting for the control plane of {node} to run {want} and be Ready: {seen_now}",
                now,
            )
        wait.nap(next(gaps), now)
    detail = "; ".join(lines) if lines else "no pod list was read"
    if last_err:
        detail += f"; last API error: {last_err}"
    raise StepFailed(
        f"node {node}: control plane not at {want} and Ready within {timeout:g}s: {detail}",
        node=node,
    )
