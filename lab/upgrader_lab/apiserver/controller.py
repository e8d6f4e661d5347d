"""The lab's control loops: what kube-controller-manager, the scheduler and kubelets do.

Owns, in one background thread woken by every store change (and by its own deadlines):
Deployments -> ReplicaSets -> pods, DaemonSet pods on every eligible node, scheduling of
pending pods onto Ready, schedulable, tolerated nodes (spread by owner, then load),
pods starting (Pending -> Running/Ready after ``delays.pod_startup``), graceful deletions
finishing (after min(grace period, ``delays.pod_termination``), once the node's kubelet is
Ready), garbage collection of orphans and of pods bound to vanished nodes, namespace
termination, node taints that follow ``spec.unschedulable`` and readiness, kubelet
restarts (Ready again after ``delays.kubelet_ready``, never for ``never_ready`` nodes),
control-plane mirror pods restarting, and PodDisruptionBudget status. Deadlines live in
the store (``timers``), so they survive a restart.
Must not: know HTTP, or sleep in a request's path.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from upgrader_lab.apiserver import objects as ob
from upgrader_lab.apiserver.resources import BY_KIND
from upgrader_lab.apiserver.selectors import from_label_selector_object, matches
from upgrader_lab.apiserver.spec import LabSpec
from upgrader_lab.apiserver.store import Store

Json = dict[str, Any]
log = logging.getLogger(__name__)

DISRUPTION_TIMEOUT = 120.0
UNSCHEDULABLE_TOLERATION = {
    "key": "node.kubernetes.io/unschedulable",
    "operator": "Exists",
    "effect": "NoSchedule",
}  # PDB controller drops unconfirmed disruptedPods after 2 min


# --------------------------------------------------------------------------- helpers


def tolerates(tolerations: list[Json], taint: Json) -> bool:
    for t in tolerations:
        eff = t.get("effect")
        if eff and eff != taint.get("effect"):
            continue
        op = t.get("operator") or "Equal"
        if op == "Exists":
            if not t.get("key") or t.get("key") == taint.get("key"):
                return True
        elif t.get("key") == taint.get("key") and (t.get("value") or "") == (
            taint.get("value") or ""
        ):
            return True
    return False


def fits(pod_spec: Json, node: Json) -> bool:
    """Taints, unschedulable and nodeSelector, as the scheduler filters them."""
    tol = list(pod_spec.get("tolerations") or [])
    nspec = node.get("spec") or {}
    if nspec.get("unschedulable") and not tolerates(
        tol, {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
    ):
        return False
    for taint in nspec.get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tol, taint):
            return False
    labels = (node.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in (pod_spec.get("nodeSelector") or {}).items())


def is_terminating(obj: Json) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def is_active(pod: Json) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return not is_terminating(pod) and phase not in ("Succeeded", "Failed")


def _owner_uid(obj: Json) -> str | None:
    ref = ob.controller_of(obj)
    return str(ref["uid"]) if ref else None


def _int_or_percent(v: Any, total: int, round_up: bool) -> int:
    if isinstance(v, str) and v.endswith("%"):
        pct = int(v[:-1])
        x = pct * total / 100
        return math.ceil(x) if round_up else math.floor(x)
    return int(v)


# --------------------------------------------------------------------------- PDB status


def pdb_pods(store: Store, pdb: Json) -> list[Json]:
    sel = from_label_selector_object((pdb.get("spec") or {}).get("selector"))
    if not sel:
        return []  # a nil or empty selector matches nothing
    ns = pdb["metadata"].get("namespace", "")
    return [p for p in store.list("pods", ns) if matches(sel, p["metadata"].get("labels"))]


def _expected_scale(store: Store, pods: list[Json]) -> int:
    scales: dict[str, int] = {}
    for p in pods:
        ref = ob.controller_of(p)
        ns = p["metadata"].get("namespace", "")
        if ref is None:
            scales[p["metadata"]["uid"]] = 1
            continue
        if ref.get("kind") == "ReplicaSet":
            rs = store.get("replicasets", ns, str(ref.get("name")))
            if rs is None or rs["metadata"]["uid"] != ref.get("uid"):
                continue
            dref = ob.controller_of(rs)
            if dref is not None and dref.get("kind") == "Deployment":
                d = store.get("deployments", ns, str(dref.get("name")))
                if d is not None and d["metadata"]["uid"] == dref.get("uid"):
                    scales[d["metadata"]["uid"]] = int((d.get("spec") or {}).get("replicas", 1))
                    continue
            scales[rs["metadata"]["uid"]] = int((rs.get("spec") or {}).get("replicas", 1))
        else:
            scales.setdefault(str(ref.get("uid")), 0)
            scales[str(ref.get("uid"))] += 1
    return sum(scales.values())


def compute_pdb_status(store: Store, pdb: Json, now: float) -> Json:
    """The disruption controller's status for ``pdb`` given the pods stored now."""
    spec = pdb.get("spec") or {}
    pods = pdb_pods(store, pdb)
    old = pdb.get("status") or {}
    live = {p["metadata"]["name"]: p for p in pods if not is_terminating(p)}
    disrupted: dict[str, str] = {}
    for name, when in (old.get("disruptedPods") or {}).items():
        try:
            t = ob.parse_ts(str(when))
        except ValueError:
            continue
        if name in live and now - t < DISRUPTION_TIMEOUT:
            disrupted[name] = str(when)
    healthy = sum(1 for n, p in live.items() if n not in disrupted and ob.pod_is_ready(p))
    if spec.get("maxUnavailable") is not None:
        expected = _expected_scale(store, pods)
        max_unavail = _int_or_percent(spec["maxUnavailable"], expected, round_up=True)
        desired = max(0, expected - max_unavail)
    elif isinstance(spec.get("minAvailable"), str):
        expected = _expected_scale(store, pods)
        desired = _int_or_percent(spec["minAvailable"], expected, round_up=True)
    else:
        expected = len(pods)
        desired = int(spec.get("minAvailable", 1) if "minAvailable" in spec else 1)
    allowed = max(0, healthy - desired) if expected > 0 else 0
    st: Json = {
        "observedGeneration": pdb["metadata"].get("generation", 1),
        **ob.pdb_counts(allowed=allowed, healthy=healthy, desired=desired, expected=expected),
    }
    if disrupted:
        st["disruptedPods"] = disrupted
    cond_status = "True" if allowed > 0 else "False"
    prev = next(
        (c for c in old.get("conditions") or [] if c.get("type") == "DisruptionAllowed"), None
    )
    transition = (
        prev["lastTransitionTime"] if prev and prev.get("status") == cond_status else ob.ts(now)
    )
    st["conditions"] = [
        {
            "type": "DisruptionAllowed",
            "status": cond_status,
            "reason": "SufficientPods" if allowed > 0 else "InsufficientPods",
            "message": "",
            "observedGeneration": st["observedGeneration"],
            "lastTransitionTime": transition,
        }
    ]
    return st


