"""Which pods a drain evicts, skips or refuses, and which PodDisruptionBudgets hold them.

Owns the pure half of draining a node, matching ``kubectl drain``'s filters
(``staging/src/k8s.io/kubectl/pkg/drain/filters.go``) in the same order: pods deleted
long ago (opt-in), DaemonSet-managed pods, mirror pods, pods with emptyDir volumes,
pods without a controller; finished pods (phase Succeeded/Failed) pass the DaemonSet,
local-storage and controller checks. Also the PodDisruptionBudget selector matching the
eviction subresource uses, and the "what still blocks the drain" report. And the drain fallback's
pure half (``--drain-fallback delete``): which setting applies to a node, which budgets a
deletion overrides, how long to wait for the deleted pods.

Works on plain pod/PDB dicts in their API JSON form (camelCase keys, as the API returns
them or as ``ApiClient.sanitize_for_serialization`` renders them).

Must not: do I/O, or import paramiko, kubernetes, typer or rich.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from upgrader.core.timestamps import parse_rfc3339

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
FINISHED_PHASES = ("Succeeded", "Failed")

# kubectl's messages (errors are "cannot delete <fatal>: ns/a, ns/b")
DAEMONSET_FATAL = "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)"
DAEMONSET_WARNING = "ignoring DaemonSet-managed Pods"
LOCAL_STORAGE_FATAL = (
    "cannot delete Pods with local storage (use --delete-emptydir-data to override)"
)
LOCAL_STORAGE_WARNING = "deleting Pods with local storage"
UNMANAGED_FATAL = "cannot delete Pods that declare no controller (use --force to override)"
UNMANAGED_WARNING = "deleting Pods that declare no controller"
MIRROR_SKIP = "mirror pod (managed by the kubelet)"
DELETED_SKIP = "DeletionTimestamp older than the skip-wait-for-delete timeout"
MULTIPLE_PDBS = (
    "This pod has more than one PodDisruptionBudget, which the eviction subresource "
    "does not support."
)

Pod = Mapping[str, Any]


def pod_key(pod: Pod) -> str:
    """``namespace/name``."""
    md = pod.get("metadata") or {}
    return f"{md.get('namespace') or 'default'}/{md.get('name')}"


def pod_uid(pod: Pod) -> str | None:
    uid = (pod.get("metadata") or {}).get("uid")
    return str(uid) if uid is not None else None


def controller_of(obj: Pod) -> Mapping[str, Any] | None:
    """The ownerReference with ``controller: true`` (``metav1.GetControllerOf``)."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return ref
    return None


def is_mirror(pod: Pod) -> bool:
    return MIRROR_ANNOTATION in ((pod.get("metadata") or {}).get("annotations") or {})


def is_finished(pod: Pod) -> bool:
    return (pod.get("status") or {}).get("phase") in FINISHED_PHASES


def has_local_storage(pod: Pod) -> bool:
    return any(
        isinstance(v, Mapping) and v.get("emptyDir") is not None
        for v in (pod.get("spec") or {}).get("volumes") or ()
    )


@dataclass(frozen=True)
class PodDecision:
    """One pod and why it lands where it does (``reasons``: kubectl's message(s))."""

    pod: Pod
    reasons: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return pod_key(self.pod)

    @property
    def namespace(self) -> str:
        return str((self.pod.get("metadata") or {}).get("namespace") or "default")

    @property
    def name(self) -> str:
        return str((self.pod.get("metadata") or {}).get("name"))

    @property
    def uid(self) -> str | None:
        return pod_uid(self.pod)

    @property
    def reason(self) -> str | None:
        return self.reasons[0] if self.reasons else None


