"""The I/O side of the preflight checks: read what they need, from the API and over SSH.

Owns :func:`collect` (-> :class:`~upgrader.core.checks.inputs.PreflightInputs`, which the
pure checks in :mod:`upgrader.core.checks` judge inside :func:`upgrader.planning.make_plan`):

* a SelfSubjectAccessReview (authorization.k8s.io/v1) for every access the run makes
  (:func:`upgrader.core.checks.access.required_access`);
* every Node, pod and PodDisruptionBudget (paginated), and the DaemonSets pods name as
  their controller (to find orphans a drain refuses);
* ``GET /metrics`` for ``apiserver_requested_deprecated_apis``, and the objects of every
  kind whose API version a hop removes (served version found through discovery) for their
  ``kubectl.kubernetes.io/last-applied-configuration`` annotation;
* the ``kube-system/upgrader-lock`` Lease and the ``kube-system/kubelet-config`` ConfigMap;
* ``etcdctl endpoint health`` on each control-plane node (sudo, over the SSH pool).

Also :func:`health_gate` (nodes Ready, control-plane mirror pods Ready, etcd healthy: one
evaluation, findings out) and :func:`wait_until_healthy` (``--validate-count N``: the gate
must pass N times in a row, ``interval`` apart; a failed evaluation is retried sooner, with
a capped backoff), which the engine can call between nodes; :func:`for_apply`
(what ``apply`` plans with) and :func:`wait_pdbs_recovered` (post-flight: every budget that
allowed a disruption before the run allows one again; woken by the budgets' watch). Both
waits poll through :func:`upgrader.core.waiting.poll_until` and say what they wait for and
the time left through an ``on_progress`` callback, at least every 30 s.

A read that fails is recorded (``problems``, or the check's own "unchecked" note), never
raised: the plan shows what could not be checked. A 403 is left to the permission check,
which names the missing verb. Must not: print, change anything in the cluster or on a node
(the only writes are the access reviews, which store nothing), or judge what it reads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from kubernetes.client import (
    ApiClient,
    ApisApi,
    AppsV1Api,
    AuthorizationV1Api,
    CoreV1Api,
    CustomObjectsApi,
    PolicyV1Api,
)
from kubernetes.client.exceptions import ApiException

from upgrader.core.checks import access as acc
from upgrader.core.checks import health
from upgrader.core.checks import removed_apis as ra
from upgrader.core.checks.health import CommandOutcome
from upgrader.core.checks.inputs import PreflightInputs
from upgrader.core.drain import MIRROR_ANNOTATION
from upgrader.core.model import Facts, Finding
from upgrader.core.versions import KubeVersion
from upgrader.core.waiting import Wait, poll_until
from upgrader.errors import StepFailed, TransportError
from upgrader.kube.drain import missing_daemonsets
from upgrader.kube.readers import paged
from upgrader.kube.retry import (
    DEFAULT_POLICY,
    DEFAULT_REQUEST_TIMEOUT,
    ApiError,
    RetryPolicy,
    call_with_retry,
    request_json,
    to_api_error,
)
from upgrader.kube.watching import feed_sleep
from upgrader.transport.base import Transport

if TYPE_CHECKING:  # typing only: preflight is imported by planning and by apply
    from upgrader.execute.engine import EngineOptions
    from upgrader.inventory.model import Inventory
    from upgrader.planning import PlanRequest

log = logging.getLogger("upgrader.preflight")

ETCD_TIMEOUT = 30.0
GATE_RETRY_START = 0.5  # seconds before re-asking a failed health gate (then doubling)
TransportFor = Callable[[str], Transport]
Json = dict[str, Any]


@dataclass(frozen=True)
class PreflightRequest:
    """What to read for an upgrade ``current`` -> ``target``."""

    current: KubeVersion
    target: KubeVersion
    disable_eviction: bool = False
    etcd_nodes: tuple[str, ...] = ()  # control-plane nodes to run etcdctl on
    etcd_timeout: float = ETCD_TIMEOUT
    removed_table: tuple[ra.RemovedApi, ...] | None = None  # None: the packaged table


# --------------------------------------------------------------------------- API reads


def _list(
    fn: Callable[..., Any],
    *args: Any,
    what: str,
    policy: RetryPolicy,
    problems: list[str],
) -> tuple[Json, ...] | None:
    try:
        return tuple(paged(fn, *args, what=what, policy=policy))
    except ApiError as e:
        if e.status != 403:  # the permission check names what is missing
            problems.append(str(e))
        return None


def review_access(
    api: ApiClient, accesses: Sequence[acc.Access], *, policy: RetryPolicy = DEFAULT_POLICY
) -> tuple[acc.AccessResult, ...]:
    """One SelfSubjectAccessReview per access (what ``kubectl auth can-i`` sends)."""
    out: list[acc.AccessResult] = []
    authz = AuthorizationV1Api(api)
    for a in accesses:
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": a.review_spec(),
        }
        try:
            doc = request_json(
                authz.create_self_subject_access_review,
                body,
                what=f"SelfSubjectAccessReview ({a.describe()})",
                policy=policy,
            )
        except ApiError as e:
            out.append(acc.AccessResult(a, None, str(e)))
            if e.status is None:  # no answer at all: do not wait out every other review
                out.extend(acc.AccessResult(b, None, str(e)) for b in accesses[len(out) :])
                break
            continue
        status = (doc or {}).get("status") or {}
        allowed = status.get("allowed") is True and status.get("denied") is not True
        detail = status.get("evaluationError") or (None if allowed else status.get("reason"))
        out.append(acc.AccessResult(a, allowed, str(detail) if detail else None))
    return tuple(out)


def _get_text(api: ApiClient, path: str, *, what: str, policy: RetryPolicy) -> str:
    """GET a non-resource path (``/metrics``) as text, with the client's credentials."""

    def once() -> str:
        req = api.param_serialize(
            method="GET",
            resource_path=path,
            header_params={"Accept": "text/plain"},
            auth_settings=["BearerToken"],
        )
        resp = api.call_api(*req, _request_timeout=DEFAULT_REQUEST_TIMEOUT)
        data = resp.read()  # type: ignore[no-untyped-call]
        if not 200 <= resp.status <= 299:
            raise ApiException(status=resp.status, reason=resp.reason, http_resp=resp.response)
        return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data or "")

    try:
        return call_with_retry(once, what=what, policy=policy)
    except ApiError:
        raise
    except Exception as e:
        raise to_api_error(e, what) from e


