"""Draining a node through the API, as ``kubectl drain`` does.

Owns :func:`drain`: list the node's pods (field selector ``spec.nodeName``), classify
them with :func:`upgrader.core.drain.classify_pods` (refusing, before anything is
evicted, with one error naming every refused pod), evict all selected pods concurrently
through the ``pods/eviction`` subresource (policy/v1) — 429 (a PodDisruptionBudget says
no) is retried after a delay until the drain timeout, a 500 for a pod under several PDBs
is fatal for that pod, 404 means gone — or delete them when eviction is disabled, then
wait until each pod is gone: one waiter LISTs the node's pods whenever the watch of those
pods reports a change, and at least once per poll (a pod is gone when it left the list or
its name belongs to another UID), so the API load of the wait does not grow with the number
of pods and no pod waits for a free thread. On timeout,
:class:`DrainTimeout` names each pod still there and the PDB(s) holding it — unless the
drain fallback is ``delete``: then the pods a PodDisruptionBudget still refuses (429 until
the timeout, or several budgets) are deleted with a plain DELETE (their own grace period,
no budget check, as ``kubectl drain --disable-eviction``), the caller is told which pods and
budgets, and the drain waits for them to go. ``pod_selector`` limits the drain to the pods
whose labels match it (``kubectl drain --pod-selector``). :func:`missing_daemonsets` is
the one rule for orphaned DaemonSet pods, shared with the preflight that predicts the drain.

Must not: print, cordon inside :func:`drain` (the executor cordons first and records that
it did), or evict anything when a pod is refused.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import Any

from kubernetes.client import (
    ApiClient,
    AppsV1Api,
    CoreV1Api,
    PolicyV1Api,
    V1DeleteOptions,
    V1Eviction,
    V1ObjectMeta,
    V1Preconditions,
)

from upgrader.core.drain import (
    FALLBACK_DELETE,
    FALLBACK_NONE,
    MULTIPLE_PDBS,
    DrainSelection,
    PodDecision,
    blocked_report,
    check_fallback,
    classify_pods,
    controller_of,
    fallback_text,
    fallback_wait_seconds,
    is_finished,
    overridden_budgets,
    pod_key,
    pod_uid,
)
from upgrader.core.podselector import parse_selector
from upgrader.errors import DrainTimeout, StepFailed
from upgrader.kube.nodes import POLL_POLICY, validate_node_name
from upgrader.kube.retry import DEFAULT_POLICY, ApiError, RetryPolicy, is_transient, request_json
from upgrader.kube.watching import feed_sleep

log = logging.getLogger("upgrader.kube")

Clock = Callable[[], float]
Sleep = Callable[[float], None]
Event = Callable[[str], None]


class DrainRefused(StepFailed):
    """Pods on the node that the flags do not allow to delete; nothing was evicted."""


@dataclass(frozen=True)
class DrainResult:
    node: str
    evicted: tuple[str, ...]  # ns/name of the pods that are gone (evicted or deleted)
    skipped: tuple[str, ...]  # mirror, DaemonSet-managed, long-deleted
    warnings: tuple[str, ...]  # kubectl's warnings ("ignoring DaemonSet-managed Pods: ...")
    used_eviction: bool = True
    fallback_deleted: tuple[str, ...] = ()  # pods deleted by the fallback (budget overridden)
    overridden_budgets: tuple[str, ...] = ()  # ns/name of the budgets that held them
    left: int = 0  # pods --pod-selector left on the node


@dataclass
class _Outcome:
    key: str
    state: str  # "requested" (eviction accepted) | "gone" | "timeout" | "failed"
    error: str | None = None  # last eviction error (for the report) or the fatal one
    last: Mapping[str, Any] | None = None  # last seen pod object
    pdb_refused: bool = False  # a PodDisruptionBudget refused its eviction (429 or several)


def _is_multiple_pdbs(e: ApiError) -> bool:
    return e.status == 500 and "more than one PodDisruptionBudget" in str(e)


def _eviction_retryable(exc: BaseException) -> bool:
    """Transient, except a PDB's 429 (the drain loop waits for it) and the several-PDBs 500."""
    if isinstance(exc, ApiError) and (exc.status == 429 or _is_multiple_pdbs(exc)):
        return False
    status = getattr(exc, "status", None)
    if status == 429:
        return False
    if status == 500 and "more than one PodDisruptionBudget" in str(getattr(exc, "body", "")):
        return False
    return is_transient(exc)


