"""Label and field selectors, parsed and matched like the real API server.

Owns the ``labelSelector``/``fieldSelector`` query grammar (``a=b,c!=d,e in (x,y),!f``) and
``metav1.LabelSelector`` (matchLabels/matchExpressions) evaluation. Pure; must not do I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from upgrader_lab.apiserver.status import bad_request


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        val = labels.get(self.key)
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        if self.op in ("=", "in"):
            return has and val in self.values
        if self.op in ("!=", "notin"):
            return not has or val not in self.values
        if self.op in ("gt", "lt"):
            try:
                n = int(val or "")
                bound = int(self.values[0])
            except ValueError:
                return False
            return n > bound if self.op == "gt" else n < bound
        return False


LabelSelector = tuple[Requirement, ...]


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    depth = 0
    cur: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def _check_key(key: str, raw: str) -> str:
    key = key.strip()
    if not key or any(c in key for c in " =!(),<>"):
        raise bad_request(f"unable to parse requirement: invalid label key {key!r} in {raw!r}")
    return key


def parse_label_selector(text: str) -> LabelSelector:
    """Parse the ``labelSelector`` query parameter; raises ApiError(400) when malformed."""
    reqs: list[Requirement] = []
    if not text.strip():
        return ()
    for part in _split_top(text):
        p = part.strip()
        if not p:
            raise bad_request(
                f"unable to parse requirement: found '', expected: identifier ({text!r})"
            )
        low = p
        for op_word, op in ((" notin ", "notin"), (" in ", "in")):
            idx = low.find(op_word)
            if idx > 0:
                key = _check_key(p[:idx], text)
                rest = p[idx + len(op_word) :].strip()
                if not (rest.startswith("(") and rest.endswith(")")):
                    raise bad_request(f"unable to parse requirement: found {rest!r}, expected: '('")
                vals = tuple(v.strip() for v in rest[1:-1].split(",") if v.strip())
                reqs.append(Requirement(key, op, vals))
                break
        else:
            if p.startswith("!"):
                reqs.append(Requirement(_check_key(p[1:], text), "!"))
            else:
                reqs.append(_binary_or_exists(p, text))
    return tuple(reqs)


# The binary operators in the order the parser tries them (``!=`` before ``=``, ``==``
# before ``=``) and the operation each one means.
_BINARY_OPS = (("!=", "!="), ("==", "="), ("=", "="), (">", "gt"), ("<", "lt"))


def _binary_or_exists(p: str, text: str) -> Requirement:
    for sep, op in _BINARY_OPS:
        if sep in p:
            k, v = p.split(sep, 1)
            return Requirement(_check_key(k, text), op, (v.strip(),))
    return Requirement(_check_key(p, text), "exists")


def matches(selector: LabelSelector, labels: Mapping[str, str] | None) -> bool:
    lab = labels or {}
    return all(r.matches(lab) for r in selector)


def from_label_selector_object(sel: Any) -> LabelSelector | None:
    """``metav1.LabelSelector`` -> requirements; None when the selector is invalid."""
    if not isinstance(sel, Mapping):
        return None
    reqs: list[Requirement] = []
    ml = sel.get("matchLabels") or {}
    if not isinstance(ml, Mapping):
        return None
    for k, v in sorted(ml.items()):
        reqs.append(Requirement(str(k), "=", (str(v),)))
    for e in sel.get("matchExpressions") or []:
        if not isinstance(e, Mapping):
            return None
        op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}.get(
            str(e.get("operator"))
        )
        if op is None:
            return None
        reqs.append(
            Requirement(str(e.get("key")), op, tuple(str(x) for x in e.get("values") or []))
        )
    return tuple(reqs)


# --------------------------------------------------------------------------- fields


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    op: str  # "=" or "!="
    value: str


FieldSelector = tuple[FieldRequirement, ...]


def _unescape(text: str) -> str:
    """Field selector values escape ``\\``, ``,`` and ``=`` with a backslash."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def parse_field_selector(text: str, allowed: tuple[str, ...]) -> FieldSelector:
    """Parse ``fieldSelector``; unknown field labels give the real server's 400."""
    reqs: list[FieldRequirement] = []
    if not text.strip():
        return ()
    for part in _split_escaped_commas(text):
        if not part:
            continue
        if "!=" in part:
            k, v = part.split("!=", 1)
            op = "!="
        elif "==" in part:
            k, v = part.split("==", 1)
            op = "="
        elif "=" in part:
            k, v = part.split("=", 1)
            op = "="
        else:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        k = k.strip()
        if k not in allowed:
            raise bad_request(f"field label not supported: {k}")
        reqs.append(FieldRequirement(k, op, _unescape(v)))
    return tuple(reqs)


def _split_escaped_commas(text: str) -> list[str]:
    out: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(ch + text[i + 1])
            i += 2
            continue
        if ch == ",":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def field_value(obj: Mapping[str, Any], path: str) -> str:
    cur: Any = obj
    for seg in path.split("."):
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(seg)
    if cur is None:
        return "false" if path in ("spec.unschedulable", "spec.hostNetwork") else ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def field_matches(selector: FieldSelector, obj: Mapping[str, Any]) -> bool:
    for r in selector:
        v = field_value(obj, r.field)
        if r.op == "=" and v != r.value:
            return False
        if r.op == "!=" and v == r.value:
            return False
    return True


def compile_filters(
    label_text: str, field_text: str, allowed: tuple[str, ...]
) -> Callable[[Mapping[str, Any]], bool]:
    """One predicate for both selectors of a list/watch request."""
    ls = parse_label_selector(label_text)
    fs = parse_field_selector(field_text, allowed)

    def pred(obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        return matches(ls, meta.get("labels")) and field_matches(fs, obj)

    return pred


def selector_string(sel: Any) -> str:
    """A LabelSelector object as its string form (apimachinery ``FormatLabelSelector``:
    matchLabels ``k=v`` then matchExpressions ``k in (a,b)``, ``k notin (a)``, ``k``, ``!k``,
    sorted by key as ``labels.Selector.String`` does)."""
    if not isinstance(sel, dict):
        return ""
    parts: list[tuple[str, str]] = []
    for k, v in (sel.get("matchLabels") or {}).items():
        parts.append((str(k), f"{k}={v}"))
    for e in sel.get("matchExpressions") or []:
        key, op = str(e.get("key", "")), str(e.get("operator", ""))
        values = ",".join(sorted(str(v) for v in e.get("values") or []))
        text = {
            "In": f"{key} in ({values})",
            "NotIn": f"{key} notin ({values})",
            "Exists": key,
            "DoesNotExist": f"!{key}",
        }.get(op, key)
        parts.append((key, text))
    return ",".join(t for _, t in sorted(parts))