def refresh_pdb(store: Store, pdb: Json, now: float) -> Json:
    """Recompute and store ``pdb``'s status if it changed; returns the current object."""
    st = compute_pdb_status(store, pdb, now)
    if st == pdb.get("status"):
        return pdb
    new = dict(pdb, status=st)
    new["metadata"] = dict(pdb["metadata"])
    return store.update("poddisruptionbudgets", new)


# --------------------------------------------------------------------------- pods


def pod_termination_delay(grace: int, spec: LabSpec) -> float:
    """Containers exit after ``delays.pod_termination``; the kubelet kills at the grace period."""
    return min(float(grace), spec.delays.pod_termination)


def begin_pod_deletion(
    store: Store, spec: LabSpec, pod: Json, grace: int | None, now: float
) -> Json | None:
    """Graceful pod deletion (the API's DELETE and eviction). Returns the stored object or
    None when the pod was removed at once."""
    pspec = pod.get("spec") or {}
    g = int(pspec.get("terminationGracePeriodSeconds", 30)) if grace is None else int(grace)
    phase = (pod.get("status") or {}).get("phase")
    m = pod["metadata"]
    if g <= 0 or not pspec.get("nodeName") or phase in ("Succeeded", "Failed"):
        if m.get("finalizers"):
            new = copy.deepcopy(pod)
            new["metadata"].setdefault("deletionTimestamp", ob.ts(now))
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            return store.update("pods", new)
        store.timers.pop(f"pod-gone/{m['uid']}", None)
        store.timers.pop(f"pod-start/{m['uid']}", None)
        store.delete("pods", m.get("namespace", ""), m["name"])
        return None
    if m.get("deletionTimestamp"):
        current = m.get("deletionGracePeriodSeconds", g)
        if g >= int(current):
            return pod
    new = copy.deepcopy(pod)
    new["metadata"]["deletionTimestamp"] = ob.ts(now + g)
    new["metadata"]["deletionGracePeriodSeconds"] = g
    key = f"pod-gone/{m['uid']}"
    due = now + pod_termination_delay(g, spec)
    prev = store.timers.get(key)
    if prev is None or float(prev["at"]) > due:
        store.timers[key] = {"at": due, "namespace": m.get("namespace", ""), "name": m["name"]}
    store.mark_dirty()
    return store.update("pods", new)