def read_deprecated_requests(
    api: ApiClient, *, policy: RetryPolicy = DEFAULT_POLICY
) -> tuple[tuple[ra.DeprecatedRequest, ...] | None, str | None]:
    """The ``apiserver_requested_deprecated_apis`` samples, or why they could not be read."""
    try:
        text = _get_text(api, acc.METRICS_PATH, what="GET /metrics", policy=policy)
    except ApiError as e:
        return None, f"the API server's {ra.METRIC} metric ({e})"
    return tuple(ra.parse_deprecated_api_metric(text)), None


def _served_versions(api: ApiClient, policy: RetryPolicy) -> dict[str, list[str]]:
    """group -> served versions, preferred first (``GET /apis``)."""
    doc = request_json(ApisApi(api).get_api_versions, what="GET /apis", policy=policy)
    out: dict[str, list[str]] = {}
    for g in (doc or {}).get("groups") or ():
        name = g.get("name")
        if not isinstance(name, str):
            continue
        pref = (g.get("preferredVersion") or {}).get("version")
        versions = [v.get("version") for v in g.get("versions") or () if v.get("version")]
        ordered = ([pref] if pref in versions else []) + [v for v in versions if v != pref]
        out[name] = [str(v) for v in ordered]
    return out


def scan_applied_objects(
    api: ApiClient, pairs: Sequence[tuple[str, str]], *, policy: RetryPolicy = DEFAULT_POLICY
) -> tuple[tuple[ra.AppliedObject, ...] | None, tuple[str, ...]]:
    """Objects of each (group, resource), listed in a served version, with their
    last-applied annotation; and what could not be listed."""
    if not pairs:
        return (), ()
    unchecked: list[str] = []
    try:
        served = _served_versions(api, policy)
    except ApiError as e:
        return None, (f"API discovery ({e})",)
    custom = CustomObjectsApi(api)
    objects: list[ra.AppliedObject] = []
    for group, resource in pairs:
        kind: str | None = None
        version: str | None = None
        for v in served.get(group, ()):
            try:
                doc = request_json(
                    custom.get_api_resources, group, v, what=f"GET /apis/{group}/{v}", policy=policy
                )
            except ApiError as e:
                unchecked.append(f"discovery of {group}/{v} ({e})")
                continue
            for r in (doc or {}).get("resources") or ():
                if r.get("name") == resource:
                    kind, version = str(r.get("kind") or resource), v
                    break
            if version is not None:
                break
        if version is None:
            continue  # not served at all: no object of that kind can exist
        what = f"LIST {resource}.{group}/{version}"
        try:
            listing = paged(
                custom.list_cluster_custom_object,
                group,
                version,
                resource,
                what=what,
                policy=policy,
            )
            for item in listing:
                md = item.get("metadata") or {}
                objects.append(
                    ra.AppliedObject(
                        kind=str(kind),
                        namespace=str(md.get("namespace") or ""),
                        name=str(md.get("name") or "?"),
                        last_applied=(md.get("annotations") or {}).get(ra.LAST_APPLIED),
                    )
                )
        except ApiError as e:
            unchecked.append(f"the last-applied annotations of {resource}.{group} ({e})")
    return tuple(objects), tuple(unchecked)


