"""Kubernetes label selectors in their text form, for ``--pod-selector`` (which pods a
drain removes), as ``kubectl drain --pod-selector`` takes them.

Owns :func:`parse_selector` (``k8s.io/apimachinery/pkg/labels.Parse``'s grammar: a
comma-separated list of requirements ``key``, ``!key``, ``key=value``, ``key==value``,
``key!=value``, ``key in (v1,v2)``, ``key notin (v1,v2)``, ``key>N``, ``key<N``; an empty
selector matches every pod), the label key/value rules (a qualified name, an optional
DNS-subdomain prefix; values of at most 63 characters), matching against a pod's labels
and the canonical text of a selector. Self-contained on purpose (the Node selector of
``upgrader.core.labelselector`` is a separate module).

Must not: do I/O, or import paramiko, kubernetes, typer or rich.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_NAME_RE = re.compile(rf"^{_NAME}$")
_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
_PREFIX_RE = re.compile(rf"^{_DNS_LABEL}(?:\.{_DNS_LABEL})*$")
_INT_RE = re.compile(r"^-?[0-9]+$")
MAX_LENGTH = 4096

OPS = ("exists", "!", "=", "!=", "in", "notin", "gt", "lt")


class SelectorError(ValueError):
    """The selector text is not a valid label selector (the message says where)."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # one of OPS
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        if self.op in ("=", "in"):
            return has and value in self.values
        if self.op in ("!=", "notin"):
            return not has or value not in self.values
        if not has or value is None or not _INT_RE.match(value):
            return False
        bound = int(self.values[0])
        return int(value) > bound if self.op == "gt" else int(value) < bound

    def text(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!":
            return f"!{self.key}"
        if self.op in ("=", "!="):
            return f"{self.key}{self.op}{self.values[0]}"
        if self.op in ("gt", "lt"):
            return f"{self.key}{'>' if self.op == 'gt' else '<'}{self.values[0]}"
        return f"{self.key} {self.op} ({','.join(self.values)})"


@dataclass(frozen=True)
class PodSelector:
    """A parsed selector; no requirement matches every pod."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        lab = {str(k): str(v) for k, v in (labels or {}).items()}
        return all(r.matches(lab) for r in self.requirements)

    def matches_pod(self, pod: Mapping[str, object]) -> bool:
        md = pod.get("metadata")
        labels = md.get("labels") if isinstance(md, Mapping) else None
        return self.matches(labels if isinstance(labels, Mapping) else None)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def text(self) -> str:
        """The canonical text (requirements in the given order, no blanks but in sets)."""
        return ",".join(r.text() for r in self.requirements)


def check_key(key: str) -> str:
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not _PREFIX_RE.match(prefix)):
        raise SelectorError(
            f"label key {key!r}: the prefix must be a DNS subdomain (lowercase, '-', '.')"
        )
    if not _NAME_RE.match(name):
        raise SelectorError(
            f"label key {key!r}: the name must be 1-63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return key


def check_value(value: str) -> str:
    if value and not _NAME_RE.match(value):
        raise SelectorError(
            f"label value {value!r}: at most 63 letters, digits, '-', '_' or '.', starting "
            "and ending with a letter or digit"
        )
    return value


def _split_top(text: str) -> list[str]:
    """Split at commas outside parentheses."""
    parts: list[str] = []
    depth = 0
    cur = ""
    for ch in text:
        if ch == "(":
            depth += 1
            if depth > 1:
                raise SelectorError("nested '(' in a set of values")
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError("')' without '('")
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if depth:
        raise SelectorError("'(' without ')'")
    parts.append(cur)
    return parts


_SET_RE = re.compile(r"^(?P<key>[^\s!=<>(),]+)\s+(?P<op>in|notin)\s*\((?P<vals>[^()]*)\)$")
_CMP_RE = re.compile(r"^(?P<key>[^\s!=<>(),]+)\s*(?P<op>==|!=|=|>|<)\s*(?P<val>[^\s!=<>(),]*)$")


def _requirement(part: str) -> Requirement:
    text = part.strip()
    if not text:
        raise SelectorError("an empty requirement (two commas, or a comma at an end)")
    m = _SET_RE.match(text)
    if m:
        values = tuple(check_value(v.strip()) for v in m["vals"].split(","))
        if m["vals"].strip() == "":
            raise SelectorError(f"{text!r}: a set of values needs at least one value")
        return Requirement(check_key(m["key"]), m["op"], tuple(sorted(set(values))))
    m = _CMP_RE.match(text)
    if m:
        op = {"==": "=", ">": "gt", "<": "lt"}.get(m["op"], m["op"])
        val = m["val"]
        if op in ("gt", "lt") and not _INT_RE.match(val):
            raise SelectorError(f"{text!r}: '>' and '<' need an integer")
        return Requirement(check_key(m["key"]), op, (check_value(val),))
    if text.startswith("!"):
        return Requirement(check_key(text[1:].strip()), "!")
    if re.fullmatch(r"[^\s!=<>(),]+", text):
        return Requirement(check_key(text), "exists")
    raise SelectorError(
        f"{text!r} is not a requirement (key, !key, key=value, key!=value, "
        "key in (a,b), key notin (a,b), key>N, key<N)"
    )


def parse_selector(text: str) -> PodSelector:
    """Parse ``text``; raises :class:`SelectorError` (one line) when it is not valid."""
    if not isinstance(text, str):
        raise SelectorError(f"expected a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH or not text.isprintable():
        raise SelectorError("too long or contains control characters")
    if not text.strip():
        return PodSelector()
    return PodSelector(tuple(_requirement(p) for p in _split_top(text)))


def canonical(text: str) -> str:
    """The canonical text of a valid selector (raises :class:`SelectorError`)."""
    return parse_selector(text).text()


__all__ = [
    "PodSelector",
    "Requirement",
    "SelectorError",
    "canonical",
    "check_key",
    "check_value",
    "parse_selector",
]
