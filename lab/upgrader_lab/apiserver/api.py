"""REST semantics of the lab API server, independent of the HTTP transport.

Owns routing of ``/api``/``/apis`` paths to resources, verbs (get, list, watch, create,
update, patch, delete, deletecollection), the pods/eviction subresource with the real
server's PodDisruptionBudget rules, SelfSubjectAccessReview and friends, RBAC refusals,
content negotiation (JSON; Table; aggregated discovery; protobuf request bodies) and the
lab's admin endpoints under ``/_lab/v1/`` (``state``; ``cluster/version``: kubeadm's
upload-config, ``{"addons": false}`` leaves the addons; ``cluster/addons``: kubeadm's addon
phase for CoreDNS/kube-proxy; ``nodes/N/control-plane`` with the cluster's
imageRepository; ``nodes/N/kubelet-restart``). Takes a :class:`Request`, returns a
:class:`Response`. Must not: touch sockets, TLS or tokens (``server`` authenticates).
"""

from __future__ import annotations

import base64
import copy
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from upgrader.core.versions import KubeVersion, VersionError
from upgrader_lab.apiserver import discovery, rbac, tables
from upgrader_lab.apiserver import objects as ob
from upgrader_lab.apiserver.certs import ADMIN_GROUPS, ADMIN_USER
from upgrader_lab.apiserver.controller import begin_pod_deletion, refresh_pdb
from upgrader_lab.apiserver.patch import PatchError, apply_patch
from upgrader_lab.apiserver.protobuf import ProtobufError, decode_object, openapi_v2_document
from upgrader_lab.apiserver.resources import (
    BY_PLURAL,
    VIRTUAL,
    ResourceType,
    group_versions,
    lookup,
)
from upgrader_lab.apiserver.selectors import compile_filters, from_label_selector_object, matches
from upgrader_lab.apiserver.spec import LabSpec
from upgrader_lab.apiserver.status import (
    ApiError,
    FieldError,
    already_exists,
    bad_request,
    conflict,
    forbidden,
    generic,
    invalid,
    method_not_allowed,
    not_found,
    path_not_found,
    stale,
    status_body,
    too_many_requests,
    unsupported_media_type,
)
from upgrader_lab.apiserver.store import Store
from upgrader_lab.apiserver.validation import (
    default_on_create,
    validate,
    validate_name,
    validate_update,
)

Json = dict[str, Any]

PROTOBUF = "application/vnd.kubernetes.protobuf"
PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
MAX_WATCH = 1800.0


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    user: str = ADMIN_USER


