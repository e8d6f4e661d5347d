"""The three PATCH flavours the API server accepts: JSON patch, merge patch, strategic merge.

Owns RFC 6902 (``application/json-patch+json``), RFC 7386 (``application/merge-patch+json``)
and a Kubernetes strategic merge patch (``application/strategic-merge-patch+json``) with the
directives ``kubectl`` sends (``$patch``, ``$setElementOrder/``, ``$retainKeys``,
``$deleteFromPrimitiveList/``) and the merge keys of the fields of the kinds served.
Pure: inputs are never mutated; must not do I/O.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

# list field name -> merge key (patchStrategy=merge, patchMergeKey=...)
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "conditions": "type",
    "ownerReferences": "uid",
    "addresses": "type",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
}
# primitive lists merged as sets (patchStrategy=merge without a key)
MERGE_PRIMITIVES = frozenset({"finalizers", "podCIDRs"})


class PatchError(ValueError):
    """The patch document is malformed or cannot apply (-> 422 / 400 by the caller)."""


# --------------------------------------------------------------------------- merge patch


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


# --------------------------------------------------------------------------- JSON patch


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _slot(container: Any, part: str) -> str | int | None:
    """What ``part`` names in ``container``: a key of an object or an index of an array
    (Python's, so ``-1`` is the last); None when it names nothing there."""
    if isinstance(container, dict):
        return part if part in container else None
    if isinstance(container, list):
        try:
            index = int(part)
        except ValueError:
            return None
        return index if -len(container) <= index < len(container) else None
    return None


def _child(cur: Any, part: str, path: str) -> Any:
    """The member ``part`` of ``cur`` on the way along ``path``."""
    slot = _slot(cur, part)
    if slot is None:
        raise PatchError(f"doc is missing path: {path!r}")
    return cur[slot]


def _resolve_parent(doc: Any, parts: list[str], path: str) -> tuple[Any, str]:
    cur = doc
    for p in parts[:-1]:
        cur = _child(cur, p, path)
    return cur, parts[-1]


def _get(doc: Any, path: str) -> Any:
    cur = doc
    for p in _pointer(path):
        cur = _child(cur, p, path)
    return cur


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent, last = _resolve_parent(doc, parts, path)
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            try:
                i = int(last)
            except ValueError:
                raise PatchError(f"invalid array index {last!r}") from None
            if i < 0 or i > len(parent):
                raise PatchError(f"array index out of bounds: {path!r}")
            parent.insert(i, value)
    else:
        raise PatchError(f"doc is missing path: {path!r}")
    return doc


def _remove(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        raise PatchError("cannot remove the document root")
    parent, last = _resolve_parent(doc, parts, path)
    slot = _slot(parent, last)
    if slot is None:
        if isinstance(parent, dict):
            raise PatchError(f"unable to remove nonexistent key: {last}: missing value")
        if isinstance(parent, list):
            raise PatchError(f"unable to remove index {last!r}")
        raise PatchError(f"doc is missing path: {path!r}")
    del parent[slot]
    return doc


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test)."""
    if not isinstance(ops, list):
        raise PatchError("json patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError("each json patch operation needs 'op' and 'path'")
        kind, path = op["op"], op["path"]
        if not isinstance(path, str):
            raise PatchError("json patch 'path' must be a string")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            doc = _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            doc = _remove(doc, path) if _pointer(path) else doc
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind in ("move", "copy"):
            src = op.get("from")
            if not isinstance(src, str):
                raise PatchError(f"json patch '{kind}' needs 'from'")
            value = copy.deepcopy(_get(doc, src))
            if kind == "move":
                doc = _remove(doc, src)
            doc = _add(doc, path, value)
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise PatchError(f"testing value {path} failed")
        else:
            raise PatchError(f"unexpected kind of json patch operation: {kind!r}")
    return doc


# --------------------------------------------------------------------------- strategic


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Kubernetes strategic merge patch of ``patch`` onto ``target``."""
    if not isinstance(patch, dict):
        raise PatchError("strategic merge patch must be a JSON object")
    base = copy.deepcopy(target) if isinstance(target, dict) else {}
    return _smp_map(base, patch)


def _smp_map(orig: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return {}
    retain = patch.get("$retainKeys")
    orders: dict[str, list[Any]] = {}
    for k, v in patch.items():
        if k in ("$patch", "$retainKeys"):
            continue
        if k.startswith("$setElementOrder/"):
            if isinstance(v, list):
                orders[k.split("/", 1)[1]] = v
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            cur = orig.get(field)
            if isinstance(cur, list) and isinstance(v, list):
                orig[field] = [x for x in cur if x not in v]
            continue
        if v is None:
            orig.pop(k, None)
            continue
        cur = orig.get(k)
        if isinstance(v, dict):
            if v.get("$patch") == "delete":
                orig.pop(k, None)
            elif isinstance(cur, dict):
                orig[k] = _smp_map(cur, v)
            else:
                orig[k] = _smp_map({}, v)
        elif isinstance(v, list):
            orig[k] = _smp_list(k, cur if isinstance(cur, list) else [], v)
        else:
            orig[k] = copy.deepcopy(v)
    for field, order in orders.items():
        cur = orig.get(field)
        if isinstance(cur, list):
            orig[field] = _apply_order(field, cur, order)
    if isinstance(retain, list):
        keep = set(retain)
        for k in list(orig):
            if k not in keep:
                del orig[k]
    return orig


def _smp_list(field: str, orig: list[Any], patch: list[Any]) -> list[Any]:
    key = MERGE_KEYS.get(field)
    if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in patch):
        return [copy.deepcopy(x) for x in patch if not (isinstance(x, dict) and "$patch" in x)]
    if field in MERGE_PRIMITIVES and all(not isinstance(x, dict | list) for x in patch):
        out = list(orig)
        for x in patch:
            if x not in out:
                out.append(x)
        return out
    if key is None or not all(isinstance(x, dict) for x in patch):
        return [copy.deepcopy(x) for x in patch]
    out = [copy.deepcopy(x) for x in orig]
    for item in patch:
        assert isinstance(item, dict)
        kv = item.get(key)
        idx = next((i for i, o in enumerate(out) if isinstance(o, dict) and o.get(key) == kv), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                del out[idx]
            continue
        if idx is None:
            out.append(_smp_map({}, item))
        else:
            out[idx] = _smp_map(out[idx], item)
    return out


def _apply_order(field: str, items: list[Any], order: list[Any]) -> list[Any]:
    key = MERGE_KEYS.get(field)

    def ident(x: Any) -> Any:
        if key is not None and isinstance(x, dict):
            return x.get(key)
        return x

    wanted = [ident(o) for o in order]
    pos = {w: i for i, w in enumerate(wanted) if isinstance(w, str | int | float | bool)}
    ordered = sorted(
        enumerate(items),
        key=lambda p: (pos.get(ident(p[1]), len(wanted) + p[0]), p[0]),
    )
    return [x for _, x in ordered]


_PATCHERS: dict[str, Callable[[Any, Any], Any]] = {
    "application/json-patch+json": json_patch,
    "application/merge-patch+json": merge_patch,
    "application/strategic-merge-patch+json": strategic_merge_patch,
}


def apply_patch(content_type: str, target: Any, patch: Any) -> Any:
    """Dispatch on the PATCH request's media type (parameters ignored)."""
    patcher = _PATCHERS.get(content_type.split(";", 1)[0].strip().lower())
    if patcher is None:
        raise PatchError(f"unsupported patch type {content_type!r}")
    return patcher(target, patch)