def _kubelet_configmap(api: ApiClient, policy: RetryPolicy, problems: list[str]) -> str | None:
    what = f"GET configmap {acc.KUBE_SYSTEM}/{acc.KUBELET_CONFIG}"
    try:
        cm = request_json(
            CoreV1Api(api).read_namespaced_config_map,
            acc.KUBELET_CONFIG,
            acc.KUBE_SYSTEM,
            what=what,
            policy=policy,
        )
    except ApiError as e:
        if not e.not_found and e.status != 403:
            problems.append(str(e))
        return None
    text = ((cm or {}).get("data") or {}).get("kubelet")
    return text if isinstance(text, str) else None


def _lease(api: ApiClient, problems: list[str]) -> tuple[Json | None, bool]:
    from upgrader.kube import lease

    try:
        return lease.read_lease(api), True
    except ApiError as e:
        if e.status != 403:
            problems.append(str(e))
        return None, False


# --------------------------------------------------------------------------- SSH reads


def etcd_health(
    transports: TransportFor, nodes: Sequence[str], *, timeout: float = ETCD_TIMEOUT
) -> dict[str, CommandOutcome]:
    """``etcdctl endpoint health`` on each node (as root), concurrently."""

    def one(node: str) -> CommandOutcome:
        try:
            r = transports(node).run(health.ETCD_HEALTH_COMMAND, timeout=timeout, sudo=True)
        except TransportError as e:
            return CommandOutcome(None, error=str(e))
        if r.timed_out:
            return CommandOutcome(None, error=f"etcdctl did not answer within {timeout:.0f}s")
        text = "\n".join(x for x in (r.stdout.strip(), r.stderr.strip()) if x)
        return CommandOutcome(r.exit_code, text)

    if not nodes:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(nodes)), thread_name_prefix="etcd") as ex:
        results = list(ex.map(one, nodes))
    return dict(zip(nodes, results, strict=True))


# --------------------------------------------------------------------------- collect