@dataclass
class Response:
    code: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterator[bytes] | None = None


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def json_response(
    code: int,
    obj: Any,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(code, dumps(obj), content_type, dict(headers or {}))


def with_type(rt: ResourceType, obj: Json) -> Json:
    return {"kind": rt.kind, "apiVersion": rt.api_version, **obj}


@dataclass(frozen=True)
class Target:
    rt: ResourceType
    namespace: str
    name: str
    sub: str
    watch: bool


class Api:
    def __init__(
        self,
        store: Store,
        spec: LabSpec,
        clock: Callable[[], float] = time.time,
        server_address: str = "127.0.0.1:6443",
        stopping: threading.Event | None = None,
    ) -> None:
        self.store = store
        self.spec = spec
        self.clock = clock
        self.server_address = server_address
        self.stopping = stopping or threading.Event()
        self._v3_index = discovery.openapi_v3_index()
        self._v3_docs = {
            (f"apis/{g}/{v}" if g else f"api/{v}"): discovery.openapi_v3_doc(g, v)
            for g, v in group_versions()
        }

    # ------------------------------------------------------------------ entry
    def handle(self, req: Request, is_closed: Callable[[], bool] | None = None) -> Response:
        try:
            return self._route(req, is_closed or (lambda: False))
        except ApiError as e:
            return json_response(e.code, e.body, headers=e.headers)
        finally:
            # Durable before the client hears back; never while holding the store lock.
            if req.method != "GET":
                self.store.persist()

    def cluster_version(self) -> str:
        return str(self.store.cluster.get("version") or self.spec.version)

    def _route(self, req: Request, is_closed: Callable[[], bool]) -> Response:
        path = req.path.rstrip("/") or "/"
        if path in ("/healthz", "/livez", "/readyz") or path.startswith(
            ("/healthz/", "/livez/", "/readyz/")
        ):
            return Response(200, b"ok", "text/plain; charset=utf-8")
        if path.startswith("/_lab/v1/"):
            return self._admin(req, path[len("/_lab/v1/") :])
        if path.startswith("/api/") or path.startswith("/apis/") or path in ("/api", "/apis"):
            if req.method == "GET" and self._is_discovery(path):
                return self._discovery(req, path)
            return self._resource(req, path, is_closed)
        if req.method != "GET":
            raise method_not_allowed()
        if path == "/version":
            return json_response(200, discovery.version_info(self.cluster_version()))
        if path == "/openapi/v2":
            if "protobuf" in req.headers.get("accept", ""):
                body = openapi_v2_document(self.cluster_version())
                return Response(200, body, discovery.OPENAPI_V2_PB)
            return json_response(200, discovery.openapi_v2_json(self.cluster_version()))
        if path == "/openapi/v3":
            return json_response(200, self._v3_index)
        if path.startswith("/openapi/v3/"):
            doc = self._v3_docs.get(path[len("/openapi/v3/") :])
            if doc is None:
                raise path_not_found()
            return json_response(200, doc, headers={"Cache-Control": "public, immutable"})
        raise path_not_found()

    # ------------------------------------------------------------------ discovery
    @staticmethod
    def _is_discovery(path: str) -> bool:
        parts = [p for p in path.split("/") if p]
        if parts[0] == "api":
            return len(parts) <= 2
        return len(parts) <= 3

    def _discovery(self, req: Request, path: str) -> Response:
        parts = [p for p in path.split("/") if p]
        accept = req.headers.get("accept", "")
        if parts == ["api"] or parts == ["apis"]:
            agg = discovery.wants_aggregated(accept)
            if agg is not None:
                ct = discovery.AGG_V2 if agg == "v2" else discovery.AGG_V2BETA1
                return json_response(200, discovery.aggregated(parts == ["api"], agg), ct)
            if parts == ["api"]:
                return json_response(200, discovery.api_versions(self.server_address))
            return json_response(200, discovery.api_group_list())
        if parts[0] == "api":
            doc = discovery.api_resource_list("", parts[1])
        elif len(parts) == 2:
            if parts[1] not in {g for g, _ in group_versions() if g}:
                raise path_not_found()
            return json_response(200, discovery.api_group(parts[1]))
        else:
            doc = discovery.api_resource_list(parts[1], parts[2])
        if doc is None:
            raise path_not_found()
        return json_response(200, doc)

    # ------------------------------------------------------------------ routing
    def _parse(self, path: str) -> Target:
        parts = [p for p in path.split("/") if p]
        if parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        else:
            group, version, rest = parts[1], parts[2], parts[3:]
        watch = False
        if rest and rest[0] == "watch":
            watch, rest = True, rest[1:]
        if not rest:
            raise path_not_found()
        ns = ""
        if (
            rest[0] == "namespaces"
            and len(rest) >= 3
            and not (group == "" and len(rest) == 3 and rest[2] in ("status", "finalize"))
        ):
            ns, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise path_not_found()
        rt = lookup(group, version, rest[0])
        if rt is None:
            raise path_not_found()
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if ns and not rt.namespaced:
            raise path_not_found()
        if rt.namespaced and name and not ns:
            raise path_not_found()
        if sub == "finalize" and rt.plural == "namespaces":
            sub = "status"
        if sub and rt.sub(sub) is None:
            raise path_not_found()
        return Target(rt, ns, name, sub, watch)

    @staticmethod
    def _verb(req: Request, t: Target) -> str:
        m = req.method
        if m == "GET":
            if t.name:
                return "watch" if t.watch else "get"
            return "watch" if t.watch or req.query.get("watch") in ("1", "true") else "list"
        if m == "POST":
            return "create"
        if m == "PUT":
            return "update"
        if m == "PATCH":
            return "patch"
        if m == "DELETE":
            return "delete" if t.name else "deletecollection"
        raise method_not_allowed()

    def _resource(self, req: Request, path: str, is_closed: Callable[[], bool]) -> Response:
        t = self._parse(path)
        verb = self._verb(req, t)
        rt = t.rt
        if rt.plural in VIRTUAL:
            if verb != "create" or t.name:
                raise method_not_allowed()
            return self._review(req, rt)
        allowed_verbs = rt.sub(t.sub).verbs if t.sub else rt.verbs  # type: ignore[union-attr]
        if verb not in allowed_verbs and not (verb == "watch" and "watch" in rt.verbs):
            raise method_not_allowed()
        if not rbac.allowed(
            self.spec.rbac, rbac.Attributes(verb, rt.group, rt.plural, t.sub, t.namespace, t.name)
        ):
            raise forbidden(req.user, verb, rt, t.sub, t.name, t.namespace)
        if t.sub == "eviction":
            return self._evict(req, t)
        if t.sub == "log":
            return self._log(t)
        if t.sub == "scale":
            return self._scale(req, t, verb)
        if verb == "get":
            return self._get(req, t)
        if verb in ("list", "watch"):
            return self._list(req, t, watch=verb == "watch", is_closed=is_closed)
        if verb == "create":
            if t.name:
                raise method_not_allowed()
            return self._create(req, t)
        if verb == "update":
            return self._update(req, t)
        if verb == "patch":
            return self._patch(req, t)
        if verb == "delete":
            return self._delete(req, t)
        return self._delete_collection(req, t)

    # ------------------------------------------------------------------ bodies
    def _decode(self, req: Request) -> Json:
        ct = req.headers.get("content-type", "application/json").split(";", 1)[0].strip().lower()
        if ct == PROTOBUF:
            try:
                return decode_object(req.body)
            except ProtobufError as e:
                raise bad_request(f"unable to decode protobuf body: {e}") from None
        if ct in ("application/yaml", "application/x-yaml"):
            try:
                data = yaml.safe_load(req.body.decode("utf-8"))
            except (yaml.YAMLError, UnicodeDecodeError) as e:
                raise bad_request(f"error decoding YAML: {e}") from None
        elif ct in ("", "application/json", "*/*") or ct.endswith("+json"):
            try:
                data = json.loads(req.body or b"null")
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise bad_request(f"couldn't get version/kind; json parse error: {e}") from None
        else:
            raise unsupported_media_type(ct, ("application/json", "application/yaml", PROTOBUF))
        if not isinstance(data, dict):
            raise bad_request("the body of the request must be a JSON object")
        return data

    @staticmethod
    def _check_typemeta(rt: ResourceType, body: Json) -> None:
        av = body.get("apiVersion")
        kind = body.get("kind")
        if av and av != rt.api_version:
            raise bad_request(
                f"the API version in the data ({av}) does not match the expected API version "
                f"({rt.api_version})"
            )
        if kind and kind != rt.kind:
            raise bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
            )
        meta = body.get("metadata", {})
        if meta is not None and not isinstance(meta, dict):
            raise bad_request("metadata must be an object")

    def _dry_run(self, req: Request, extra: list[str] | None = None) -> bool:
        values = [v for v in req.query.get("dryRun", "").split(",") if v] + list(extra or [])
        for v in values:
            if v != "All":
                raise bad_request(f'dryRun: Unsupported value: "{v}": supported values: "All"')
        return bool(values)

    # ------------------------------------------------------------------ output
    def _object(self, req: Request, rt: ResourceType, obj: Json, code: int = 200) -> Response:
        table = discovery.wants_table(req.headers.get("accept", ""))
        if table is not None and req.method == "GET":
            rv = obj["metadata"].get("resourceVersion", "")
            doc = tables.to_table(
                rt,
                [obj],
                self.clock(),
                req.query.get("includeObject", "Metadata"),
                {"resourceVersion": rv},
                table,
            )
            return json_response(code, doc)
        return json_response(code, with_type(rt, obj))

    def _log(self, t: Target) -> Response:
        """Simulated containers write nothing; a missing pod is still a 404."""
        if self.store.get("pods", t.namespace, t.name) is None:
            raise not_found(t.rt, t.name)
        return Response(200, b"", "text/plain")

    # ------------------------------------------------------------------ get / list / watch
    def _get(self, req: Request, t: Target) -> Response:
        obj = self.store.get(t.rt.plural, t.namespace, t.name)
        if obj is None:
            raise not_found(t.rt, t.name)
        return self._object(req, t.rt, obj)

    def _filters(self, req: Request, t: Target) -> Callable[[Json], bool]:
        allowed = ("metadata.name", "metadata.namespace", *t.rt.field_labels)
        pred = compile_filters(
            req.query.get("labelSelector", ""), req.query.get("fieldSelector", ""), allowed
        )
        if t.name:
            name = t.name
            return lambda o: o["metadata"]["name"] == name and pred(o)
        return pred

    def _list(
        self, req: Request, t: Target, watch: bool, is_closed: Callable[[], bool]
    ) -> Response:
        pred = self._filters(req, t)
        if watch:
            return self._watch(req, t, pred, is_closed)
        with self.store.lock:
            items = self.store.list(t.rt.plural, t.namespace or None)
            rv = self.store.rv
        items = [o for o in items if pred(o)]
        meta: Json = {"resourceVersion": str(rv)}
        cont = req.query.get("continue", "")
        if cont:
            try:
                tok = json.loads(base64.urlsafe_b64decode(cont.encode()))
                start = (str(tok["ns"]), str(tok["name"]))
            except (ValueError, KeyError, TypeError):
                raise bad_request(
                    "continue key is not valid: incorrect encoded start resourceVersion (version "
                    "meta.k8s.io/v1)"
                ) from None
            items = [
                o
                for o in items
                if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start
            ]
            meta["resourceVersion"] = str(tok.get("rv", rv))
        limit = req.query.get("limit", "")
        if limit.isdigit() and int(limit) > 0 and len(items) > int(limit):
            n = int(limit)
            last = items[n - 1]["metadata"]
            tok = {
                "rv": int(meta["resourceVersion"]),
                "ns": last.get("namespace", ""),
                "name": last["name"],
            }
            meta["continue"] = base64.urlsafe_b64encode(dumps(tok)).decode()
            meta["remainingItemCount"] = len(items) - n
            items = items[:n]
        table = discovery.wants_table(req.headers.get("accept", ""))
        if table is not None:
            doc = tables.to_table(
                t.rt, items, self.clock(), req.query.get("includeObject", "Metadata"), meta, table
            )
            return json_response(200, doc)
        return json_response(
            200,
            {
                "kind": f"{t.rt.kind}List",
                "apiVersion": t.rt.api_version,
                "metadata": meta,
                "items": items,
            },
        )

    def _watch(
        self, req: Request, t: Target, pred: Callable[[Json], bool], is_closed: Callable[[], bool]
    ) -> Response:
        rt = t.rt
        q = req.query
        try:
            timeout = min(float(q.get("timeoutSeconds") or MAX_WATCH), MAX_WATCH)
        except ValueError:
            raise bad_request("timeoutSeconds must be a number") from None
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        send_initial = q.get("sendInitialEvents") in ("true", "1")
        rv_param = q.get("resourceVersion", "")
        initial: list[Json] = []
        expired = False
        with self.store.lock:
            start = self.store.rv
            if rv_param in ("", "0") or send_initial:
                initial = [o for o in self.store.list(rt.plural, t.namespace or None) if pred(o)]
            else:
                try:
                    start = int(rv_param)
                except ValueError:
                    raise bad_request(f"invalid resource version: {rv_param}") from None
                expired = self.store.events_after(start) is None
        store = self.store

        table = discovery.wants_table(req.headers.get("accept", ""))
        include = q.get("includeObject", "Metadata")
        headers_sent = [False]

        def event(etype: str, obj: Json) -> bytes:
            if table is None:
                return dumps({"type": etype, "object": with_type(rt, obj)}) + b"\n"
            # ``kubectl get -w``: each event is a one-row Table, columns on the first only
            meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
            doc = tables.to_table(rt, [obj], self.clock(), include, meta, table)
            if headers_sent[0]:
                doc["columnDefinitions"] = None
            headers_sent[0] = True
            return dumps({"type": etype, "object": doc}) + b"\n"

        def gone() -> bytes:
            msg = f"too old resource version: {rv_param} ({store.oldest_known_rv()})"
            return dumps({"type": "ERROR", "object": status_body(410, msg, "Expired")}) + b"\n"

        def bookmark(rv: int, initial_end: bool = False) -> bytes:
            meta: Json = {"resourceVersion": str(rv)}
            if initial_end:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            return (
                dumps(
                    {
                        "type": "BOOKMARK",
                        "object": {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta},
                    }
                )
                + b"\n"
            )

        def stream() -> Iterator[bytes]:
            if expired:
                yield gone()
                return
            for o in initial:
                yield event("ADDED", o)
            if send_initial and bookmarks:
                yield bookmark(start, initial_end=True)
            last = start
            deadline = time.monotonic() + timeout
            next_bookmark = time.monotonic() + 30
            while not self.stopping.is_set() and not is_closed():
                events = store.events_after(last)
                if events is None:
                    yield gone()
                    return
                sent = False
                for e in events:
                    last = e.rv
                    if e.plural != rt.plural or (t.namespace and e.namespace != t.namespace):
                        continue
                    seen = _seen_as(e.type, pred(e.obj), e.prev is not None and pred(e.prev))
                    if seen is not None:
                        yield event(seen, e.obj)
                    sent = True
                if bookmarks and time.monotonic() >= next_bookmark:
                    yield bookmark(last)
                    next_bookmark = time.monotonic() + 30
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                if not sent:
                    store.wait_for_change(last, min(1.0, left))

        return Response(200, content_type="application/json", stream=stream())

    # ------------------------------------------------------------------ create
    def _create(self, req: Request, t: Target) -> Response:
        rt = t.rt
        body = self._decode(req)
        self._check_typemeta(rt, body)
        dry = self._dry_run(req)
        obj = copy.deepcopy({k: v for k, v in body.items() if k not in ("kind", "apiVersion")})
        meta = obj.setdefault("metadata", {}) or {}
        obj["metadata"] = meta
        if rt.namespaced:
            bns = meta.get("namespace")
            if bns and bns != t.namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            meta["namespace"] = t.namespace
        else:
            meta.pop("namespace", None)
        with self.store.lock:
            if rt.namespaced:
                ns_obj = self.store.get("namespaces", "", t.namespace)
                if ns_obj is None:
                    raise not_found(BY_PLURAL["namespaces"], t.namespace)
                if ns_obj["metadata"].get("deletionTimestamp"):
                    raise forbidden_terminating(rt, meta.get("name", ""), t.namespace)
            name = meta.get("name")
            if not name:
                gen = meta.get("generateName")
                if not gen:
                    raise invalid(
                        rt,
                        "",
                        [
                            FieldError(
                                "Required value",
                                "metadata.name",
                                "name or generateName is required",
                            )
                        ],
                    )
                for _ in range(20):
                    name = f"{gen}{ob.rand_suffix(5)}"
                    if self.store.get(rt.plural, t.namespace, name) is None:
                        break
                meta["name"] = name
            if not isinstance(name, str):
                raise bad_request("metadata.name must be a string")
            errs = validate_name(rt, name)
            if errs:
                raise invalid(rt, name, errs)
            if self.store.get(rt.plural, t.namespace, name) is not None:
                raise already_exists(rt, name)
            now = self.clock()
            for k in (
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
                "managedFields",
            ):
                meta.pop(k, None)
            meta["uid"] = ob.new_uid()
            meta["creationTimestamp"] = ob.ts(now)
            if rt.generation:
                meta["generation"] = 1
            obj = default_on_create(rt, obj)
            errs = validate(rt, obj)
            if errs:
                raise invalid(rt, name, errs)
            if dry:
                return json_response(201, with_type(rt, obj))
            stored = self.store.create(rt.plural, obj)
            if rt.plural == "poddisruptionbudgets":
                stored = refresh_pdb(self.store, stored, now)
        return json_response(201, with_type(rt, stored))

    # ------------------------------------------------------------------ update / patch
    def _merge_update(self, rt: ResourceType, old: Json, incoming: Json, sub: str) -> Json:
        if sub == "status":
            new = copy.deepcopy(old)
            new["status"] = copy.deepcopy(incoming.get("status") or {})
            return new
        new = copy.deepcopy({k: v for k, v in incoming.items() if k not in ("kind", "apiVersion")})
        meta = new.get("metadata")
        if not isinstance(meta, dict):
            meta = {}
            new["metadata"] = meta
        om = old["metadata"]
        for k in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "namespace",
        ):
            if k in om:
                meta[k] = om[k]
            else:
                meta.pop(k, None)
        meta.pop("managedFields", None)
        meta["name"] = om["name"]
        if rt.has_status:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        spec = new.get("spec")
        if isinstance(spec, dict):
            if rt.plural == "deployments":
                ob.default_deployment_spec(spec)
            elif rt.plural == "daemonsets":
                ob.default_daemonset_spec(spec)
            elif rt.plural == "replicasets":
                ob.default_replicaset_spec(spec)
        if rt.generation:
            gen = int(om.get("generation", 1))
            meta["generation"] = gen + 1 if new.get("spec") != old.get("spec") else gen
        return new

    def _commit_update(
        self, req: Request, rt: ResourceType, old: Json, new: Json, dry: bool
    ) -> Response:
        errs = validate_update(rt, old, new)
        if errs:
            raise invalid(rt, old["metadata"]["name"], errs)
        cmp_new = dict(
            new, metadata={k: v for k, v in new["metadata"].items() if k != "resourceVersion"}
        )
        cmp_old = dict(
            old, metadata={k: v for k, v in old["metadata"].items() if k != "resourceVersion"}
        )
        if cmp_new == cmp_old:
            return json_response(200, with_type(rt, old))
        new["metadata"]["resourceVersion"] = old["metadata"].get("resourceVersion")
        if dry:
            return json_response(200, with_type(rt, new))
        now = self.clock()
        m = new["metadata"]
        if (
            m.get("deletionTimestamp")
            and not m.get("finalizers")
            and (rt.plural != "pods" or f"pod-gone/{m['uid']}" not in self.store.timers)
        ):
            gone = self.store.delete(rt.plural, m.get("namespace", ""), m["name"])
            return json_response(200, with_type(rt, gone or new))
        stored = self.store.update(rt.plural, new)
        if rt.plural == "poddisruptionbudgets":
            stored = refresh_pdb(self.store, stored, now)
        return json_response(200, with_type(rt, stored))

    def _update(self, req: Request, t: Target) -> Response:
        rt = t.rt
        body = self._decode(req)
        self._check_typemeta(rt, body)
        dry = self._dry_run(req)
        meta = body.get("metadata") or {}
        if meta.get("name") and meta["name"] != t.name:
            raise bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({t.name})"
            )
        if rt.namespaced and meta.get("namespace") and meta["namespace"] != t.namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        with self.store.lock:
            old = self.store.get(rt.plural, t.namespace, t.name)
            if old is None:
                raise not_found(rt, t.name)
            rv = meta.get("resourceVersion")
            if rv:
                if str(rv) != old["metadata"].get("resourceVersion"):
                    raise stale(rt, t.name)
            elif rt.plural == "leases":
                raise invalid(
                    rt,
                    t.name,
                    [
                        FieldError(
                            "Invalid value",
                            "metadata.resourceVersion",
                            "must be specified for an update",
                            "0x0",
                        )
                    ],
                )
            new = self._merge_update(rt, old, body, t.sub)
            return self._commit_update(req, rt, old, new, dry)

    def _patch(self, req: Request, t: Target) -> Response:
        rt = t.rt
        ct = req.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        accepted = (
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
        )
        if ct not in accepted:
            raise unsupported_media_type(ct, (*accepted, "application/apply-patch+yaml"))
        try:
            doc = json.loads(req.body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise bad_request(f"error decoding patch: {e}") from None
        dry = self._dry_run(req)
        with self.store.lock:
            old = self.store.get(rt.plural, t.namespace, t.name)
            if old is None:
                raise not_found(rt, t.name)
            try:
                patched = apply_patch(ct, with_type(rt, old), doc)
            except PatchError as e:
                raise ApiError(
                    422,
                    status_body(
                        422,
                        f"the server rejected our request due to an error in our request: {e}",
                        "Invalid",
                        {},
                    ),
                ) from None
            if not isinstance(patched, dict):
                raise bad_request("the patch produced something that is not an object")
            self._check_typemeta(rt, patched)
            pmeta = patched.get("metadata") or {}
            prv = pmeta.get("resourceVersion")
            if prv and str(prv) != old["metadata"].get("resourceVersion"):
                raise stale(rt, t.name)
            new = self._merge_update(rt, old, patched, t.sub)
            return self._commit_update(req, rt, old, new, dry)

    # ------------------------------------------------------------------ scale
    @staticmethod
    def _scale_of(obj: Json) -> Json:
        """The autoscaling/v1 Scale of a Deployment or ReplicaSet (registry/apps
        ``scaleFromDeployment``: spec.replicas, status.replicas, the selector as a string)."""
        from upgrader_lab.apiserver.selectors import selector_string

        meta = obj["metadata"]
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in meta
            },
            "spec": {"replicas": int(spec.get("replicas", 1))},
            "status": {
                "replicas": int(status.get("replicas", 0)),
                "selector": selector_string(spec.get("selector") or {}),
            },
        }

    def _scale(self, req: Request, t: Target, verb: str) -> Response:
        rt = t.rt
        with self.store.lock:
            old = self.store.get(rt.plural, t.namespace, t.name)
            if old is None:
                raise not_found(rt, t.name)
            current = self._scale_of(old)
            if verb == "get":
                return json_response(200, current)
            if verb == "update":
                incoming = self._decode(req)
            else:
                ct = req.headers.get("content-type", "").split(";", 1)[0].strip().lower()
                try:
                    doc = json.loads(req.body or b"null")
                    incoming = apply_patch(ct, current, doc)
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    raise bad_request(f"error decoding patch: {e}") from None
                except PatchError as e:
                    raise bad_request(str(e)) from None
            if not isinstance(incoming, dict):
                raise bad_request("a Scale must be an object")
            rv = (incoming.get("metadata") or {}).get("resourceVersion")
            if rv and str(rv) != old["metadata"].get("resourceVersion"):
                raise stale(rt, t.name)
            replicas = (incoming.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise invalid(
                    rt,
                    t.name,
                    [
                        FieldError(
                            "Invalid value",
                            "spec.replicas",
                            "must be greater than or equal to 0",
                            replicas,
                        )
                    ],
                )
            new = copy.deepcopy(old)
            new.setdefault("spec", {})["replicas"] = replicas
            if rt.generation and new.get("spec") != old.get("spec"):
                new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
            if new == old or self._dry_run(req):
                return json_response(200, self._scale_of(new))
            stored = self.store.update(rt.plural, new)
        return json_response(200, self._scale_of(stored))

    # ------------------------------------------------------------------ delete
    def _delete_options(self, req: Request) -> Json:
        opts: Json = {}
        if req.body.strip():
            ct = (
                req.headers.get("content-type", "application/json").split(";", 1)[0].strip().lower()
            )
            if ct == PROTOBUF:
                try:
                    opts = decode_object(req.body)
                except ProtobufError as e:
                    raise bad_request(f"unable to decode DeleteOptions: {e}") from None
            else:
                try:
                    opts = json.loads(req.body)
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    raise bad_request(f"error decoding DeleteOptions: {e}") from None
            if not isinstance(opts, dict):
                raise bad_request("DeleteOptions must be an object")
        q = req.query
        if "gracePeriodSeconds" in q:
            try:
                opts["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
            except ValueError:
                raise bad_request("gracePeriodSeconds must be an integer") from None
        if "propagationPolicy" in q:
            opts["propagationPolicy"] = q["propagationPolicy"]
        if q.get("orphanDependents") in ("true", "false"):
            opts["orphanDependents"] = q["orphanDependents"] == "true"
        if "dryRun" in q:
            opts["dryRun"] = [v for v in q["dryRun"].split(",") if v]
        pol = opts.get("propagationPolicy")
        if pol is not None and pol not in ("Orphan", "Background", "Foreground"):
            raise invalid(
                BY_PLURAL["pods"],
                "",
                [
                    FieldError(
                        "Unsupported value",
                        "propagationPolicy",
                        'supported values: "Foreground", "Background", "Orphan", "nil"',
                        pol,
                    )
                ],
            )
        g = opts.get("gracePeriodSeconds")
        if g is not None and (not isinstance(g, int) or isinstance(g, bool)):
            raise bad_request("gracePeriodSeconds must be an integer")
        return opts

    def _check_preconditions(self, rt: ResourceType, obj: Json, opts: Json) -> None:
        pre = opts.get("preconditions") or {}
        m = obj["metadata"]
        for key, name in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
            if pre.get(key) and pre[key] != m.get(key):
                raise conflict(
                    rt,
                    m["name"],
                    f"Precondition failed: {name} in precondition: {pre[key]}, {name} in object "
                    f"meta: {m.get(key)}",
                )

    def _delete_one(self, rt: ResourceType, obj: Json, opts: Json, dry: bool) -> tuple[Json, bool]:
        """Delete ``obj``; returns (object to report, removed now)."""
        now = self.clock()
        m = obj["metadata"]
        ns = m.get("namespace", "")
        if dry:
            return obj, False
        policy = opts.get("propagationPolicy")
        if opts.get("orphanDependents") is True:
            policy = "Orphan"
        if policy == "Orphan":
            self._orphan_dependents(obj)
        if rt.plural == "pods":
            res = begin_pod_deletion(
                self.store, self.spec, obj, opts.get("gracePeriodSeconds"), now
            )
            if res is None:
                return dict(obj, metadata=dict(m)), True
            return res, False
        if rt.plural == "namespaces":
            if m["name"] in PROTECTED_NAMESPACES:
                raise ApiError(
                    403,
                    status_body(
                        403,
                        f'namespaces "{m["name"]}" is forbidden: this namespace may not be deleted',
                        "Forbidden",
                        {"name": m["name"], "kind": "namespaces"},
                    ),
                )
            if m.get("deletionTimestamp"):
                return obj, False
            new = copy.deepcopy(obj)
            new["metadata"]["deletionTimestamp"] = ob.ts(now)
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new["status"] = {"phase": "Terminating"}
            return self.store.update("namespaces", new), False
        if m.get("finalizers"):
            if m.get("deletionTimestamp"):
                return obj, False
            new = copy.deepcopy(obj)
            new["metadata"]["deletionTimestamp"] = ob.ts(now)
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            return self.store.update(rt.plural, new), False
        gone = self.store.delete(rt.plural, ns, m["name"])
        return gone or obj, True

    def _orphan_dependents(self, owner: Json) -> None:
        uid = owner["metadata"]["uid"]
        for plural in ("replicasets", "pods"):
            for o in self.store.list(plural):
                refs = o["metadata"].get("ownerReferences") or []
                if any(r.get("uid") == uid for r in refs):
                    new = copy.deepcopy(o)
                    rest = [r for r in refs if r.get("uid") != uid]
                    if rest:
                        new["metadata"]["ownerReferences"] = rest
                    else:
                        new["metadata"].pop("ownerReferences", None)
                    self.store.update(plural, new)

    def _delete(self, req: Request, t: Target) -> Response:
        rt = t.rt
        opts = self._delete_options(req)
        dry = self._dry_run(req, opts.get("dryRun") if "dryRun" not in req.query else None)
        with self.store.lock:
            obj = self.store.get(rt.plural, t.namespace, t.name)
            if obj is None:
                raise not_found(rt, t.name)
            self._check_preconditions(rt, obj, opts)
            result, removed = self._delete_one(rt, obj, opts, dry)
        if rt.plural in ("pods", "namespaces") or not removed:
            return json_response(200, with_type(rt, result))
        details: Json = {"name": t.name}
        if rt.group:
            details["group"] = rt.group
        details["kind"] = rt.plural
        details["uid"] = obj["metadata"]["uid"]
        return json_response(
            200,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": details,
            },
        )

    def _delete_collection(self, req: Request, t: Target) -> Response:
        rt = t.rt
        opts = self._delete_options(req)
        dry = self._dry_run(req, opts.get("dryRun") if "dryRun" not in req.query else None)
        pred = self._filters(req, t)
        out: list[Json] = []
        with self.store.lock:
            for obj in self.store.list(rt.plural, t.namespace or None):
                if not pred(obj):
                    continue
                if rt.plural == "namespaces" and obj["metadata"]["name"] in PROTECTED_NAMESPACES:
                    continue
                res, _ = self._delete_one(rt, obj, opts, dry)
                out.append(res)
            rv = self.store.rv
        return json_response(
            200,
            {
                "kind": f"{rt.kind}List",
                "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(rv)},
                "items": out,
            },
        )

    # ------------------------------------------------------------------ eviction
    def _evict(self, req: Request, t: Target) -> Response:
        if req.method != "POST":
            raise method_not_allowed()
        body = self._decode(req)
        _check_eviction(body, t)
        opts = copy.deepcopy(body.get("deleteOptions") or {})
        dry = self._dry_run(req, opts.get("dryRun"))
        pods = BY_PLURAL["pods"]
        with self.store.lock:
            now = self.clock()
            pod = self.store.get("pods", t.namespace, t.name)
            if pod is None:
                raise not_found(pods, t.name)
            self._check_preconditions(pods, pod, opts)
            phase = (pod.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed", "Pending") or pod["metadata"].get(
                "deletionTimestamp"
            ):
                self._delete_one(pods, pod, opts, dry)
                return self._evicted()
            pdbs = []
            for pdb in self.store.list("poddisruptionbudgets", t.namespace):
                sel = from_label_selector_object((pdb.get("spec") or {}).get("selector"))
                if sel and matches(sel, pod["metadata"].get("labels")):
                    pdbs.append(pdb)
            if len(pdbs) > 1:
                msg = (
                    "This pod has more than one PodDisruptionBudget, which the eviction "
                    "subresource does not support."
                )
                return json_response(500, status_body(500, msg, None))
            if pdbs:
                pdb = refresh_pdb(self.store, pdbs[0], now)
                st = pdb.get("status") or {}
                healthy_policy = (pdb.get("spec") or {}).get(
                    "unhealthyPodEvictionPolicy", "IfHealthyBudget"
                )
                unready_ok = not ob.pod_is_ready(pod) and (
                    healthy_policy == "AlwaysAllow"
                    or (
                        st.get("currentHealthy", 0) >= st.get("desiredHealthy", 0)
                        and st.get("desiredHealthy", 0) > 0
                    )
                )
                if not unready_ok:
                    if st.get("observedGeneration", 0) < pdb["metadata"].get("generation", 1):
                        raise too_many_requests(
                            "Cannot evict pod as it would violate the pod's disruption budget.",
                            [
                                {
                                    "reason": "DisruptionBudget",
                                    "message": (
                                        f"The disruption budget {pdb['metadata']['name']} "
                                        "is still being processed by the server."
                                    ),
                                }
                            ],
                            10,
                        )
                    if int(st.get("disruptionsAllowed", 0)) <= 0:
                        raise too_many_requests(
                            "Cannot evict pod as it would violate the pod's disruption budget.",
                            [
                                {
                                    "reason": "DisruptionBudget",
                                    "message": (
                                        f"The disruption budget {pdb['metadata']['name']} "
                                        f"needs {st.get('desiredHealthy', 0)} healthy pods "
                                        f"and has {st.get('currentHealthy', 0)} currently"
                                    ),
                                }
                            ],
                        )
                    if not dry:
                        new = copy.deepcopy(pdb)
                        nst = new.setdefault("status", {})
                        nst["disruptionsAllowed"] = int(nst.get("disruptionsAllowed", 0)) - 1
                        nst.setdefault("disruptedPods", {})[t.name] = ob.ts(now)
                        self.store.update("poddisruptionbudgets", new)
            self._delete_one(pods, pod, opts, dry)
            if pdbs and not dry:
                cur = self.store.get(
                    "poddisruptionbudgets", t.namespace, pdbs[0]["metadata"]["name"]
                )
                if cur is not None:
                    refresh_pdb(self.store, cur, now)
        return self._evicted()

    @staticmethod
    def _evicted() -> Response:
        return json_response(
            201,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "code": 201,
            },
        )

    # ------------------------------------------------------------------ reviews
    def _review(self, req: Request, rt: ResourceType) -> Response:
        body = self._decode(req)
        self._check_typemeta(rt, body)
        spec = body.get("spec") or {}
        rules = self.spec.rbac
        out: Json = {
            "kind": rt.kind,
            "apiVersion": rt.api_version,
            "metadata": {"creationTimestamp": None},
        }
        if rt.plural == "selfsubjectaccessreviews":
            ra = spec.get("resourceAttributes")
            nra = spec.get("nonResourceAttributes")
            if bool(ra) == bool(nra):
                raise invalid(
                    rt,
                    "",
                    [
                        FieldError(
                            "Invalid value",
                            "spec.resourceAttributes",
                            "exactly one of nonResourceAttributes or resourceAttributes must be "
                            "specified",
                            str(ra),
                        )
                    ],
                )
            if ra:
                ok = rbac.allowed(
                    rules,
                    rbac.Attributes(
                        verb=str(ra.get("verb", "")),
                        group=str(ra.get("group", "")),
                        resource=str(ra.get("resource", "")),
                        subresource=str(ra.get("subresource", "")),
                        namespace=str(ra.get("namespace", "")),
                        name=str(ra.get("name", "")),
                    ),
                )
            else:
                ok = rules is None or str((nra or {}).get("verb", "")) == "get"
            status: Json = {"allowed": ok}
            why = rbac.reason(rules, ok)
            if why:
                status["reason"] = why
            out["spec"] = spec
            out["status"] = status
        elif rt.plural == "selfsubjectrulesreviews":
            ns = str(spec.get("namespace", ""))
            out["spec"] = spec
            out["status"] = {
                "resourceRules": rbac.resource_rules(rules, ns),
                "nonResourceRules": rbac.non_resource_rules(rules),
                "incomplete": False,
            }
        else:
            out["status"] = {"userInfo": {"username": req.user, "groups": list(ADMIN_GROUPS)}}
        return json_response(201, out)

    # ------------------------------------------------------------------ admin
    def _admin_body(self, req: Request) -> Json:
        try:
            data = json.loads(req.body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise bad_request(f"invalid JSON body: {e}") from None
        if not isinstance(data, dict):
            raise bad_request("the body must be a JSON object")
        return data

    @staticmethod
    def _version_arg(data: Json, required: bool = True) -> str | None:
        v = data.get("version")
        if v is None and not required:
            return None
        if not isinstance(v, str):
            raise bad_request("version: must be a version string like v1.28.4")
        try:
            return str(KubeVersion.parse(v))
        except VersionError as e:
            raise bad_request(f"version: {e}") from None

    def _repository_arg(self, data: Json) -> str:
        repo = data.get("image_repository")
        if repo is None:
            return self.image_repository()
        if not isinstance(repo, str) or not repo or any(c.isspace() for c in repo):
            raise bad_request("image_repository: must be a registry path like registry.k8s.io")
        return repo

    def _cluster_config(self) -> Json:
        cm = self.store.get("configmaps", "kube-system", "kubeadm-config")
        text = ((cm or {}).get("data") or {}).get("ClusterConfiguration", "")
        try:
            cfg = yaml.safe_load(text) or {}
        except yaml.YAMLError:
            cfg = {}
        return cfg if isinstance(cfg, dict) else {}

    def image_repository(self) -> str:
        """The cluster's imageRepository (kubeadm-config), else the spec's."""
        return str(self._cluster_config().get("imageRepository") or self.spec.image_repository)

    def _admin(self, req: Request, rest: str) -> Response:
        parts = [p for p in rest.split("/") if p]
        if parts == ["state"]:
            if req.method != "GET":
                raise method_not_allowed()
            return json_response(200, self.store.state())
        if parts == ["faults"]:  # the API fault counters: spec index -> times fired
            if req.method != "GET":
                raise method_not_allowed()
            with self.store.lock:
                return json_response(200, {"faults": dict(self.store.faults)})
        if parts == ["faults", "clear"]:  # `upgrader lab faults clear`
            if req.method != "POST":
                raise method_not_allowed()
            with self.store.lock:
                cleared = dict(self.store.faults)
                self.store.faults = {}
                self.store.mark_dirty()
            return json_response(200, {"cleared": cleared})
        if req.method != "POST":
            raise method_not_allowed() if parts else path_not_found()
        if parts == ["cluster", "version"]:
            data = self._admin_body(req)
            version = self._version_arg(data)
            assert version is not None
            self.set_cluster_version(version, addons=data.get("addons", True) is not False)
            return json_response(200, {"version": version})
        if parts == ["cluster", "addons"]:
            data = self._admin_body(req)
            version = self._version_arg(data)
            assert version is not None
            only = data.get("only")
            names = (
                tuple(str(x) for x in only) if isinstance(only, list) else ("coredns", "kube-proxy")
            )
            return json_response(200, {"updated": self.upgrade_addons(version, names)})
        if (
            len(parts) == 3
            and parts[0] == "nodes"
            and parts[2] in ("control-plane", "kubelet-restart", "power")
        ):
            data = self._admin_body(req)
            if parts[2] == "power":  # `upgrader lab restart-node`
                on = data.get("on")
                if not isinstance(on, bool):
                    raise bad_request("on: must be true or false")
                kv = self._version_arg(data, required=False)
                starts = data.get("starts", True)
                if not isinstance(starts, bool):
                    raise bad_request("starts: must be true or false")
                version = self.power(parts[1], on, kv, starts=starts)
                return json_response(200, {"node": parts[1], "on": on, "version": version})
            if parts[2] == "control-plane":
                version = self._version_arg(data)
                assert version is not None
                self.upgrade_control_plane(parts[1], version, self._repository_arg(data))
                return json_response(200, {"node": parts[1], "version": version})
            kv = self._version_arg(data, required=False)
            starts = data.get("starts", True)
            if not isinstance(starts, bool):
                raise bad_request("starts: must be true or false")
            version = self.restart_kubelet(parts[1], kv, starts=starts)
            return json_response(200, {"node": parts[1], "version": version})
        raise path_not_found()

    def set_cluster_version(self, version: str, addons: bool = True) -> None:
        """What kubeadm's upload-config phase does: the ClusterConfiguration in the
        kubeadm-config ConfigMap now says ``version`` (imageRepository kept). With
        ``addons`` (the old one-call admin API) the addons move too."""
        now = self.clock()
        with self.store.lock:
            self.store.cluster["version"] = version
            self.store.mark_dirty()
            cm = self.store.get("configmaps", "kube-system", "kubeadm-config")
            repository = self.image_repository()
            if cm is not None:
                new = copy.deepcopy(cm)
                cfg = self._cluster_config()
                name = str(cfg.get("clusterName") or self.spec.cluster_name)
                endpoint = str(
                    cfg.get("controlPlaneEndpoint") or ob.control_plane_endpoint(self.spec)
                )
                etcd = cfg.get("etcd") if isinstance(cfg.get("etcd"), dict) else None
                new.setdefault("data", {})["ClusterConfiguration"] = ob.cluster_configuration(
                    version, name, endpoint, etcd, repository
                )
                self.store.update("configmaps", new)
            else:
                self.store.create(
                    "configmaps",
                    ob.kubeadm_config_map(
                        version,
                        self.spec.cluster_name,
                        ob.control_plane_endpoint(self.spec),
                        now,
                        self.spec.etcd_external,
                        repository,
                    ),
                )
        if addons:
            self.upgrade_addons(version, ("coredns", "kube-proxy"))

    def upgrade_addons(self, version: str, names: tuple[str, ...]) -> list[str]:
        """What kubeadm's addon phase does (``EnsureDNSAddon``/``EnsureProxyAddon``): the
        kube-system ``coredns`` Deployment and ``kube-proxy`` DaemonSet get the images of
        ``version`` from the cluster's imageRepository. An addon the cluster does not have
        is left alone (kubeadm skips it with a warning). Returns the objects changed."""
        repository = self.image_repository()
        wanted = {
            "coredns": ("deployments", "coredns", ob.coredns_image(version, repository)),
            "kube-proxy": ("daemonsets", "kube-proxy", f"{repository}/kube-proxy:{version}"),
        }
        changed: list[str] = []
        with self.store.lock:
            for addon in names:
                if addon not in wanted:
                    raise bad_request(f"only: unknown addon {addon!r}")
                plural, name, image = wanted[addon]
                obj = self.store.get(plural, "kube-system", name)
                if obj is None:
                    continue
                new = copy.deepcopy(obj)
                for c in new["spec"]["template"]["spec"].get("containers") or []:
                    c["image"] = image
                if new != obj:
                    new["metadata"]["generation"] = int(new["metadata"].get("generation", 1)) + 1
                    self.store.update(plural, new)
                    changed.append(f"{plural}/{name}")
        return changed

    def _node_or_404(self, name: str) -> Json:
        node = self.store.get("nodes", "", name)
        if node is None:
            raise not_found(BY_PLURAL["nodes"], name)
        return node

    def upgrade_control_plane(
        self, node_name: str, version: str, repository: str = ob.DEFAULT_REPOSITORY
    ) -> None:
        now = self.clock()
        with self.store.lock:
            node = self._node_or_404(node_name)
            if not ob.is_control_plane(node):
                raise generic(409, f'node "{node_name}" is not a control-plane node')
            etcd = [] if self.spec.etcd_external else ["etcd"]
            for comp in (*ob.CP_COMPONENTS, *etcd):
                name = f"{comp}-{node_name}"
                fresh = ob.mirror_pod(comp, node, version, now, repository)
                old = self.store.get("pods", "kube-system", name)
                if old is not None:
                    new = copy.deepcopy(old)
                    new["metadata"]["annotations"] = fresh["metadata"]["annotations"]
                    new["spec"]["containers"] = fresh["spec"]["containers"]
                    if new == old:
                        continue
                    new["status"] = ob.running_status(new, node, now, ready=False)
                    new["status"]["qosClass"] = "Burstable"
                    stored = self.store.update("pods", new)
                else:
                    fresh["status"] = ob.running_status(fresh, node, now, ready=False)
                    stored = self.store.create("pods", fresh)
                self.store.timers[f"mirror-ready/{stored['metadata']['uid']}"] = {
                    "at": now + self.spec.delays.pod_startup,
                    "namespace": "kube-system",
                    "name": name,
                }
                self.store.mark_dirty()

    def power(self, node_name: str, on: bool, version: str | None, starts: bool = True) -> str:
        """The node went down (``on=False``: its kubelet stops posting status, so the node
        is Ready=Unknown at once, and every pod on it is Ready=False, to start again once
        the node is Ready: a ``pod-start`` timer) or came back (``on=True``: its kubelet
        started at ``version``, as :meth:`restart_kubelet`)."""
        if on:
            return self.restart_kubelet(node_name, version, starts=starts)
        now = self.clock()
        with self.store.lock:
            node = self._node_or_404(node_name)
            old = self.restart_kubelet(node_name, None, starts=False)
            for pod in self.store.list("pods"):
                spec = pod.get("spec") or {}
                if spec.get("nodeName") != node_name or (pod.get("metadata") or {}).get(
                    "deletionTimestamp"
                ):
                    continue
                if (pod.get("status") or {}).get("phase") != "Running":
                    continue
                new = copy.deepcopy(pod)
                new["status"] = ob.running_status(pod, node, now, ready=False)
                if (pod.get("status") or {}).get("qosClass"):
                    new["status"]["qosClass"] = pod["status"]["qosClass"]
                stored = self.store.update("pods", new)
                m = stored["metadata"]
                self.store.timers[f"pod-start/{m['uid']}"] = {
                    "at": now,
                    "namespace": m.get("namespace", ""),
                    "name": m["name"],
                }
            self.store.mark_dirty()
        return old

    def restart_kubelet(self, node_name: str, version: str | None, starts: bool = True) -> str:
        """The node's kubelet restarted at ``version``: NotReady, then Ready at that version
        after ``delays.kubelet_ready``. ``starts=False``: the new kubelet exits at once, so
        the node stops posting status (Ready Unknown) and keeps its old kubeletVersion."""
        now = self.clock()
        with self.store.lock:
            node = self._node_or_404(node_name)
            info = (node.get("status") or {}).get("nodeInfo") or {}
            v = version or str(info.get("kubeletVersion", ""))
            new = copy.deepcopy(node)
            if not starts:
                new["status"]["conditions"] = ob.node_conditions("Unknown", now)
                self.store.update("nodes", new)
                self.store.timers.pop(f"node-ready/{node_name}", None)
                self.store.mark_dirty()
                return str(info.get("kubeletVersion", ""))
            new["status"]["conditions"] = ob.node_conditions("False", now)
            new["status"].setdefault("nodeInfo", {})["bootID"] = info.get("bootID", ob.new_uid())
            self.store.update("nodes", new)
            self.store.timers[f"node-ready/{node_name}"] = {
                "at": now + self.spec.delays.kubelet_ready,
                "version": v,
            }
            self.store.mark_dirty()
        return v


def forbidden_terminating(rt: ResourceType, name: str, namespace: str) -> ApiError:
    msg = (
        f'{rt.plural} "{name}" is forbidden: unable to create new content in namespace '
        f"{namespace} because it is being terminated"
    )
    return ApiError(403, status_body(403, msg, "Forbidden", {"name": name, "kind": rt.plural}))


def _check_eviction(body: Json, t: Target) -> None:
    """An Eviction body's apiVersion, kind, name and namespace against the URL's."""
    av = body.get("apiVersion")
    if av and av not in ("policy/v1", "policy/v1beta1"):
        raise bad_request(
            f"the API version in the data ({av}) does not match the expected API version "
            "(policy/v1)"
        )
    if body.get("kind") and body["kind"] != "Eviction":
        raise bad_request(f"not a Eviction object: {body['kind']}")
    meta = body.get("metadata") or {}
    if meta.get("name") != t.name:
        raise bad_request("name in URL does not match name in Eviction object")
    if meta.get("namespace") and meta["namespace"] != t.namespace:
        raise bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )


def _seen_as(etype: str, matches_now: bool, matched_before: bool) -> str | None:
    """A store event as a watcher with a selector sees it: an object that starts to match
    is ADDED, one that stops matching is DELETED; None when it never matched."""
    if etype == "ADDED":
        return "ADDED" if matches_now else None
    if etype == "MODIFIED":
        if matches_now:
            return "MODIFIED" if matched_before else "ADDED"
        return "DELETED" if matched_before else None
    if etype == "DELETED" and (matches_now or matched_before):
        return "DELETED"
    return None
