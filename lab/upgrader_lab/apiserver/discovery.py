"""Discovery and OpenAPI documents, derived from the resource table.

Owns ``/api``, ``/api/v1``, ``/apis``, ``/apis/<group>[/<version>]`` (legacy documents and
the aggregated ``apidiscovery.k8s.io`` v2/v2beta1 lists kubectl asks for), ``/version``,
a minimal ``/openapi/v2`` and a minimal ``/openapi/v3`` (index + one document per
group-version whose PATCH operations declare ``fieldValidation``, which is what
``kubectl apply``'s validation looks for). Pure; must not do I/O.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from upgrader.core.versions import KubeVersion
from upgrader_lab.apiserver.resources import RESOURCES, ResourceType, group_versions

Json = dict[str, Any]

AGG_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGG_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"

# Build metadata per minor, as the real release binaries report it.
_GO_BY_MINOR = {
    25: "go1.19.13",
    26: "go1.20.10",
    27: "go1.20.11",
    28: "go1.20.11",
    29: "go1.21.5",
    30: "go1.22.2",
    31: "go1.22.5",
    32: "go1.23.3",
    33: "go1.24.2",
    34: "go1.24.6",
}


def version_info(git_version: str) -> Json:
    v = KubeVersion.parse(git_version)
    commit = hashlib.sha1(git_version.encode(), usedforsecurity=False).hexdigest()
    info: Json = {
        "major": str(v.major),
        "minor": str(v.minor),
    }
    if v.minor >= 33:
        info["emulationMajor"] = str(v.major)
        info["emulationMinor"] = str(v.minor)
        info["minCompatibilityMajor"] = str(v.major)
        info["minCompatibilityMinor"] = str(v.minor - 1)
    info.update(
        {
            "gitVersion": git_version,
            "gitCommit": commit,
            "gitTreeState": "clean",
            "buildDate": "2024-01-17T13:38:41Z",
            "goVersion": _GO_BY_MINOR.get(v.minor, "go1.22.2"),
            "compiler": "gc",
            "platform": "linux/amd64",
        }
    )
    return info


# --------------------------------------------------------------------------- legacy


def api_versions(server_address: str) -> Json:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _gv(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def _groups() -> list[str]:
    out: list[str] = []
    for g, _ in group_versions():
        if g and g not in out:
            out.append(g)
    return out


def _versions_of(group: str) -> list[str]:
    return [v for g, v in group_versions() if g == group]


def api_group(group: str) -> Json:
    versions = [{"groupVersion": _gv(group, v), "version": v} for v in _versions_of(group)]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": versions,
        "preferredVersion": versions[0],
    }


def api_group_list() -> Json:
    groups = []
    for g in _groups():
        d = api_group(g)
        d.pop("kind")
        d.pop("apiVersion")
        groups.append(d)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def _storage_hash(r: ResourceType) -> str:
    import base64

    digest = hashlib.sha256(f"{r.group}/{r.version}/{r.kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def _names_and_categories(r: ResourceType) -> Json:
    """The ``shortNames`` and ``categories`` of ``r`` that it has (both discovery forms)."""
    d: Json = {}
    if r.short_names:
        d["shortNames"] = list(r.short_names)
    if r.categories:
        d["categories"] = list(r.categories)
    return d


def api_resource_list(group: str, version: str) -> Json | None:
    items: list[Json] = []
    for r in RESOURCES:
        if r.group != group or r.version != version:
            continue
        d: Json = {
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": list(r.verbs),
            **_names_and_categories(r),
        }
        if "get" in r.verbs:
            d["storageVersionHash"] = _storage_hash(r)
        items.append(d)
        for s in r.subresources:
            sd: Json = {
                "name": f"{r.plural}/{s.name}",
                "singularName": "",
                "namespaced": r.namespaced,
            }
            if (s.group, s.version) != (r.group, r.version):
                sd["group"] = s.group
                sd["version"] = s.version
            sd["kind"] = s.kind
            sd["verbs"] = list(s.verbs)
            items.append(sd)
    if not items:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": _gv(group, version),
        "resources": items,
    }


# --------------------------------------------------------------------------- aggregated


def _agg_resource(r: ResourceType) -> Json:
    d: Json = {
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": "Namespaced" if r.namespaced else "Cluster",
        "singularResource": r.singular,
        "verbs": list(r.verbs),
        **_names_and_categories(r),
    }
    if r.subresources:
        d["subresources"] = [
            {
                "subresource": s.name,
                "responseKind": {"group": s.group, "version": s.version, "kind": s.kind},
                "verbs": list(s.verbs),
            }
            for s in r.subresources
        ]
    return d


def _agg_group(group: str) -> Json:
    versions = []
    for v in _versions_of(group):
        versions.append(
            {
                "version": v,
                "resources": [
                    _agg_resource(r) for r in RESOURCES if r.group == group and r.version == v
                ],
                "freshness": "Current",
            }
        )
    meta: Json = {"creationTimestamp": None}
    if group:
        meta["name"] = group
    return {"metadata": meta, "versions": versions}


def aggregated(legacy: bool, version: str) -> Json:
    """APIGroupDiscoveryList for ``/api`` (legacy=True) or ``/apis``."""
    items = [_agg_group("")] if legacy else [_agg_group(g) for g in _groups()]
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"apidiscovery.k8s.io/{version}",
        "metadata": {},
        "items": items,
    }


def parse_media_types(accept: str) -> list[tuple[str, dict[str, str]]]:
    out: list[tuple[str, dict[str, str]]] = []
    for part in accept.split(","):
        bits = [b.strip() for b in part.split(";")]
        if not bits or not bits[0]:
            continue
        params: dict[str, str] = {}
        for b in bits[1:]:
            if "=" in b:
                k, v = b.split("=", 1)
                params[k.strip().lower()] = v.strip().strip('"')
        out.append((bits[0].lower(), params))
    return out


def _asked_for(
    accept: str, group: str, kind: str, versions: tuple[str, ...] | None = None
) -> dict[str, str] | None:
    """The parameters of the first JSON media type in ``accept`` that asks for ``kind`` of
    ``group`` (as one of ``versions``, when given)."""
    for mt, params in parse_media_types(accept):
        if (
            mt == "application/json"
            and params.get("g") == group
            and params.get("as") == kind
            and (versions is None or params.get("v") in versions)
        ):
            return params
    return None


def wants_aggregated(accept: str) -> str | None:
    """``v2``/``v2beta1`` when the client asked for (JSON) aggregated discovery first."""
    params = _asked_for(accept, "apidiscovery.k8s.io", "APIGroupDiscoveryList", ("v2", "v2beta1"))
    return None if params is None else params["v"]


def wants_table(accept: str) -> str | None:
    """``meta.k8s.io/v1`` (or v1beta1) when the client asked for a Table."""
    params = _asked_for(accept, "meta.k8s.io", "Table")
    return None if params is None else f"meta.k8s.io/{params.get('v', 'v1')}"


# --------------------------------------------------------------------------- openapi v2

OPENAPI_V2_PB = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def openapi_v2_json(version: str) -> Json:
    """A minimal OpenAPI v2 document: no definitions, so clients validate nothing locally
    (kubectl 1.27 insists on fetching one before ``apply``) and the server decides."""
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": version},
        "paths": {},
        "definitions": {},
    }


# --------------------------------------------------------------------------- openapi v3

_FIELD_VALIDATION = {
    "name": "fieldValidation",
    "in": "query",
    "description": (
        "fieldValidation instructs the server on how to handle objects in the request "
        "(POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - "
        "Ignore - Warn - Strict"
    ),
    "schema": {"type": "string", "uniqueItems": True},
}
_DRY_RUN = {
    "name": "dryRun",
    "in": "query",
    "description": "When present, indicates that modifications should not be persisted.",
    "schema": {"type": "string", "uniqueItems": True},
}
_FIELD_MANAGER = {
    "name": "fieldManager",
    "in": "query",
    "description": (
        "fieldManager is a name associated with the actor or entity that is making these changes."
    ),
    "schema": {"type": "string", "uniqueItems": True},
}


def _op_id(verb: str, r: ResourceType, namespaced_path: bool) -> str:
    grp = "".join(p.capitalize() for p in (r.group or "core").replace(".k8s.io", "").split("."))
    scope = "Namespaced" if namespaced_path else ""
    return f"{verb}{grp}{r.version.capitalize()}{scope}{r.kind}"


def _schema_ref(r: ResourceType) -> str:
    return f"#/components/schemas/lab.{r.group or 'core'}.{r.version}.{r.kind}"


def _op(r: ResourceType, verb: str, action: str, responses: Json, body: Json | None = None) -> Json:
    """One OpenAPI operation of ``r`` (keys in the order the real server writes them)."""
    op: Json = {"operationId": _op_id(verb, r, r.namespaced)}
    if body is not None:
        op["parameters"] = [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION]
        op["requestBody"] = {"content": body, "required": True}
    op["responses"] = responses
    op["x-kubernetes-action"] = action
    op["x-kubernetes-group-version-kind"] = {"group": r.group, "version": r.version, "kind": r.kind}
    return op


def _ops(r: ResourceType, item: bool) -> Json:
    ref = {"$ref": _schema_ref(r)}
    ok: Json = {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}}
    ops: Json = {}
    if item:
        if "get" in r.verbs:
            ops["get"] = _op(r, "read", "get", ok)
        if "update" in r.verbs:
            ops["put"] = _op(r, "replace", "put", ok, {"*/*": {"schema": ref}})
        if "patch" in r.verbs:
            patch = {
                "schema": {
                    "$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
                }
            }
            body = {"application/json-patch+json": patch, "application/merge-patch+json": patch}
            ops["patch"] = _op(r, "patch", "patch", ok, body)
        if "delete" in r.verbs:
            ops["delete"] = _op(r, "delete", "delete", {"200": {"description": "OK"}})
    else:
        if "list" in r.verbs:
            ops["get"] = _op(r, "list", "list", {"200": {"description": "OK"}})
        if "create" in r.verbs:
            created = {"description": "Created", "content": {"application/json": {"schema": ref}}}
            ops["post"] = _op(r, "create", "post", {"201": created}, {"*/*": {"schema": ref}})
    return ops


def openapi_v3_doc(group: str, version: str) -> Json | None:
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    paths: Json = {}
    schemas: Json = {
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch": {
            "description": (
                "Patch is provided to give a concrete name and type to the Kubernetes "
                "PATCH request body."
            ),
            "type": "object",
        }
    }
    found = False
    for r in RESOURCES:
        if r.group != group or r.version != version:
            continue
        found = True
        base = (
            f"{prefix}/namespaces/{{namespace}}/{r.plural}"
            if r.namespaced
            else f"{prefix}/{r.plural}"
        )
        paths[base] = _ops(r, item=False)
        if "get" in r.verbs:
            paths[f"{base}/{{name}}"] = _ops(r, item=True)
        schemas[_schema_ref(r).rsplit("/", 1)[1]] = {
            "description": f"{r.kind} as served by the lab API server.",
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
            },
        }
    if not found:
        return None
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def openapi_v3_index() -> Json:
    paths: Json = {}
    for g, v in group_versions():
        key = f"apis/{g}/{v}" if g else f"api/{v}"
        doc = openapi_v3_doc(g, v)
        digest = hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:64].upper()
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
    return {"paths": paths}
