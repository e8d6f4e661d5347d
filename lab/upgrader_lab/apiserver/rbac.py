"""Authorization of the lab's admin identity against the spec's ``rbac.allow`` rules.

Owns the decision "may the admin token do VERB on GROUP/RESOURCE[/SUB] NAME in NS", used
both to refuse requests (403) and to answer SelfSubjectAccessReview/RulesReview. ``None``
rules mean everything is allowed (a cluster-admin). Pure; must not do I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from upgrader_lab.apiserver.spec import RbacRule

Json = dict[str, Any]


@dataclass(frozen=True)
class Attributes:
    verb: str
    group: str
    resource: str
    subresource: str = ""
    namespace: str = ""
    name: str = ""


def _resource_matches(rule_res: str, resource: str, sub: str) -> bool:
    full = f"{resource}/{sub}" if sub else resource
    if rule_res == "*":
        return True
    if rule_res == full:
        return True
    return bool(sub) and rule_res == f"*/{sub}"


def allowed(rules: tuple[RbacRule, ...] | None, a: Attributes) -> bool:
    if rules is None:
        return True
    for r in rules:
        if not ("*" in r.verbs or a.verb in r.verbs or (a.verb == "*" and not r.verbs)):
            continue
        if not ("*" in r.groups or a.group in r.groups):
            continue
        if not any(_resource_matches(x, a.resource, a.subresource) for x in r.resources):
            continue
        if r.namespaces and a.namespace not in r.namespaces:
            continue
        if r.resource_names and (not a.name or a.name not in r.resource_names):
            continue
        return True
    return False


def reason(rules: tuple[RbacRule, ...] | None, ok: bool) -> str:
    if rules is None:
        return (
            'RBAC: allowed by ClusterRoleBinding "cluster-admin" of ClusterRole '
            '"cluster-admin" to Group "system:masters"'
        )
    if ok:
        return (
            'RBAC: allowed by ClusterRoleBinding "lab-admin" of ClusterRole "lab-admin" '
            'to User "lab-admin"'
        )
    return ""


def resource_rules(rules: tuple[RbacRule, ...] | None, namespace: str) -> list[Json]:
    if rules is None:
        return [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]
    out: list[Json] = [
        {
            "verbs": ["create"],
            "apiGroups": ["authorization.k8s.io"],
            "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
        },
        {
            "verbs": ["create"],
            "apiGroups": ["authentication.k8s.io"],
            "resources": ["selfsubjectreviews"],
        },
    ]
    for r in rules:
        if r.namespaces and namespace not in r.namespaces:
            continue
        d: Json = {
            "verbs": list(r.verbs),
            "apiGroups": list(r.groups),
            "resources": list(r.resources),
        }
        if r.resource_names:
            d["resourceNames"] = list(r.resource_names)
        out.append(d)
    return out


def non_resource_rules(rules: tuple[RbacRule, ...] | None) -> list[Json]:
    if rules is None:
        return [{"verbs": ["*"], "nonResourceURLs": ["*"]}]
    return [
        {
            "verbs": ["get"],
            "nonResourceURLs": [
                "/api",
                "/api/*",
                "/apis",
                "/apis/*",
                "/healthz",
                "/livez",
                "/openapi",
                "/openapi/*",
                "/readyz",
                "/version",
                "/version/",
            ],
        }
    ]
