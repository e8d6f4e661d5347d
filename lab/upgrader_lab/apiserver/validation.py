"""Admission for the lab API server: defaulting and validation of submitted objects.

Owns what the real server's strategies do on create/update for the kinds served: name
rules, required fields, selector/template agreement, immutable fields, defaults (pod
spec, Deployment strategy, ...), and which errors come back as 422 ``Invalid`` with
field causes. Pure; must not touch the store or do I/O.
"""

from __future__ import annotations

import re
from typing import Any

from upgrader_lab.apiserver import objects as ob
from upgrader_lab.apiserver.resources import ResourceType
from upgrader_lab.apiserver.selectors import from_label_selector_object, matches
from upgrader_lab.apiserver.status import FieldError

Json = dict[str, Any]

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUB = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUALIFIED = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)


def validate_name(rt: ResourceType, name: str) -> list[FieldError]:
    if rt.plural == "namespaces":
        if len(name) > 63 or not _DNS1123_LABEL.match(name):
            return [FieldError("Invalid value", "metadata.name", LABEL_MSG, name)]
        return []
    if len(name) > 253 or not _DNS1123_SUB.match(name):
        return [FieldError("Invalid value", "metadata.name", SUBDOMAIN_MSG, name)]
    return []


def _validate_labels(labels: Any, field: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if labels is None:
        return errs
    if not isinstance(labels, dict):
        return [FieldError("Invalid value", field, "must be a map of strings", str(labels))]
    for k, v in labels.items():
        key = str(k).split("/", 1)[-1]
        if not key or len(key) > 63 or not _QUALIFIED.match(key):
            errs.append(
                FieldError(
                    "Invalid value",
                    field,
                    "name part must consist of alphanumeric characters, '-', '_' or '.', and "
                    "must start and end with an alphanumeric character",
                    k,
                )
            )
        if not isinstance(v, str) or len(v) > 63 or not _LABEL_VALUE.match(v):
            errs.append(
                FieldError(
                    "Invalid value",
                    f"{field}",
                    "a valid label must be an empty string or consist of alphanumeric "
                    "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                    "character",
                    v,
                )
            )
    return errs


def _containers(spec: Any, field: str) -> list[FieldError]:
    if not isinstance(spec, dict):
        return [FieldError("Required value", field, "")]
    cs = spec.get("containers")
    if not isinstance(cs, list) or not cs:
        return [FieldError("Required value", f"{field}.containers", "")]
    errs: list[FieldError] = []
    seen: set[str] = set()
    for i, c in enumerate(cs):
        p = f"{field}.containers[{i}]"
        if not isinstance(c, dict):
            errs.append(FieldError("Invalid value", p, "must be an object", str(c)))
            continue
        name = c.get("name")
        if not name:
            errs.append(FieldError("Required value", f"{p}.name", ""))
        elif not isinstance(name, str) or not _DNS1123_LABEL.match(name):
            errs.append(FieldError("Invalid value", f"{p}.name", LABEL_MSG, name))
        elif name in seen:
            errs.append(FieldError("Duplicate value", f"{p}.name", f'"{name}"'))
        else:
            seen.add(name)
        if not c.get("image"):
            errs.append(FieldError("Required value", f"{p}.image", ""))
    return errs


def _workload(obj: Json, replicas: bool) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [FieldError("Required value", "spec", "")]
    errs: list[FieldError] = []
    if replicas:
        r = spec.get("replicas", 1)
        if not isinstance(r, int) or isinstance(r, bool) or r < 0:
            errs.append(
                FieldError(
                    "Invalid value", "spec.replicas", "must be greater than or equal to 0", r
                )
            )
    sel = spec.get("selector")
    tmpl = spec.get("template") or {}
    tlabels = ((tmpl.get("metadata") or {}).get("labels")) if isinstance(tmpl, dict) else None
    if not sel:
        errs.append(FieldError("Required value", "spec.selector", ""))
    else:
        reqs = from_label_selector_object(sel)
        if reqs is None:
            errs.append(
                FieldError("Invalid value", "spec.selector", "invalid label selector", str(sel))
            )
        elif not reqs:
            errs.append(
                FieldError(
                    "Invalid value",
                    "spec.selector",
                    "empty selector is invalid for deployment",
                    "{}",
                )
            )
        elif not matches(reqs, tlabels or {}):
            errs.append(
                FieldError(
                    "Invalid value",
                    "spec.template.metadata.labels",
                    "`selector` does not match template `labels`",
                    _go_map(tlabels or {}),
                )
            )
    errs += _validate_labels(tlabels, "spec.template.metadata.labels")
    errs += _containers(tmpl.get("spec") if isinstance(tmpl, dict) else None, "spec.template.spec")
    return errs


def _go_map(d: dict[str, Any]) -> str:
    inner = ", ".join(f'"{k}":"{v}"' for k, v in sorted(d.items()))
    return "map[string]string{" + inner + "}"


def _pdb(obj: Json) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [FieldError("Required value", "spec", "")]
    errs: list[FieldError] = []
    if "minAvailable" in spec and "maxUnavailable" in spec:
        errs.append(
            FieldError(
                "Invalid value",
                "spec",
                "minAvailable and maxUnavailable cannot be both set",
                "policy.PodDisruptionBudgetSpec",
            )
        )
    for f in ("minAvailable", "maxUnavailable"):
        v = spec.get(f)
        if v is None:
            continue
        if isinstance(v, bool) or not (
            (isinstance(v, int) and v >= 0) or (isinstance(v, str) and re.fullmatch(r"\d+%", v))
        ):
            errs.append(
                FieldError("Invalid value", f"spec.{f}", "must be greater than or equal to 0", v)
            )
    if spec.get("selector") is not None and from_label_selector_object(spec["selector"]) is None:
        errs.append(
            FieldError(
                "Invalid value", "spec.selector", "invalid label selector", str(spec["selector"])
            )
        )
    return errs


def _lease(obj: Json) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errs: list[FieldError] = []
    if not isinstance(spec, dict):
        return [FieldError("Invalid value", "spec", "must be an object", str(spec))]
    for f in ("leaseDurationSeconds", "leaseTransitions"):
        v = spec.get(f)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            errs.append(FieldError("Invalid value", f"spec.{f}", "must be an integer", v))
    d = spec.get("leaseDurationSeconds")
    if isinstance(d, int) and not isinstance(d, bool) and d <= 0:
        errs.append(
            FieldError("Invalid value", "spec.leaseDurationSeconds", "must be greater than 0", d)
        )
    t = spec.get("leaseTransitions")
    if isinstance(t, int) and not isinstance(t, bool) and t < 0:
        errs.append(
            FieldError(
                "Invalid value", "spec.leaseTransitions", "must be greater than or equal to 0", t
            )
        )
    for f in ("acquireTime", "renewTime"):
        v = spec.get(f)
        if v is not None and not isinstance(v, str):
            errs.append(FieldError("Invalid value", f"spec.{f}", "must be a RFC3339 micro time", v))
    return errs


def _configmap(obj: Json) -> list[FieldError]:
    errs: list[FieldError] = []
    for f in ("data", "binaryData"):
        d = obj.get(f)
        if d is None:
            continue
        if not isinstance(d, dict):
            errs.append(FieldError("Invalid value", f, "must be a map", str(d)))
            continue
        for k, v in d.items():
            if not re.fullmatch(r"[-._a-zA-Z0-9]+", str(k)):
                errs.append(
                    FieldError(
                        "Invalid value",
                        f"{f}[{k}]",
                        "a valid config key must consist of alphanumeric characters, '-', '_' or "
                        "'.'",
                        k,
                    )
                )
            if f == "data" and not isinstance(v, str):
                errs.append(FieldError("Invalid value", f"{f}[{k}]", "must be a string", v))
    return errs


def validate(rt: ResourceType, obj: Json) -> list[FieldError]:
    """Validation on create and update (the object after defaulting)."""
    m = obj.get("metadata") or {}
    errs = _validate_labels(m.get("labels"), "metadata.labels")
    if rt.plural == "deployments" or rt.plural == "replicasets":
        errs += _workload(obj, replicas=True)
    elif rt.plural == "daemonsets":
        errs += _workload(obj, replicas=False)
    elif rt.plural == "poddisruptionbudgets":
        errs += _pdb(obj)
    elif rt.plural == "leases":
        errs += _lease(obj)
    elif rt.plural == "configmaps":
        errs += _configmap(obj)
    elif rt.plural == "pods":
        errs += _containers(obj.get("spec"), "spec")
    return errs


def validate_update(rt: ResourceType, old: Json, new: Json) -> list[FieldError]:
    errs = validate(rt, new)
    if rt.plural in ("deployments", "replicasets", "daemonsets") and (
        (old.get("spec") or {}).get("selector") != (new.get("spec") or {}).get("selector")
    ):
        errs.append(
            FieldError("Invalid value", "spec.selector", "field is immutable", _sel_repr(new))
        )
    if rt.plural == "pods":
        errs += _pod_update(old, new)
    return errs


def _sel_repr(obj: Json) -> str:
    sel = (obj.get("spec") or {}).get("selector") or {}
    return "v1.LabelSelector{MatchLabels:" + _go_map(sel.get("matchLabels") or {}) + "}"


def _pod_update(old: Json, new: Json) -> list[FieldError]:
    """Pod spec is immutable except images, activeDeadlineSeconds and added tolerations."""
    o = dict(old.get("spec") or {})
    n = dict(new.get("spec") or {})
    for spec in (o, n):
        spec.pop("activeDeadlineSeconds", None)
        spec.pop("tolerations", None)
        spec["containers"] = [
            {k: v for k, v in c.items() if k != "image"} for c in spec.get("containers") or []
        ]
    if o != n:
        return [
            FieldError(
                "Forbidden",
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`,"
                "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
                "`spec.tolerations` (only additions to existing tolerations),"
                "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
                "previously negative)",
            )
        ]
    return []


def default_on_create(rt: ResourceType, obj: Json) -> Json:
    """Server-side defaults and status resets of a create (the object is already a copy)."""
    spec = obj.get("spec")
    if rt.plural == "pods" and isinstance(spec, dict):
        obj["spec"] = ob.default_pod_spec(spec)
        obj["status"] = ob.pending_status(0, scheduled=False)
        obj["status"].pop("conditions", None)
    elif rt.plural == "deployments" and isinstance(spec, dict):
        ob.default_deployment_spec(spec)
        obj["status"] = {}
    elif rt.plural == "replicasets" and isinstance(spec, dict):
        ob.default_replicaset_spec(spec)
        obj["status"] = {"replicas": 0}
    elif rt.plural == "daemonsets" and isinstance(spec, dict):
        ob.default_daemonset_spec(spec)
        obj["status"] = {
            "currentNumberScheduled": 0,
            "numberMisscheduled": 0,
            "desiredNumberScheduled": 0,
            "numberReady": 0,
        }
    elif rt.plural == "poddisruptionbudgets":
        obj["status"] = ob.pdb_counts(allowed=0, healthy=0, desired=0, expected=0)
    elif rt.plural == "namespaces":
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj["status"] = {"phase": "Active"}
        labels = obj["metadata"].setdefault("labels", {})
        labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    return obj