# --------------------------------------------------------------------------- controller


class Controller:
    def __init__(self, store: Store, spec: LabSpec, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.spec = spec
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.max_wait = 0.5
        self._index: dict[str, list[Json]] = {}
        self._index_rv = -1

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lab-controller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.store.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.store.wake.clear()
            try:
                delay = self.reconcile()
                self.store.persist()
            except Exception:  # a bug here must not kill the loop silently
                log.exception("controller pass failed")
                delay = self.max_wait
            self.store.wake.wait(max(0.0, min(self.max_wait, delay)))

    def settle(self, passes: int = 20) -> None:
        """Run passes until nothing changes (seeding: pods start at once)."""
        for _ in range(passes):
            before = self.store.rv
            self.reconcile(instant=True)
            if self.store.rv == before:
                return

    # ------------------------------------------------------------------ one pass
    def reconcile(self, instant: bool = False) -> float:
        """One pass over everything; returns seconds until the next deadline."""
        now = self.clock()
        with self.store.lock:
            self._timers(now)
            self._namespaces(now)
            self._garbage_collect(now)
            self._node_taints(now)
            self._deployments(now)
            self._replicasets(now, instant)
            self._daemonsets(now, instant)
            self._schedule(now, instant)
            self._pdbs(now)
            due = [float(t["at"]) for t in self.store.timers.values()]
        if not due:
            return self.max_wait
        return max(0.0, min(due) - self.clock())

    # ------------------------------------------------------------------ timers
    def _timers(self, now: float) -> None:
        st = self.store
        for key, t in sorted(st.timers.items(), key=lambda kv: float(kv[1]["at"])):
            if float(t["at"]) > now:
                continue
            kind, _, ident = key.partition("/")
            if kind == "pod-gone":
                if not self._finish_pod_deletion(ident, t, now):
                    continue  # re-armed: the node's kubelet must confirm it
            elif kind == "pod-start":
                self._start_pod(ident, t, now)
                continue  # _start_pod drops the timer when it is done
            elif kind == "node-ready":
                self._node_ready(ident, t, now)
            elif kind == "mirror-ready":
                self._mirror_ready(t, now)
            st.timers.pop(key, None)
            st.mark_dirty()

    def _finish_pod_deletion(self, uid: str, t: Json, now: float) -> bool:
        """Remove a terminated pod. False (timer re-armed) while the node's kubelet is not
        Ready: as on a real cluster, the pod stays Terminating until the kubelet confirms."""
        pod = self.store.get("pods", str(t["namespace"]), str(t["name"]))
        if pod is None or pod["metadata"]["uid"] != uid:
            return True
        node = self.store.get("nodes", "", str((pod.get("spec") or {}).get("nodeName") or ""))
        if node is not None and ob.node_ready(node) != "True":
            self.store.timers[f"pod-gone/{uid}"] = dict(t, at=now + self.max_wait)
            self.store.mark_dirty()
            return False
        if pod["metadata"].get("finalizers"):
            return True  # stays Terminating until its finalizers are removed
        self.store.delete("pods", str(t["namespace"]), str(t["name"]))
        return True

    def _start_pod(self, uid: str, t: Json, now: float) -> None:
        key = f"pod-start/{uid}"
        pod = self.store.get("pods", str(t["namespace"]), str(t["name"]))
        if pod is None or pod["metadata"]["uid"] != uid or is_terminating(pod):
            self.store.timers.pop(key, None)
            self.store.mark_dirty()
            return
        node = self.store.get("nodes", "", str((pod.get("spec") or {}).get("nodeName") or ""))
        if node is None:
            self.store.timers.pop(key, None)
            self.store.mark_dirty()
            return
        if ob.node_ready(node) != "True":
            # a kubelet that is not ready starts nothing; look again a little later
            self.store.timers[key] = dict(t, at=now + self.max_wait)
            self.store.mark_dirty()
            return
        new = copy.deepcopy(pod)
        new["status"] = ob.running_status(pod, node, now)
        self.store.update("pods", new)
        self.store.timers.pop(key, None)
        self.store.mark_dirty()

    def _node_ready(self, name: str, t: Json, now: float) -> None:
        node = self.store.get("nodes", "", name)
        if node is None:
            return
        new = copy.deepcopy(node)
        info = new["status"].setdefault("nodeInfo", {})
        version = t.get("version")
        if version:
            info["kubeletVersion"] = version
            info["kubeProxyVersion"] = version
        ns = self.spec.node(name)
        ready = "False" if (ns is not None and ns.never_ready) else "True"
        if ready == "True" or version:
            new["status"]["conditions"] = ob.node_conditions(ready, now)
        self.store.update("nodes", new)

    def _mirror_ready(self, t: Json, now: float) -> None:
        pod = self.store.get("pods", str(t["namespace"]), str(t["name"]))
        if pod is None:
            return
        node = self.store.get("nodes", "", str(pod["spec"].get("nodeName", "")))
        if node is None:
            return
        new = copy.deepcopy(pod)
        new["status"] = ob.running_status(pod, node, now)
        new["status"]["qosClass"] = "Burstable"
        self.store.update("pods", new)

    # ------------------------------------------------------------------ namespaces, GC
    def _namespaces(self, now: float) -> None:
        st = self.store
        for ns in st.list("namespaces"):
            if not is_terminating(ns):
                continue
            name = ns["metadata"]["name"]
            remaining = 0
            for rt in BY_KIND.values():
                if not rt.namespaced or rt.plural in ("selfsubjectaccessreviews",):
                    continue
                for obj in st.list(rt.plural, name):
                    remaining += 1
                    if rt.plural == "pods":
                        if not is_terminating(obj):
                            begin_pod_deletion(st, self.spec, obj, None, now)
                    elif not obj["metadata"].get("finalizers"):
                        st.delete(rt.plural, name, obj["metadata"]["name"])
            if remaining == 0:
                st.delete("namespaces", "", name)

    def _garbage_collect(self, now: float) -> None:
        st = self.store
        nodes = {n["metadata"]["name"] for n in st.list("nodes")}
        for pod in st.list("pods"):  # PodGC: pods bound to a node that no longer exists
            bound = (pod.get("spec") or {}).get("nodeName")
            if bound and bound not in nodes:
                st.timers.pop(f"pod-gone/{pod['metadata']['uid']}", None)
                st.timers.pop(f"pod-start/{pod['metadata']['uid']}", None)
                st.delete("pods", pod["metadata"].get("namespace", ""), pod["metadata"]["name"])
        for plural in ("replicasets", "pods"):
            for obj in st.list(plural):
                refs = obj["metadata"].get("ownerReferences") or []
                if not refs:
                    continue
                alive = False
                for r in refs:
                    rt = BY_KIND.get(str(r.get("kind")))
                    if rt is None:
                        alive = True
                        continue
                    ns = obj["metadata"].get("namespace", "") if rt.namespaced else ""
                    owner = st.get(rt.plural, ns, str(r.get("name")))
                    if owner is not None and owner["metadata"]["uid"] == r.get("uid"):
                        alive = True
                if alive:
                    continue
                if plural == "pods":
                    if not is_terminating(obj):
                        begin_pod_deletion(st, self.spec, obj, None, now)
                elif not obj["metadata"].get("finalizers"):
                    st.delete(plural, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])

    # ------------------------------------------------------------------ nodes
    def _node_taints(self, now: float) -> None:
        """TaintNodesByCondition: unschedulable / not-ready / unreachable NoSchedule taints."""
        for node in self.store.list("nodes"):
            spec = node.get("spec") or {}
            taints = list(spec.get("taints") or [])
            wanted: dict[str, bool] = {
                "node.kubernetes.io/unschedulable": bool(spec.get("unschedulable")),
                "node.kubernetes.io/not-ready": ob.node_ready(node) == "False",
                "node.kubernetes.io/unreachable": ob.node_ready(node) == "Unknown",
            }
            new_taints = [
                t
                for t in taints
                if not (
                    t.get("key") in wanted
                    and t.get("effect") == "NoSchedule"
                    and not wanted[t["key"]]
                )
            ]
            have = {t.get("key") for t in new_taints if t.get("effect") == "NoSchedule"}
            for key, want in wanted.items():
                if want and key not in have:
                    new_taints.append({"key": key, "effect": "NoSchedule", "timeAdded": ob.ts(now)})
            if new_taints != taints:
                new = copy.deepcopy(node)
                if new_taints:
                    new["spec"]["taints"] = new_taints
                else:
                    new["spec"].pop("taints", None)
                self.store.update("nodes", new)

    # ------------------------------------------------------------------ deployments
    def _deployments(self, now: float) -> None:
        st = self.store
        for d in st.list("deployments"):
            if is_terminating(d):
                continue
            ns = d["metadata"].get("namespace", "")
            spec = d.get("spec") or {}
            tmpl = copy.deepcopy(spec.get("template") or {})
            thash = ob.template_hash(tmpl)
            owned = [
                rs for rs in st.list("replicasets", ns) if _owner_uid(rs) == d["metadata"]["uid"]
            ]
            current = next(
                (
                    rs
                    for rs in owned
                    if (rs["spec"].get("template", {}).get("metadata", {}).get("labels") or {}).get(
                        "pod-template-hash"
                    )
                    == thash
                ),
                None,
            )
            revision = max(
                [
                    int(
                        (rs["metadata"].get("annotations") or {}).get(
                            "deployment.kubernetes.io/revision", "0"
                        )
                        or 0
                    )
                    for rs in owned
                ]
                or [0]
            )
            replicas = int(spec.get("replicas", 1))
            if current is None:
                revision += 1
                labels = dict((tmpl.get("metadata") or {}).get("labels") or {})
                labels["pod-template-hash"] = thash
                tmpl.setdefault("metadata", {})["labels"] = labels
                sel = copy.deepcopy(spec.get("selector") or {})
                sel.setdefault("matchLabels", {})["pod-template-hash"] = thash
                rs_meta = ob.meta(
                    f"{d['metadata']['name']}-{thash}",
                    ns,
                    now,
                    labels,
                    {
                        "deployment.kubernetes.io/desired-replicas": str(replicas),
                        "deployment.kubernetes.io/max-replicas": str(replicas + 1),
                        "deployment.kubernetes.io/revision": str(revision),
                    },
                )
                rs_meta["generation"] = 1
                rs_meta["ownerReferences"] = [ob.owner_ref("apps/v1", "Deployment", d)]
                if st.get("replicasets", ns, rs_meta["name"]) is not None:
                    continue  # name clash with a foreign ReplicaSet; leave it
                current = st.create(
                    "replicasets",
                    {
                        "metadata": rs_meta,
                        "spec": {
                            "replicas": replicas,
                            "minReadySeconds": 0,
                            "selector": sel,
                            "template": tmpl,
                        },
                        "status": {"replicas": 0},
                    },
                )
                owned.append(current)
            for rs in owned:
                want = replicas if rs is current else 0
                if int(rs["spec"].get("replicas", 1)) != want:
                    new = copy.deepcopy(rs)
                    new["spec"]["replicas"] = want
                    new["metadata"]["generation"] = int(new["metadata"].get("generation", 1)) + 1
                    st.update("replicasets", new)
            self._deployment_status(d, current, owned, revision, now)

    def _deployment_status(
        self, d: Json, current: Json, owned: list[Json], revision: int, now: float
    ) -> None:
        st = self.store
        by_rs = self._active_by_owner()
        total = sum(len(by_rs.get(rs["metadata"]["uid"], [])) for rs in owned)
        updated = len(by_rs.get(current["metadata"]["uid"], []))
        ready = sum(
            1 for rs in owned for p in by_rs.get(rs["metadata"]["uid"], []) if ob.pod_is_ready(p)
        )
        want = int((d.get("spec") or {}).get("replicas", 1))
        status: Json = {
            "observedGeneration": d["metadata"].get("generation", 1),
            "replicas": total,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
        }
        if total - ready > 0:
            status["unavailableReplicas"] = total - ready
        old = d.get("status") or {}
        available = ready >= want - _int_or_percent(
            ((d.get("spec") or {}).get("strategy") or {})
            .get("rollingUpdate", {})
            .get("maxUnavailable", "25%"),
            want,
            round_up=False,
        )
        conds = []
        for ctype, ok, reason, msg in (
            (
                "Available",
                available,
                "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                "Deployment has minimum availability."
                if available
                else "Deployment does not have minimum availability.",
            ),
            (
                "Progressing",
                True,
                "NewReplicaSetAvailable"
                if updated == want and ready >= want
                else "ReplicaSetUpdated",
                f'ReplicaSet "{current["metadata"]["name"]}" has successfully progressed.'
                if updated == want and ready >= want
                else f'ReplicaSet "{current["metadata"]["name"]}" is progressing.',
            ),
        ):
            s = "True" if ok else "False"
            prev = next((c for c in old.get("conditions") or [] if c.get("type") == ctype), None)
            same = prev is not None and prev.get("status") == s and prev.get("reason") == reason
            conds.append(
                {
                    "type": ctype,
                    "status": s,
                    "lastUpdateTime": prev["lastUpdateTime"] if same and prev else ob.ts(now),
                    "lastTransitionTime": prev["lastTransitionTime"]
                    if prev and prev.get("status") == s
                    else ob.ts(now),
                    "reason": reason,
                    "message": msg,
                }
            )
        status["conditions"] = conds
        ann = (d["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision")
        if status != old or ann != str(revision):
            new = copy.deepcopy(d)
            new["status"] = status
            new["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = (
                str(revision)
            )
            st.update("deployments", new)

    # ------------------------------------------------------------------ replicasets
    def _active_by_owner(self) -> dict[str, list[Json]]:
        """Active pods by controller uid (rebuilt when the store moved since last time)."""
        if self._index_rv != self.store.rv:
            index: dict[str, list[Json]] = {}
            for p in self.store.list("pods"):
                u = _owner_uid(p)
                if u and is_active(p):
                    index.setdefault(u, []).append(p)
            self._index = index
            self._index_rv = self.store.rv
        return self._index

    def _replicasets(self, now: float, instant: bool) -> None:
        st = self.store
        for rs in st.list("replicasets"):
            uid = rs["metadata"]["uid"]
            active = list(self._active_by_owner().get(uid, []))
            want = 0 if is_terminating(rs) else int((rs.get("spec") or {}).get("replicas", 1))
            if len(active) < want:
                for _ in range(want - len(active)):
                    self._create_owned_pod(rs, "ReplicaSet", now, instant)
            elif len(active) > want:

                def rank(p: Json) -> tuple[int, int, float]:
                    # unscheduled, then not ready, then the newest go first
                    return (
                        0 if not (p.get("spec") or {}).get("nodeName") else 1,
                        0 if not ob.pod_is_ready(p) else 1,
                        -ob.parse_ts(str(p["metadata"].get("creationTimestamp"))),
                    )

                victims = sorted(active, key=rank)[: len(active) - want]
                for p in victims:
                    begin_pod_deletion(st, self.spec, p, None, now)
            owned = self._active_by_owner().get(uid, [])
            ready = sum(1 for p in owned if ob.pod_is_ready(p))
            status: Json = {
                "replicas": len(owned),
                "fullyLabeledReplicas": len(owned),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "observedGeneration": rs["metadata"].get("generation", 1),
            }
            if status != rs.get("status"):
                new = dict(rs, status=status)
                new["metadata"] = dict(rs["metadata"])
                st.update("replicasets", new)

    def _create_owned_pod(
        self,
        owner: Json,
        kind: str,
        now: float,
        instant: bool,
        node: Json | None = None,
        extra_labels: dict[str, str] | None = None,
    ) -> Json | None:
        st = self.store
        ns = owner["metadata"].get("namespace", "")
        base = owner["metadata"]["name"] + "-"
        for _ in range(10):
            name = base + ob.rand_suffix(5)
            if st.get("pods", ns, name) is None:
                break
        else:
            return None
        tmpl = (owner.get("spec") or {}).get("template") or {}
        pod = ob.pod_from_template(
            tmpl,
            name,
            ns,
            now,
            ob.owner_ref("apps/v1", kind, owner),
            extra_labels,
            generate_name=base,
        )
        if node is not None:
            pod["spec"]["nodeName"] = node["metadata"]["name"]
            if kind == "DaemonSet":
                pod["spec"]["affinity"] = {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchFields": [
                                        {
                                            "key": "metadata.name",
                                            "operator": "In",
                                            "values": [node["metadata"]["name"]],
                                        }
                                    ]
                                }
                            ]
                        }
                    }
                }
            pod["status"] = ob.creating_status(pod, node, now)
        stored = st.create("pods", pod)
        if node is not None:
            self._arm_start(stored, now, instant)
        return stored

    def _arm_start(self, pod: Json, now: float, instant: bool) -> None:
        m = pod["metadata"]
        at = now if instant else now + self.spec.delays.pod_startup
        self.store.timers[f"pod-start/{m['uid']}"] = {
            "at": at,
            "namespace": m.get("namespace", ""),
            "name": m["name"],
        }
        self.store.mark_dirty()
        if instant:
            self._start_pod(m["uid"], self.store.timers[f"pod-start/{m['uid']}"], now)

    # ------------------------------------------------------------------ daemonsets
    def _daemonsets(self, now: float, instant: bool) -> None:
        st = self.store
        nodes = st.list("nodes")
        for ds in st.list("daemonsets"):
            ns = ds["metadata"].get("namespace", "")
            uid = ds["metadata"]["uid"]
            tmpl = (ds.get("spec") or {}).get("template") or {}
            thash = ob.template_hash(tmpl)[:10]
            pspec = copy.deepcopy(tmpl.get("spec") or {})
            tol = list(pspec.get("tolerations") or [])
            tol += [t for t in ob.TOLERATIONS_DAEMON if t not in tol]
            pspec["tolerations"] = tol
            owned = [p for p in st.list("pods", ns) if _owner_uid(p) == uid]
            by_node: dict[str, list[Json]] = {}
            for p in owned:
                by_node.setdefault(str((p.get("spec") or {}).get("nodeName") or ""), []).append(p)
            desired = current = ready = updated = 0
            for node in nodes:
                nname = node["metadata"]["name"]
                on_node = [p for p in by_node.get(nname, []) if is_active(p)]
                eligible = not is_terminating(ds) and fits(
                    {
                        **pspec,
                        "tolerations": [*tol, UNSCHEDULABLE_TOLERATION],
                    },
                    node,
                )
                if not eligible:
                    for p in on_node:
                        begin_pod_deletion(st, self.spec, p, None, now)
                    continue
                desired += 1
                stale = [
                    p
                    for p in on_node
                    if (p["metadata"].get("labels") or {}).get("controller-revision-hash") != thash
                ]
                for p in stale:
                    begin_pod_deletion(st, self.spec, p, None, now)
                fresh = [p for p in on_node if p not in stale]
                if not fresh and not stale:
                    gen = str(ds["metadata"].get("generation", 1))
                    created = self._create_owned_pod(
                        ds,
                        "DaemonSet",
                        now,
                        instant,
                        node,
                        {"controller-revision-hash": thash, "pod-template-generation": gen},
                    )
                    if created is not None:
                        created = st.get("pods", ns, created["metadata"]["name"])
                        fresh = [created] if created else []
                for p in fresh[1:]:
                    begin_pod_deletion(st, self.spec, p, None, now)
                if fresh:
                    current += 1
                    updated += 1
                    if ob.pod_is_ready(fresh[0]):
                        ready += 1
                elif stale:
                    current += 1
            for nname, pods in by_node.items():
                if nname and st.get("nodes", "", nname) is None:
                    for p in pods:
                        if is_active(p):
                            begin_pod_deletion(st, self.spec, p, 0, now)
            status: Json = {
                "currentNumberScheduled": current,
                "numberMisscheduled": 0,
                "desiredNumberScheduled": desired,
                "numberReady": ready,
                "observedGeneration": ds["metadata"].get("generation", 1),
                "updatedNumberScheduled": updated,
                "numberAvailable": ready,
            }
            if desired - ready > 0:
                status["numberUnavailable"] = desired - ready
            cur = st.get("daemonsets", ns, ds["metadata"]["name"])
            if cur is not None and status != cur.get("status"):
                new = dict(cur, status=status)
                new["metadata"] = dict(cur["metadata"])
                st.update("daemonsets", new)

    # ------------------------------------------------------------------ scheduler
    def _schedule(self, now: float, instant: bool) -> None:
        st = self.store
        nodes = st.list("nodes")
        pods = st.list("pods")
        load: dict[str, int] = {}
        owner_load: dict[tuple[str, str], int] = {}
        for p in pods:
            n = (p.get("spec") or {}).get("nodeName")
            if n and is_active(p):
                load[n] = load.get(n, 0) + 1
                ou = _owner_uid(p)
                if ou:
                    owner_load[(ou, n)] = owner_load.get((ou, n), 0) + 1
        for p in pods:
            if not is_active(p):
                continue
            spec = p.get("spec") or {}
            uid = p["metadata"]["uid"]
            if spec.get("nodeName"):
                phase = (p.get("status") or {}).get("phase")
                if phase == "Pending" and f"pod-start/{uid}" not in st.timers:
                    node = st.get("nodes", "", str(spec["nodeName"]))
                    if node is not None:
                        cur = p
                        if not (p.get("status") or {}).get("containerStatuses"):
                            cur = copy.deepcopy(p)
                            cur["status"] = ob.creating_status(p, node, now)
                            cur = st.update("pods", cur)
                        self._arm_start(cur, now, instant)
                continue
            candidates = [n for n in nodes if ob.node_ready(n) == "True" and fits(spec, n)]
            if not candidates:
                self._unschedulable(p, nodes, now)
                continue
            ou = _owner_uid(p) or uid
            best = min(
                candidates,
                key=lambda n: (
                    owner_load.get((ou, n["metadata"]["name"]), 0),
                    load.get(n["metadata"]["name"], 0),
                    n["metadata"]["name"],
                ),
            )
            bname = best["metadata"]["name"]
            load[bname] = load.get(bname, 0) + 1
            owner_load[(ou, bname)] = owner_load.get((ou, bname), 0) + 1
            new = copy.deepcopy(p)
            new["spec"]["nodeName"] = bname
            new["status"] = ob.creating_status(new, best, now)
            stored = st.update("pods", new)
            self._arm_start(stored, now, instant)

    def _unschedulable(self, pod: Json, nodes: list[Json], now: float) -> None:
        unsched = sum(1 for n in nodes if (n.get("spec") or {}).get("unschedulable"))
        notready = sum(1 for n in nodes if ob.node_ready(n) != "True")
        tainted = len(nodes) - unsched - notready
        parts = []
        if tainted > 0:
            parts.append(
                f"{tainted} node(s) had untolerated taint "
                f"{{node-role.kubernetes.io/control-plane: }}"
            )
        if notready:
            parts.append(
                f"{notready} node(s) had untolerated taint {{node.kubernetes.io/not-ready: }}"
            )
        if unsched:
            parts.append(f"{unsched} node(s) were unschedulable")
        msg = (
            f"0/{len(nodes)} nodes are available: " + ", ".join(parts) + ". preemption: "
            f"0/{len(nodes)} nodes are available: {len(nodes)} Preemption is not helpful for "
            "scheduling."
        )
        cond = {
            "type": "PodScheduled",
            "status": "False",
            "lastProbeTime": None,
            "lastTransitionTime": ob.ts(now),
            "reason": "Unschedulable",
            "message": msg,
        }
        old = [
            c
            for c in (pod.get("status") or {}).get("conditions") or []
            if c.get("type") == "PodScheduled"
        ]
        if old and old[0].get("status") == "False" and old[0].get("message") == msg:
            return
        new = copy.deepcopy(pod)
        new["status"]["conditions"] = [cond]
        self.store.update("pods", new)

    # ------------------------------------------------------------------ PDBs
    def _pdbs(self, now: float) -> None:
        for pdb in self.store.list("poddisruptionbudgets"):
            refresh_pdb(self.store, pdb, now)
