"""``--pod-selector`` (which pods a drain removes, as ``kubectl drain --pod-selector``):
a Kubernetes label selector applied to pods.

Owns :func:`parse_selector` and :func:`canonical`: the grammar, the label key/value rules
and the matching are :mod:`upgrader.core.labelselector`'s (the one parser, shared with the
Node ``--selector``); this module adds what a pod selector needs on top of it: an empty
selector matches every pod, a pod's ``metadata.labels`` are matched, control characters
and overlong text are refused, and errors are :class:`SelectorError` (a ``ValueError``,
for pydantic validators) with the one-line message.

Must not: do I/O, or import paramiko, kubernetes, typer or rich.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from upgrader.core.labelselector import Requirement, parse
from upgrader.errors import ConfigError

MAX_LENGTH = 4096


class SelectorError(ValueError):
    """The selector text is not a valid label selector (the message says where)."""


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
        return ",".join(str(r) for r in self.requirements)


def parse_selector(text: str) -> PodSelector:
    """Parse ``text``; raises :class:`SelectorError` (one line) when it is not valid."""
    if not isinstance(text, str):
        raise SelectorError(f"expected a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH or not text.isprintable():
        raise SelectorError("too long or contains control characters")
    if not text.strip():
        return PodSelector()
    try:
        return PodSelector(parse(text, "").requirements)
    except ConfigError as e:
        raise SelectorError(str(e).removeprefix(": ")) from None


def canonical(text: str) -> str:
    """The canonical text of a valid selector (raises :class:`SelectorError`)."""
    return parse_selector(text).text()


__all__ = ["PodSelector", "SelectorError", "canonical", "parse_selector"]