def _api_message(e: ApiError) -> str:
    """The server's message part of an ApiError's text (after ``what: 429 ...: ``)."""
    text = str(e)
    head = f"{e.status} {e.reason or ''}".strip() + ": "
    i = text.find(head)
    return text[i + len(head) :] if i >= 0 else text


def list_node_pods(api: ApiClient, node: str) -> list[dict[str, Any]]:
    validate_node_name(node)
    doc = request_json(
        CoreV1Api(api).list_pod_for_all_namespaces,
        field_selector=f"spec.nodeName={node}",
        what=f"LIST pods on node {node}",
    )
    return list((doc or {}).get("items") or [])


def missing_daemonsets(
    api: ApiClient,
    pods: Sequence[Mapping[str, Any]],
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    on_error: Callable[[ApiError], None] | None = None,
) -> frozenset[tuple[str, str]]:
    """DaemonSets that the node's unfinished pods name as controller but that do not exist
    (kubectl's ``daemonSetFilter`` looks each one up: orphans need ``--force``). One rule for
    the drain and for the preflight that predicts it. An API error other than 404 is raised,
    or given to ``on_error`` (the preflight's: note it and go on)."""
    wanted: set[tuple[str, str]] = set()
    for p in pods:
        ctrl = controller_of(p)
        if ctrl is not None and ctrl.get("kind") == "DaemonSet" and not is_finished(p):
            ns = str((p.get("metadata") or {}).get("namespace") or "default")
            wanted.add((ns, str(ctrl.get("name"))))
    missing: set[tuple[str, str]] = set()
    apps = AppsV1Api(api)
    for ns, name in sorted(wanted):
        try:
            request_json(
                apps.read_namespaced_daemon_set,
                name,
                ns,
                what=f"GET daemonset {ns}/{name}",
                policy=policy,
            )
        except ApiError as e:
            if e.not_found:
                missing.add((ns, name))
            elif on_error is not None:
                on_error(e)
            else:
                raise
    return frozenset(missing)


