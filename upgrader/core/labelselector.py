"""Kubernetes label selectors (``zone=a,tier notin (db),!spot``), as ``kubectl -l`` reads them.

Owns the parser and the matcher, following apimachinery's ``labels.Parse``: requirements
separated by commas, each one of ``k=v``/``k==v`` (the label is ``v``), ``k!=v`` (the label
is absent or not ``v``), ``k in (a,b)``, ``k notin (a,b)`` (absent, or none of them),
``k`` (present), ``!k`` (absent), ``k>n``/``k<n`` (present and an integer above/below
``n``); every requirement must hold. Keys are qualified names with an optional DNS
subdomain prefix (``topology.kubernetes.io/zone``); values are label values (at most 63
characters, alphanumeric at both ends, ``-_.`` inside, or empty). Whitespace between tokens
is ignored. A malformed selector raises :class:`~upgrader.errors.ConfigError` with one line
naming ``source`` (the flag or inventory field) and what is wrong.

Must not: do I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from upgrader.errors import ConfigError

__all__ = ["Requirement", "Selector", "parse"]

_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")
_SPECIAL = "=!(),<>"

OP_EQ, OP_NE, OP_IN, OP_NOTIN = "=", "!=", "in", "notin"
OP_EXISTS, OP_NOT_EXISTS, OP_GT, OP_LT = "exists", "!", "gt", "lt"


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        value = labels.get(self.key)
        if self.op in (OP_EQ, OP_IN):
            return has and value in self.values
        if self.op in (OP_NE, OP_NOTIN):
            return not has or value not in self.values
        if self.op == OP_EXISTS:
            return has
        if self.op == OP_NOT_EXISTS:
            return not has
        try:
            n = int(str(value))
        except ValueError:
            return False
        bound = int(self.values[0])
        return has and (n > bound if self.op == OP_GT else n < bound)

    def __str__(self) -> str:
        if self.op == OP_EXISTS:
            return self.key
        if self.op == OP_NOT_EXISTS:
            return f"!{self.key}"
        if self.op in (OP_IN, OP_NOTIN):
            return f"{self.key} {self.op} ({','.join(self.values)})"
        sign = {OP_EQ: "=", OP_NE: "!=", OP_GT: ">", OP_LT: "<"}[self.op]
        return f"{self.key}{sign}{self.values[0]}"


@dataclass(frozen=True)
class Selector:
    """Requirements that must all hold. ``str()`` gives the canonical text."""

    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "!=" and text[i : i + 2] in ("!=", "=="):
            out.append(text[i : i + 2])
            i += 2
        elif c in _SPECIAL:
            out.append(c)
            i += 1
        else:
            j = i
            while j < len(text) and not text[j].isspace() and text[j] not in _SPECIAL:
                j += 1
            out.append(text[i:j])
            i = j
    return out


def _is_word(tok: str | None) -> bool:
    return tok is not None and tok not in ("!=", "==") and tok not in _SPECIAL


def check_key(key: str, source: str) -> str:
    """``key`` if it is a valid label key, else a one-line :class:`ConfigError`."""
    prefix, _, name = key.rpartition("/")
    bad = None
    if "/" in key and not prefix:
        bad = "the prefix before '/' is empty"
    elif prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        bad = f"prefix {prefix!r} is not a DNS subdomain"
    elif not name:
        bad = "the name is empty"
    elif len(name) > 63:
        bad = "the name is longer than 63 characters"
    elif not _NAME.match(name):
        bad = "a name is alphanumeric at both ends with '-', '_' or '.' inside"
    if bad:
        raise ConfigError(f"{source}: invalid label key {key!r}: {bad}")
    return key


def _check_value(value: str, key: str, source: str) -> str:
    if value and (len(value) > 63 or not _NAME.match(value)):
        raise ConfigError(
            f"{source}: invalid value {value!r} for {key}: a label value has at most 63 "
            "characters, alphanumeric at both ends with '-', '_' or '.' inside"
        )
    return value


def parse(text: str, source: str = "--selector") -> Selector:
    """The selector ``text`` means; :class:`ConfigError` (one line naming ``source``) when
    it is malformed or empty."""
    toks = _tokens(text)
    if not toks:
        raise ConfigError(f"{source}: empty selector (e.g. zone=a or 'zone in (a,b)')")
    return _Parser(text, toks, source).selector()


class _Parser:
    """A recursive-descent reader of one selector's tokens."""

    def __init__(self, text: str, toks: list[str], source: str) -> None:
        self.text, self.toks, self.source, self.i = text, toks, source, 0

    def peek(self, k: int = 0) -> str | None:
        return self.toks[self.i + k] if self.i + k < len(self.toks) else None

    def fail(self, what: str) -> ConfigError:
        return ConfigError(f"{self.source}: {what} in {self.text.strip()!r}")

    def selector(self) -> Selector:
        reqs: list[Requirement] = []
        while True:
            reqs.append(self.requirement())
            nxt = self.peek()
            if nxt is None:
                break
            if nxt != ",":
                raise self.fail(f"expected ',' between requirements, found {nxt!r}")
            self.i += 1
            if self.peek() is None:
                raise self.fail("a trailing ',' needs a requirement after it")
        return Selector(tuple(reqs))

    def requirement(self) -> Requirement:
        if self.peek() == "!":
            self.i += 1
            key = self.peek()
            if not _is_word(key):
                raise self.fail("'!' must be followed by a label key")
            assert key is not None
            self.i += 1
            return Requirement(check_key(key, self.source), OP_NOT_EXISTS)
        key = self.peek()
        if not _is_word(key):
            raise self.fail(f"expected a label key, found {key or 'the end'!r}")
        assert key is not None
        check_key(key, self.source)
        self.i += 1
        op = self.peek()
        if op is None or op == ",":
            return Requirement(key, OP_EXISTS)
        if op in ("=", "==", "!=", ">", "<"):
            return self.comparison(key, op)
        if op in (OP_IN, OP_NOTIN):
            return self.set_of(key, op)
        raise self.fail(
            f"unknown operator {op!r} after {key} (use =, ==, !=, in, notin, or the key alone)"
        )

    def comparison(self, key: str, op: str) -> Requirement:
        self.i += 1
        value = self.peek()
        if _is_word(value):
            assert value is not None
            self.i += 1
        else:
            value = ""  # k= selects an empty value
        if op in (">", "<"):
            if not re.fullmatch(r"-?[0-9]+", value):
                raise self.fail(f"{key}{op} needs an integer, not {value!r}")
            return Requirement(key, OP_GT if op == ">" else OP_LT, (value,))
        kind = OP_NE if op == "!=" else OP_EQ
        return Requirement(key, kind, (_check_value(value, key, self.source),))

    def set_of(self, key: str, op: str) -> Requirement:
        self.i += 1
        if self.peek() != "(":
            raise self.fail(f"'{key} {op}' must be followed by '(values)'")
        self.i += 1
        values: list[str] = []
        if self.peek() == ")":
            raise self.fail(f"empty set of values after '{key} {op}'")
        while True:
            v = self.peek()
            if _is_word(v):
                assert v is not None
                values.append(_check_value(v, key, self.source))
                self.i += 1
            else:
                values.append("")
            sep = self.peek()
            if sep not in (",", ")"):
                raise self.fail(f"expected ',' or ')' in the values of {key}")
            self.i += 1
            if sep == ")":
                break
        return Requirement(key, op, tuple(dict.fromkeys(values)))