def _group(decisions: Iterable[PodDecision]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for d in decisions:
        for r in d.reasons:
            out.setdefault(r, []).append(d.key)
    return out


@dataclass(frozen=True)
class DrainSelection:
    """The outcome of :func:`classify_pods` for one node."""

    node: str
    to_evict: tuple[PodDecision, ...]  # reasons: kubectl's warning, if any
    skipped: tuple[PodDecision, ...]  # mirror / DaemonSet / long-deleted
    refused: tuple[PodDecision, ...]  # what stops the drain before anything is evicted

    @property
    def ok(self) -> bool:
        return not self.refused

    def errors(self) -> list[str]:
        """kubectl's form: ``<message>: ns/a, ns/b``, one per distinct reason."""
        return [f"{msg}: {', '.join(pods)}" for msg, pods in _group(self.refused).items()]

    def warnings(self) -> list[str]:
        return [
            f"{msg}: {', '.join(pods)}"
            for msg, pods in _group([*self.to_evict, *self.skipped]).items()
            if msg not in (MIRROR_SKIP,)
        ]

    def error_message(self) -> str:
        """One line naming every refused pod (empty when nothing is refused)."""
        if not self.refused:
            return ""
        return f"cannot drain node {self.node}: " + "; ".join(self.errors())


def classify_pods(
    pods: Iterable[Pod],
    *,
    node: str,
    delete_emptydir_data: bool = False,
    force: bool = False,
    ignore_daemonsets: bool = True,
    missing_daemonsets: Collection[tuple[str, str]] = (),
    skip_wait_for_delete_timeout: int = 0,
    now: datetime | None = None,
) -> DrainSelection:
    """Split ``pods`` (the node's pods) like ``kubectl drain`` does.

    ``missing_daemonsets``: (namespace, name) of DaemonSets that pods name as controller
    but that no longer exist (kubectl looks each up): such orphans are deleted with
    ``force`` and refused without it. ``skip_wait_for_delete_timeout`` > 0 skips pods whose
    deletionTimestamp is older than that many seconds before ``now``.

    Where kubectl stops at the first refusal of a pod, we keep checking the refusal
    filters, so that one run names every flag needed; which pods are evicted, skipped or
    refused is the same.
    """
    filters = _Filters(
        set(missing_daemonsets),
        delete_emptydir_data,
        force,
        ignore_daemonsets,
        skip_wait_for_delete_timeout,
        now,
    )
    out: dict[str, list[PodDecision]] = {"evict": [], "skip": [], "refuse": []}
    for pod in pods:
        verdict, decision = filters.decide(pod)
        out[verdict].append(decision)
    return DrainSelection(node, tuple(out["evict"]), tuple(out["skip"]), tuple(out["refuse"]))


@dataclass(frozen=True)
class _Filters:
    """kubectl drain's pod filters, with the flags given (see :func:`classify_pods`)."""

    missing: Collection[tuple[str, str]]
    delete_emptydir_data: bool
    force: bool
    ignore_daemonsets: bool
    skip_wait_for_delete_timeout: int
    now: datetime | None

    def decide(self, pod: Pod) -> tuple[str, PodDecision]:
        """``evict``, ``skip`` or ``refuse``, with the reasons."""
        md = pod.get("metadata") or {}
        ns = str(md.get("namespace") or "default")
        finished = is_finished(pod)

        # skipDeletedFilter
        if self.skip_wait_for_delete_timeout > 0 and self.now is not None:
            deleted = parse_rfc3339(md.get("deletionTimestamp"))
            if deleted is not None and (self.now - deleted).total_seconds() > (
                self.skip_wait_for_delete_timeout
            ):
                return "skip", PodDecision(pod, (DELETED_SKIP,))

        errors: list[str] = []
        warning: str | None = None

        # daemonSetFilter
        ctrl = controller_of(pod)
        if ctrl is not None and ctrl.get("kind") == "DaemonSet" and not finished:
            ds = str(ctrl.get("name"))
            if (ns, ds) in self.missing:
                if self.force:
                    warning = f'daemonsets.apps "{ds}" not found'
                else:
                    errors.append(f'cannot delete daemonsets.apps "{ds}" not found')
            elif not self.ignore_daemonsets:
                errors.append(DAEMONSET_FATAL)
            else:
                return "skip", PodDecision(pod, (DAEMONSET_WARNING,))

        # mirrorPodFilter
        if not errors and is_mirror(pod):
            return "skip", PodDecision(pod, (MIRROR_SKIP,))

        # localStorageFilter
        if has_local_storage(pod) and not finished:
            if self.delete_emptydir_data:
                warning = LOCAL_STORAGE_WARNING
            else:
                errors.append(LOCAL_STORAGE_FATAL)

        # unreplicatedFilter
        if not finished and ctrl is None:
            if self.force:
                warning = UNMANAGED_WARNING
            else:
                errors.append(UNMANAGED_FATAL)

        if errors:
            return "refuse", PodDecision(pod, tuple(errors))
        return "evict", PodDecision(pod, (warning,) if warning else ())


# --------------------------------------------------------------------------- PDBs


def _requirement_matches(expr: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key = expr.get("key")
    op = expr.get("operator")
    values = expr.get("values") or []
    if not isinstance(key, str):
        raise ValueError("matchExpressions entry without a key")
    if op == "In":
        if not values:
            raise ValueError(f"{key}: operator In needs values")
        return key in labels and labels[key] in values
    if op == "NotIn":
        if not values:
            raise ValueError(f"{key}: operator NotIn needs values")
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    raise ValueError(f"{key}: unknown operator {op!r}")


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """``metav1.LabelSelectorAsSelector(sel).Matches(labels)``: a missing selector matches
    nothing, an empty one everything; an invalid one matches nothing (as the eviction
    subresource treats it)."""
    if selector is None:
        return False
    try:
        for k, v in (selector.get("matchLabels") or {}).items():
            if labels.get(k) != v:
                return False
        for expr in selector.get("matchExpressions") or ():
            if not _requirement_matches(expr, labels):
                return False
    except (ValueError, AttributeError, TypeError):
        return False
    return True


def pdbs_for_pod(pod: Pod, pdbs: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The PodDisruptionBudgets (policy/v1) of the pod's namespace whose selector matches
    the pod's labels — what the eviction subresource consults."""
    md = pod.get("metadata") or {}
    ns = md.get("namespace") or "default"
    labels = {str(k): str(v) for k, v in (md.get("labels") or {}).items()}
    out = []
    for pdb in pdbs:
        pmd = pdb.get("metadata") or {}
        if (pmd.get("namespace") or "default") != ns:
            continue
        if selector_matches((pdb.get("spec") or {}).get("selector"), labels):
            out.append(pdb)
    return out


def describe_pdb(pdb: Mapping[str, Any]) -> str:
    """``PodDisruptionBudget default/web (maxUnavailable 1; 2/3 healthy, 0 disruptions
    allowed)``."""
    md = pdb.get("metadata") or {}
    spec = pdb.get("spec") or {}
    st = pdb.get("status") or {}
    rule = []
    for k in ("minAvailable", "maxUnavailable"):
        if spec.get(k) is not None:
            rule.append(f"{k} {spec[k]}")
    facts = []
    if st.get("currentHealthy") is not None and st.get("desiredHealthy") is not None:
        facts.append(f"{st['currentHealthy']} healthy, {st['desiredHealthy']} needed")
    if st.get("disruptionsAllowed") is not None:
        facts.append(f"{st['disruptionsAllowed']} disruptions allowed")
    inner = "; ".join(x for x in (", ".join(rule), ", ".join(facts)) if x)
    name = f"{md.get('namespace') or 'default'}/{md.get('name')}"
    return f"PodDisruptionBudget {name}" + (f" ({inner})" if inner else "")


def blocked_report(
    remaining_pods: Sequence[Pod],
    pdbs: Iterable[Mapping[str, Any]],
    last_errors: Mapping[str, str] | None = None,
) -> list[str]:
    """One line per pod still on the node: what holds it. ``last_errors`` maps
    ``ns/name`` to the last eviction error seen for it (e.g. the 429's message)."""
    pdbs = list(pdbs)
    last_errors = last_errors or {}
    lines = []
    for pod in remaining_pods:
        key = pod_key(pod)
        matched = pdbs_for_pod(pod, pdbs)
        md = pod.get("metadata") or {}
        if len(matched) > 1:
            why = "matched by several PodDisruptionBudgets, which eviction does not support: " + (
                ", ".join(describe_pdb(p) for p in matched)
            )
        elif matched:
            why = "blocked by " + describe_pdb(matched[0])
        elif md.get("deletionTimestamp"):
            grace = md.get("deletionGracePeriodSeconds")
            g = f", grace period {grace}s" if grace is not None else ""
            why = f"still terminating (deletion requested at {md['deletionTimestamp']}{g})"
        else:
            why = "no PodDisruptionBudget matches it"
        err = last_errors.get(key)
        lines.append(f"{key}: {why}" + (f"; last eviction error: {err}" if err else ""))
    return lines


# --------------------------------------------------------------------------- fallback

FALLBACK_NONE = "none"  # fail after the drain timeout (kubectl drain's behaviour)
FALLBACK_DELETE = "delete"  # delete the pods a budget still refuses, then wait for them
DRAIN_FALLBACKS = (FALLBACK_NONE, FALLBACK_DELETE)
DEFAULT_GRACE = 30  # the API server's default terminationGracePeriodSeconds
FALLBACK_WAIT_MARGIN = 30.0  # seconds beyond the longest grace period of the deleted pods


def check_fallback(value: object) -> str:
    """``none`` or ``delete``; raises ValueError naming the allowed values."""
    if value not in DRAIN_FALLBACKS:
        raise ValueError(f"{value!r} is not a drain fallback (expected none or delete)")
    return str(value)


def effective(node_value: str | None, flag_value: str | None, inventory_value: str | None,
              default: str) -> str:  # fmt: skip
    """The setting of one node: its own inventory value, else the command-line flag, else
    the inventory-wide value, else ``default``."""
    for v in (node_value, flag_value, inventory_value):
        if v is not None:
            return v
    return default


def grace_of(pod: Pod) -> int:
    g = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
    return int(g) if isinstance(g, int) and g >= 0 else DEFAULT_GRACE


def fallback_wait_seconds(pods: Iterable[Pod], margin: float = FALLBACK_WAIT_MARGIN) -> float:
    """How long to wait for pods deleted by the fallback: their longest own grace period
    (a plain DELETE uses it) plus ``margin``."""
    return max((grace_of(p) for p in pods), default=0) + margin


def overridden_budgets(pods: Iterable[Pod], pdbs: Iterable[Mapping[str, Any]]) -> list[str]:
    """``ns/name`` of each PodDisruptionBudget that matches one of ``pods`` (sorted)."""
    pdbs = list(pdbs)
    out: set[str] = set()
    for pod in pods:
        for b in pdbs_for_pod(pod, pdbs):
            md = b.get("metadata") or {}
            out.add(f"{md.get('namespace') or 'default'}/{md.get('name')}")
    return sorted(out)


def fallback_text(pods: Sequence[str], budgets: Sequence[str]) -> str:
    """One line: what the fallback deleted and which budgets it overrode."""
    held = f" (overriding PodDisruptionBudget {', '.join(budgets)})" if budgets else ""
    return f"drain fallback: deleted pod(s) {', '.join(pods)}{held}"