def list_pdbs(api: ApiClient, namespaces: set[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for ns in sorted(namespaces):
        doc = request_json(
            PolicyV1Api(api).list_namespaced_pod_disruption_budget,
            ns,
            what=f"LIST poddisruptionbudgets in {ns}",
        )
        out.extend((doc or {}).get("items") or [])
    return out


@dataclass
class _Drainer:
    """One drain: its node, its settings, its clock and how it naps."""

    api: ApiClient
    node: str
    deadline: float | None  # None: no bound
    grace_period: int | None
    disable_eviction: bool
    poll: float
    retry_delay: float
    clock: Clock
    sleep: Sleep
    on_event: Event | None
    until_change: Sleep  # the waiter's nap: a watched change ends it

    def event(self, msg: str) -> None:
        log.info("drain %s: %s", self.node, msg)
        if self.on_event is not None:
            self.on_event(msg)

    def remaining(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - self.clock()

    def nap(self, seconds: float) -> None:
        self.sleep(max(0.0, min(seconds, self.remaining())))

    def _delete_options(self, uid: str | None) -> V1DeleteOptions:
        return V1DeleteOptions(
            grace_period_seconds=self.grace_period,
            preconditions=V1Preconditions(uid=uid) if uid else None,
        )

    def _request_removal(self, ns: str, name: str, uid: str | None) -> None:
        core = CoreV1Api(self.api)
        if self.disable_eviction:
            request_json(
                core.delete_namespaced_pod,
                name,
                ns,
                body=self._delete_options(uid),
                what=f"DELETE pod {ns}/{name}",
            )
            return
        body = V1Eviction(
            api_version="policy/v1",
            kind="Eviction",
            metadata=V1ObjectMeta(name=name, namespace=ns),
            delete_options=self._delete_options(uid),
        )
        request_json(
            core.create_namespaced_pod_eviction,
            name,
            ns,
            body,
            what=f"evict pod {ns}/{name}",
            retry_on=_eviction_retryable,
        )

    def _get(self, ns: str, name: str) -> dict[str, Any] | None:
        """The pod, None if it is gone (404). Transient errors raise ApiError."""
        try:
            obj = request_json(
                CoreV1Api(self.api).read_namespaced_pod,
                name,
                ns,
                what=f"GET pod {ns}/{name}",
                policy=POLL_POLICY,
            )
        except ApiError as e:
            if e.not_found:
                return None
            raise
        return obj if isinstance(obj, dict) else None

    def _gone(self, ns: str, name: str, uid: str | None) -> tuple[bool, dict[str, Any] | None]:
        obj = self._get(ns, name)
        if obj is None:
            return True, None
        return (uid is not None and pod_uid(obj) != uid), obj

    def run(self, d: PodDecision) -> _Outcome:
        ns, name, uid, key = d.namespace, d.name, d.uid, d.key
        last_error: str | None = None
        last: Mapping[str, Any] | None = d.pod
        verb = "deleting" if self.disable_eviction else "evicting"
        refused = False
        # 1. ask for the pod's removal
        while True:
            if self.remaining() <= 0:
                return _Outcome(key, "timeout", last_error, last, pdb_refused=refused)
            self.event(f"{verb} pod {key}")
            try:
                self._request_removal(ns, name, uid)
                break
            except ApiError as e:
                if e.not_found:
                    self.event(f"pod {key} is already gone")
                    return _Outcome(key, "gone")
                if _is_multiple_pdbs(e):
                    return _Outcome(
                        key,
                        "failed",
                        f"{_api_message(e)} ({MULTIPLE_PDBS})",
                        last,
                        pdb_refused=True,
                    )
                if e.status == 429:
                    refused = True
                    last_error = _api_message(e)
                    self.event(
                        f"cannot evict pod {key} yet (will retry after "
                        f"{self.retry_delay:g}s): {last_error}"
                    )
                    self.nap(self.retry_delay)
                    continue
                if e.status == 409:
                    # precondition failed: the name now belongs to another pod, or conflict
                    try:
                        gone, obj = self._gone(ns, name, uid)
                    except ApiError:
                        gone, obj = False, None
                    if gone:
                        self.event(f"pod {key} is gone (replaced)")
                        return _Outcome(key, "gone")
                    last, last_error = obj or last, _api_message(e)
                    refused = False
                    self.nap(self.retry_delay)
                    continue
                return _Outcome(key, "failed", str(e), last)
        # 2. the caller's single waiter (:meth:`wait`) watches it go
        return _Outcome(key, "requested", last_error, last)

    def _present(self) -> dict[str, dict[str, Any]]:
        """The node's pods now, by ``ns/name`` (one LIST, however many pods are waited for)."""
        doc = request_json(
            CoreV1Api(self.api).list_pod_for_all_namespaces,
            field_selector=f"spec.nodeName={self.node}",
            what=f"LIST pods on node {self.node}",
            policy=POLL_POLICY,
        )
        return {pod_key(p): p for p in (doc or {}).get("items") or []}

    def wait(self, futures: dict[Future[_Outcome], PodDecision]) -> list[_Outcome]:
        """Collect the eviction threads' outcomes and wait until every pod whose removal
        was accepted is gone: one LIST of the node's pods per ``poll`` (a pod is gone when
        it is no longer on the node, or its name now belongs to another UID), rather than
        one GET per pod and thread. Outcomes in the order of ``futures``."""
        order = [d.key for d in futures.values()]
        running = dict(futures)
        waiting: dict[str, tuple[PodDecision, _Outcome]] = {}
        done: dict[str, _Outcome] = {}
        gone_word = "deleted" if self.disable_eviction else "evicted"
        while True:
            for f in [f for f in running if f.done()]:
                d = running.pop(f)
                o = f.result()
                if o.state == "requested":
                    waiting[o.key] = (d, o)
                else:
                    done[o.key] = o
            if waiting:
                try:
                    present: dict[str, dict[str, Any]] | None = self._present()
                except ApiError as e:
                    if e.status in (401, 403):
                        for key, (_, o) in waiting.items():
                            done[key] = _Outcome(key, "failed", str(e), o.last)
                        waiting.clear()
                    else:
                        log.info("drain %s: waiting for %d pod(s): %s", self.node, len(waiting), e)
                    present = None
                if present is not None:
                    for key, (d, o) in list(waiting.items()):
                        obj = present.get(key)
                        if obj is None or (d.uid is not None and pod_uid(obj) != d.uid):
                            self.event(f"pod {key} {gone_word}")
                            done[key] = _Outcome(key, "gone")
                            del waiting[key]
                        else:
                            o.last = obj
            if not running and not waiting:
                break
            if self.remaining() <= 0:
                for key, (_, o) in waiting.items():
                    done[key] = _Outcome(key, "timeout", o.error, o.last)  # accepted: not held
                waiting.clear()
                if not running:
                    break
            if waiting:
                self.until_change(max(0.0, min(self.poll, self.remaining())))
            else:
                wait_futures(list(running), timeout=self.poll, return_when=FIRST_COMPLETED)
        return [done[k] for k in order]


def drain(
    api: ApiClient,
    node: str,
    *,
    timeout: float,
    grace_period: int | None = None,
    delete_emptydir_data: bool = False,
    force: bool = False,
    disable_eviction: bool = False,
    ignore_daemonsets: bool = True,
    poll: float = 1.0,
    retry_delay: float = 5.0,
    max_workers: int = 32,
    on_event: Event | None = None,
    pod_selector: str | None = None,
    fallback: str = FALLBACK_NONE,
    on_fallback: Callable[[tuple[str, ...], tuple[str, ...]], None] | None = None,
    clock: Clock = time.monotonic,
    sleep: Sleep | None = None,
) -> DrainResult:
    """Evict (or with ``disable_eviction``, delete) every pod of ``node`` that
    ``kubectl drain`` would, concurrently, and wait until they are gone.

    ``timeout`` bounds the whole drain in seconds (0: no bound, as kubectl);
    ``grace_period`` overrides the pods' termination grace period; ``retry_delay`` is the
    wait after a PodDisruptionBudget refused an eviction (429); ``poll`` the interval of
    the "is it gone?" check, which the watch of the node's pods ends early on every
    change (``sleep`` None: the real clock; an injected ``sleep`` replaces the watch).
    Raises :class:`DrainRefused` (nothing evicted), :class:`DrainTimeout` (pods still
    there, with what blocks each), :class:`StepFailed` (an eviction failed for good) or
    :class:`~upgrader.kube.retry.ApiError`.

    ``pod_selector`` (label selector text): only the pods it matches are drained.
    ``fallback`` ``delete``: when the timeout ran out, the pods a budget still refuses are
    deleted (``on_fallback`` hears their ``ns/name`` and the budgets overridden first), and
    the drain waits their grace period (plus a margin) for them to go.
    """
    validate_node_name(node)
    check_fallback(fallback)
    start = clock()
    sel, left = _select(
        api,
        node,
        pod_selector,
        delete_emptydir_data=delete_emptydir_data,
        force=force,
        ignore_daemonsets=ignore_daemonsets,
    )
    pods_of_node = CoreV1Api(api).list_pod_for_all_namespaces
    with feed_sleep(
        sleep, pods_of_node, what=f"pods on node {node}", field_selector=f"spec.nodeName={node}"
    ) as until_change:
        drainer = _Drainer(
            api,
            node,
            deadline=start + timeout if timeout > 0 else None,
            grace_period=grace_period,
            disable_eviction=disable_eviction,
            poll=poll,
            retry_delay=retry_delay,
            clock=clock,
            sleep=sleep or time.sleep,
            on_event=on_event,
            until_change=until_change,
        )
        outcomes = _remove(drainer, sel.to_evict, max_workers, "drain")
        fell_back: _FellBack = ((), ())
        if fallback == FALLBACK_DELETE:
            outcomes, fell_back = _fall_back(drainer, sel, outcomes, max_workers, on_fallback)
    _raise_failures(api, node, timeout, outcomes, fell_back)
    return DrainResult(
        node=node,
        evicted=tuple(o.key for o in outcomes),
        skipped=tuple(d.key for d in sel.skipped),
        warnings=tuple(sel.warnings()),
        used_eviction=not disable_eviction,
        fallback_deleted=fell_back[0],
        overridden_budgets=fell_back[1],
        left=left,
    )


def _select(
    api: ApiClient,
    node: str,
    pod_selector: str | None,
    *,
    delete_emptydir_data: bool,
    force: bool,
    ignore_daemonsets: bool,
) -> tuple[DrainSelection, int]:
    """The node's pods ``kubectl drain`` would remove (refusing with :class:`DrainRefused`
    before anything is evicted), and how many ``pod_selector`` leaves on the node."""
    chooser = parse_selector(pod_selector or "")
    listed = list_node_pods(api, node)
    pods = [p for p in listed if chooser.matches_pod(p)]
    left = len(listed) - len(pods)
    if not chooser.empty:
        log.info("drain %s: --pod-selector %s leaves %d pod(s)", node, chooser.text(), left)
    sel = classify_pods(
        pods,
        node=node,
        delete_emptydir_data=delete_emptydir_data,
        force=force,
        ignore_daemonsets=ignore_daemonsets,
        missing_daemonsets=missing_daemonsets(api, pods),
    )
    if not sel.ok:
        raise DrainRefused(sel.error_message(), node=node)
    for w in sel.warnings():
        log.info("drain %s: %s", node, w)  # kubectl prints these as notes too
    return sel, left


def _remove(
    drainer: _Drainer, decisions: Sequence[PodDecision], max_workers: int, what: str
) -> list[_Outcome]:
    """Ask for every pod's removal from a bounded pool of threads and wait until they are
    gone (:meth:`_Drainer.wait`); outcomes in the order of ``decisions``."""
    if not decisions:
        return []
    workers = max(1, min(max_workers, len(decisions)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{what}-{drainer.node}") as ex:
        return drainer.wait({ex.submit(drainer.run, d): d for d in decisions})


_FellBack = tuple[tuple[str, ...], tuple[str, ...]]  # (pods deleted, budgets overridden)


def _fall_back(
    drainer: _Drainer,
    sel: DrainSelection,
    outcomes: list[_Outcome],
    max_workers: int,
    on_fallback: Callable[[tuple[str, ...], tuple[str, ...]], None] | None,
) -> tuple[list[_Outcome], _FellBack]:
    """The ``delete`` fallback: the pods a budget still refuses (429 until the timeout, or
    several budgets) are deleted with a plain DELETE (their own grace period) and waited
    for, ``on_fallback`` told first; the outcomes with theirs redone, and (the pods
    deleted, the budgets overridden), both empty when no budget held a pod."""
    held = [o for o in outcomes if o.pdb_refused and o.state in ("timeout", "failed")]
    if not held:
        return outcomes, ((), ())
    by_key = {d.key: d for d in sel.to_evict}
    victims = [by_key[o.key] for o in held]
    objs = [o.last or by_key[o.key].pod for o in held]
    budgets: tuple[str, ...] = ()
    try:
        pdbs = list_pdbs(drainer.api, {d.namespace for d in victims})
        budgets = tuple(overridden_budgets(objs, pdbs))
    except ApiError as e:
        log.warning("drain %s: cannot list PodDisruptionBudgets: %s", drainer.node, e)
    deleted = tuple(d.key for d in victims)
    if on_fallback is not None:
        on_fallback(deleted, budgets)
    drainer.event(fallback_text(deleted, budgets))
    deleter = copy.copy(drainer)  # a plain DELETE, the pod's own grace period
    deleter.deadline = drainer.clock() + fallback_wait_seconds(objs)
    deleter.grace_period = None
    deleter.disable_eviction = True
    redone = {o.key: o for o in _remove(deleter, victims, max_workers, "delete")}
    return [redone.get(o.key, o) for o in outcomes], (deleted, budgets)


def _raise_failures(
    api: ApiClient,
    node: str,
    timeout: float,
    outcomes: list[_Outcome],
    fell_back: _FellBack,
) -> None:
    """:class:`DrainTimeout` naming each pod still there and what holds it (the budgets
    are listed then), or :class:`StepFailed` for evictions that failed for good."""
    timed_out = [o for o in outcomes if o.state == "timeout"]
    failed = [o for o in outcomes if o.state == "failed"]
    failures = "; ".join(f"{o.key}: {o.error}" for o in failed)
    if timed_out:
        remaining = [o.last or {} for o in timed_out]
        namespaces = {
            str((p.get("metadata") or {}).get("namespace") or "default") for p in remaining
        }
        try:
            pdbs = list_pdbs(api, namespaces)
        except ApiError as e:
            log.warning("drain %s: cannot list PodDisruptionBudgets: %s", node, e)
            pdbs = []
        blocked = blocked_report(remaining, pdbs, {o.key: o.error for o in timed_out if o.error})
        msg = (
            f"drain of node {node} timed out after {timeout:g}s with "
            f"{len(timed_out)} pod(s) still there: " + "; ".join(blocked)
        )
        if fell_back[0]:
            msg += "; " + fallback_text(*fell_back) + ", and they did not go in time"
        if failures:
            msg += f"; eviction failed for: {failures}"
        raise DrainTimeout(
            msg,
            node=node,
            remaining=tuple(o.key for o in timed_out),
            blocked=tuple(blocked),
        )
    if failed:
        raise StepFailed(f"drain of node {node} failed: {failures}", node=node)


__all__ = [
    "DrainRefused",
    "DrainResult",
    "DrainTimeout",
    "drain",
    "list_node_pods",
    "list_pdbs",
    "missing_daemonsets",
    "pod_key",
]