def collect(
    api: ApiClient,
    req: PreflightRequest,
    *,
    transports: TransportFor | None = None,
    now: datetime | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> PreflightInputs:
    """Everything the preflight checks read. Never raises for a failed read."""
    started = time.monotonic()
    problems: list[str] = []
    table = req.removed_table if req.removed_table is not None else ra.load_removed_apis()
    scan = ra.scan_targets(table, req.current, req.target)
    accesses = acc.required_access(disable_eviction=req.disable_eviction, scan=scan)
    access = review_access(api, accesses, policy=policy)

    core = CoreV1Api(api)
    nodes = _list(core.list_node, what="LIST nodes", policy=policy, problems=problems)
    pods = _list(
        core.list_pod_for_all_namespaces, what="LIST pods", policy=policy, problems=problems
    )
    pdbs = _list(
        PolicyV1Api(api).list_pod_disruption_budget_for_all_namespaces,
        what="LIST poddisruptionbudgets",
        policy=policy,
        problems=problems,
    )
    missing = missing_daemonsets(
        api,
        pods or (),
        policy=policy,
        on_error=lambda e: None if e.status == 403 else problems.append(str(e)),
    )
    requests, metric_problem = read_deprecated_requests(api, policy=policy)
    objects, scan_problems = scan_applied_objects(api, scan, policy=policy)
    unchecked = tuple(x for x in (metric_problem, *scan_problems) if x)
    lease_obj, lease_read = _lease(api, problems)
    kubelet_cm = _kubelet_configmap(api, policy, problems)
    etcd = (
        etcd_health(transports, req.etcd_nodes, timeout=req.etcd_timeout)
        if transports is not None
        else {}
    )
    log.info("preflight reads took %.1fs", time.monotonic() - started)
    return PreflightInputs(
        now=now or datetime.now(UTC),
        access=access,
        nodes=nodes,
        pods=pods,
        pdbs=pdbs,
        missing_daemonsets=missing,
        deprecated_requests=requests,
        applied_objects=objects,
        removed_api_unchecked=unchecked,
        etcd=etcd,
        lease=lease_obj,
        lease_read=lease_read,
        kubelet_configmap=kubelet_cm,
        problems=tuple(problems),
    )


def collect_for(
    inventory: Inventory,
    facts: Facts,
    api: ApiClient,
    pool: Any,
    *,
    target: KubeVersion,
    disable_eviction: bool = False,
    now: datetime | None = None,
) -> PreflightInputs:
    """:func:`collect` for an inventory's cluster: etcd is asked on every reachable
    control-plane node through ``pool`` (an :class:`~upgrader.transport.ssh.SSHPool`)."""
    if any(f.code == "API_UNREACHABLE" for f in facts.findings):
        # nothing to read (and every read would wait out its retries); the gatherer's
        # API_UNREACHABLE blocker already says why
        return PreflightInputs(now=now or datetime.now(UTC))
    cps = tuple(n.name for n in facts.control_planes if n.reachable)
    req = PreflightRequest(
        current=facts.cluster.version,
        target=target,
        disable_eviction=disable_eviction,
        etcd_nodes=cps,
    )
    return collect(
        api,
        req,
        transports=lambda node: pool.get(inventory.ssh_target(node)),
        now=now,
    )


# --------------------------------------------------------------------------- health gate


def health_gate(
    api: ApiClient,
    *,
    transports: TransportFor | None = None,
    control_planes: Sequence[str] = (),
    etcd_timeout: float = ETCD_TIMEOUT,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> list[Finding]:
    """One evaluation of the cluster health gates: every node Ready, every control-plane
    mirror pod Ready, etcd healthy on ``control_planes`` (when ``transports`` is given).
    A read that fails is itself a blocker (the gate cannot pass on what it cannot see).
    The etcd probes (an SSH round trip each) run while the API is read."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gate-etcd") as pool:
        etcd = (
            pool.submit(etcd_health, transports, control_planes, timeout=etcd_timeout)
            if transports is not None and control_planes
            else None
        )
        out = _api_health(api, policy)
        if etcd is not None:
            out += health.check_etcd(etcd.result())
    return out


def _api_health(api: ApiClient, policy: RetryPolicy) -> list[Finding]:
    """The gate's API side: nodes Ready, control-plane mirror pods Ready."""
    from upgrader.core.model import Severity

    out: list[Finding] = []
    core = CoreV1Api(api)
    try:
        nodes = tuple(paged(core.list_node, what="LIST nodes", policy=policy))
        out += health.check_nodes_ready(nodes)
    except ApiError as e:
        out.append(Finding("HEALTH_UNKNOWN", Severity.BLOCKER, f"cannot read nodes: {e}"))
    try:
        pods = tuple(
            paged(
                core.list_namespaced_pod,
                acc.KUBE_SYSTEM,
                what="LIST pods in kube-system",
                policy=policy,
            )
        )
        mirror = tuple(
            p
            for p in pods
            if MIRROR_ANNOTATION in ((p.get("metadata") or {}).get("annotations") or {})
        )
        out += health.check_control_plane_pods(mirror)
    except ApiError as e:
        out.append(
            Finding("HEALTH_UNKNOWN", Severity.BLOCKER, f"cannot read control-plane pods: {e}")
        )
    return out


class GateWait(TypedDict, total=False):
    """How :func:`between_nodes` waits for the health gate: the keyword arguments it
    passes on to :func:`wait_until_healthy` as they are (defaults there)."""

    validate_count: int
    interval: float
    timeout: float
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    progress_every: float


def between_nodes(
    gate: Callable[[], list[Finding]],
    *,
    on_progress: Callable[[Sequence[Any], str], None] | None = None,
    **wait: Unpack[GateWait],
) -> Callable[[Sequence[Any]], None]:
    """The engine's ``before_batch`` hook: before the next node's upgrade (a batch of plan
    entries) ``gate`` (e.g. ``lambda: health_gate(api, ...)``) must pass ``validate_count``
    times in a row within ``timeout`` seconds (``wait``: see :func:`wait_until_healthy`);
    else :class:`StepFailed` naming the node(s) and every blocker stops the run there (a
    rerun resumes at that node). While it waits, ``on_progress(batch, text)`` hears what
    fails and the time left."""

    def before(batch: Sequence[Any]) -> None:
        say = None if on_progress is None else (lambda text: on_progress(batch, text))
        result = wait_until_healthy(gate, on_progress=say, **wait)
        if result.passed:
            return
        nodes = ", ".join(str(getattr(e, "node", e)) for e in batch)
        why = "; ".join(
            f"{f.code}: {f.message}" for f in result.findings if f.severity.value == "blocker"
        )
        first = getattr(batch[0], "node", None) if batch else None
        raise StepFailed(f"cluster health gate before {nodes}: {why}", node=first)

    return before


@dataclass(frozen=True)
class GateResult:
    """The outcome of :func:`wait_until_healthy`."""

    passed: bool
    findings: tuple[Finding, ...]  # the last evaluation's (a failed one, when not passed)
    evaluations: int


def wait_until_healthy(
    gate: Callable[[], list[Finding]],
    *,
    validate_count: int = 1,
    interval: float = 5.0,
    timeout: float = 300.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_progress: Callable[[str], None] | None = None,
    progress_every: float = 30.0,
) -> GateResult:
    """Evaluate ``gate`` until it passes ``validate_count`` times in a row, or ``timeout``
    seconds pass.

    Spacing: after a passing evaluation that is not yet the ``validate_count``-th in a row
    the next one comes ``interval`` seconds later (the passes show stability over time).
    After a failed evaluation the gate is asked again soon, since it usually fails only
    while a node settles: :data:`GATE_RETRY_START` seconds, doubling with each further
    failure in a row, capped at ``interval``; a pass ends the failure streak, so the next
    failure starts again at the fast poll.

    No sleep ends past the deadline: when the next evaluation would come after it, the
    wait ends there. On timeout the findings are those of the last failed evaluation (or
    ``HEALTH_NOT_STABLE`` when every evaluation passed but never ``validate_count`` in a
    row). Only ``gate``, ``sleep``, ``clock`` and ``on_progress`` touch the world.

    A wait that has not passed after :func:`upgrader.core.waiting.first_say` seconds (5),
    then every ``progress_every`` seconds, tells ``on_progress`` what the last evaluation
    found (each blocker's code and message, or the passes in a row so far) and the time
    left. One evaluation can itself take up to the etcd health timeout (30 s)."""
    from upgrader.core.model import Severity

    counter = health.ConsecutivePasses(validate_count)
    wait = Wait(
        timeout, clock=clock, sleep=sleep, on_progress=on_progress, progress_every=progress_every
    )
    first_retry = min(GATE_RETRY_START, interval)
    retry = [first_retry]  # the next gap after a failure: doubles per failure in a row
    last_failed: list[Finding] = []

    def evaluate() -> list[Finding]:
        findings = gate()
        if not health.passed(findings):
            last_failed[:] = findings
        return findings

    def gap(findings: list[Finding], _backoff: float) -> float:
        if health.passed(findings):  # a pass, not yet enough in a row: show stability
            retry[0] = first_retry
            return interval
        delay, retry[0] = retry[0], min(retry[0] * 2, interval)
        return delay

    polled = poll_until(
        evaluate,
        counter.record,
        wait=wait,
        first=first_retry,
        cap=interval,
        progress=lambda f: f"waiting for the cluster health gate: {_gate_state(f, counter)}",
        gap=gap,
        whole_naps=True,
    )
    if polled.done:
        return GateResult(True, tuple(polled.result), polled.attempts)
    if not last_failed:
        last_failed = [
            Finding(
                "HEALTH_NOT_STABLE",
                Severity.BLOCKER,
                f"the health gates passed {counter.streak} time(s) in a row, not the "
                f"{validate_count} required, within {timeout:.0f}s",
                fix="lower --validate-count or raise the timeout",
            )
        ]
    return GateResult(False, tuple(last_failed), polled.attempts)


def _gate_state(findings: Sequence[Finding], counter: health.ConsecutivePasses) -> str:
    """What one evaluation of the gate found, for a progress line: its blockers, or how
    many passes in a row it has of the number required."""
    blockers = [f for f in findings if f.severity.value == "blocker"]
    if blockers:
        return "; ".join(f"{f.code}: {f.message}" for f in blockers)
    return f"passed {counter.streak} time(s) in a row of the {counter.required} required"


# --------------------------------------------------------------------------- apply


def for_apply(
    inventory: Inventory,
    facts: Facts,
    api: ApiClient,
    pool: Any,
    plan_request: PlanRequest,
    engine: EngineOptions,
    *,
    own_run_id: str | None = None,
) -> tuple[PlanRequest, PreflightInputs]:
    """What ``upgrader apply`` plans with: the plan request carrying the drain flags the
    engine will use (``engine``: :class:`~upgrader.execute.engine.EngineOptions`), and the
    preflight inputs without the Lease (apply takes the lock itself and refuses a live one
    with ``LockHeld``, exit code 6). ``own_run_id``: the run being resumed."""
    import dataclasses

    req = dataclasses.replace(
        plan_request,
        delete_emptydir_data=engine.delete_emptydir_data,
        disable_eviction=engine.disable_eviction,
        own_run_id=own_run_id,
    )
    # a drain that may delete pods (--disable-eviction, or a drain fallback of delete on
    # some node) needs the delete permission: the access check asks for it then
    deletes = req.disable_eviction or _fallback_anywhere(inventory, req)
    pre = collect_for(inventory, facts, api, pool, target=req.target, disable_eviction=deletes)
    access = pre.access
    if access is not None and pre.lease is not None:  # create is not needed: the Lease exists
        access = tuple(r for r in access if not acc.creates_lease(r.access))
    return req, dataclasses.replace(pre, access=access, lease=None, lease_read=False)


def _fallback_anywhere(inventory: Inventory, req: PlanRequest) -> bool:
    """Whether the drain of some node of ``inventory`` falls back to deleting pods."""
    from upgrader.core.drain import FALLBACK_DELETE, FALLBACK_NONE, effective

    if not hasattr(inventory, "drain_settings"):
        return bool(req.drain_fallback == FALLBACK_DELETE)
    for n in inventory.nodes:
        own, wide = inventory.drain_settings(n)
        if effective(own[0], req.drain_fallback, wide[0], FALLBACK_NONE) == FALLBACK_DELETE:
            return True
    return False


# --------------------------------------------------------------------------- post-flight


def wait_pdbs_recovered(
    api: ApiClient,
    before: Sequence[Mapping[str, Any]] | None,
    *,
    timeout: float = 120.0,
    interval: float = 2.0,
    policy: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    on_progress: Callable[[str], None] | None = None,
    progress_every: float = 30.0,
) -> list[str]:
    """Wait until every PodDisruptionBudget that allowed a disruption before the run
    (``before``: the preflight's list) allows one again; what still does not after
    ``timeout`` seconds, one line each (``[]``: all recovered, or nothing to compare).
    The budgets are re-read every ``interval`` seconds and on every change their watch
    reports (``sleep`` None: the real clock; an injected ``sleep`` replaces the watch).
    After 5 s of waiting, then every ``progress_every`` seconds, ``on_progress`` hears
    which budgets it waits for and the time left."""
    from upgrader.core.checks.postflight import pdb_regressions

    if not before:
        return []
    fn = PolicyV1Api(api).list_pod_disruption_budget_for_all_namespaces
    failed: list[str] = []

    def regressions() -> list[str]:
        try:
            after = tuple(paged(fn, what="LIST poddisruptionbudgets", policy=policy))
        except ApiError as e:
            failed.append(f"cannot read the PodDisruptionBudgets after the run: {e}")
            return []
        return pdb_regressions(before, after)

    with feed_sleep(sleep, fn, what="poddisruptionbudgets") as nap:
        wait = Wait(
            timeout, clock=clock, sleep=nap, on_progress=on_progress, progress_every=progress_every
        )
        polled = poll_until(
            regressions,
            lambda problems: not problems,
            wait=wait,
            first=interval,
            cap=interval,
            progress=lambda problems: (
                "waiting for the PodDisruptionBudgets to allow a disruption again: "
                + "; ".join(problems)
            ),
            whole_naps=True,
        )
    return failed or polled.result


ADDON_IMAGES_TIMEOUT = 60.0


def addons_after_run(
    api: ApiClient,
    transport: Transport | None,
    target: KubeVersion,
    image_repository: str | None,
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> list[str]:
    """Post-flight of the kubeadm addons (see
    :func:`upgrader.core.checks.postflight.addon_problems`): the kube-apiserver mirror
    pods' images, the ``kube-proxy`` DaemonSet and ``coredns`` Deployment images, and the
    CoreDNS image the target's kubeadm lists (``kubeadm config images list`` on
    ``transport``, a control plane that has the new kubeadm). One line per problem."""
    from upgrader.core.checks.postflight import addon_problems

    ns = acc.KUBE_SYSTEM
    try:
        listed = request_json(
            CoreV1Api(api).list_namespaced_pod,
            ns,
            what="LIST kube-apiserver pods",
            policy=policy,
            label_selector="component=kube-apiserver",
        )
    except ApiError as e:
        return [f"cannot read the kube-apiserver pods after the run: {e}"]
    apiservers: dict[str, str] = {}
    for p in (listed or {}).get("items") or ():
        containers = (p.get("spec") or {}).get("containers") or []
        node = (p.get("spec") or {}).get("nodeName")
        if node and containers:
            apiservers[str(node)] = str(containers[0].get("image") or "")

    def image(fn: Callable[..., Any], name: str, what: str) -> str | None:
        try:
            obj = request_json(fn, name, ns, what=what, policy=policy)
        except ApiError as e:
            if e.not_found or e.status == 403:  # absent, or not ours to read: not checked
                return None
            raise
        containers = (((obj or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
        first = (containers.get("containers") or [{}])[0]
        return str(first.get("image") or "")

    apps = AppsV1Api(api)
    try:
        proxy = image(apps.read_namespaced_daemon_set, "kube-proxy", "GET daemonset kube-proxy")
        dns = image(apps.read_namespaced_deployment, "coredns", "GET deployment coredns")
    except ApiError as e:
        return [f"cannot read the addons after the run: {e}"]
    expected: str | None = None
    if transport is not None and dns is not None:
        repo = image_repository or "registry.k8s.io"
        cmd = f"kubeadm config images list --kubernetes-version {target} --image-repository {repo}"
        try:
            res = transport.run(cmd, timeout=ADDON_IMAGES_TIMEOUT, sudo=False)
        except TransportError as e:
            log.warning("post-flight: %s: %s", cmd, e)
        else:
            found = [line.strip() for line in res.stdout.splitlines() if "/coredns:" in line]
            expected = found[0] if res.ok and found else None
    return addon_problems(str(target), apiservers, proxy, dns, expected)
