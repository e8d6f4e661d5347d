"""Removed APIs: API versions a hop's target stops serving that are still in use.

Owns the shipped table of removals (``upgrader/data/removed_apis.json``, from the
Kubernetes "Deprecated API Migration Guide", one entry per group/version/kind and the
release that stops serving it), which removals fall within an upgrade, and two sources of
evidence that something still uses them:

* the API server's ``apiserver_requested_deprecated_apis`` gauge (label
  ``removed_release``): some client asked for the version since the server started
  (``REMOVED_API_REQUESTED``, one blocker per group/version/resource);
* ``kubectl.kubernetes.io/last-applied-configuration`` annotations: the manifest an object
  was last applied from names the version (``REMOVED_API_APPLIED``, one blocker per object,
  naming group, version, kind, namespace and name). Reapplying that manifest after the
  upgrade fails.

What could not be looked at is a ``REMOVED_API_UNCHECKED`` warning. A removal belongs to
the first hop whose minor reaches the release that removes it.

Must not: do I/O beyond reading the packaged table, or import paramiko, kubernetes, typer
or rich.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from upgrader.core.datafiles import data_file_document
from upgrader.core.model import Finding, Severity
from upgrader.core.versions import KubeVersion
from upgrader.errors import ConfigError

PACKAGED_NAME = "removed_apis.json"
METRIC = "apiserver_requested_deprecated_apis"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


@dataclass(frozen=True)
class RemovedApi:
    removed_in: tuple[int, int]  # (1, 25)
    group: str
    version: str
    kind: str
    resource: str
    replacement: str | None  # "policy/v1"; None: removed without one
    replacement_since: str | None = None
    note: str | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def removed_str(self) -> str:
        return f"{self.removed_in[0]}.{self.removed_in[1]}"

    def advice(self) -> str:
        if self.replacement is None:
            return f"{self.kind} {self.api_version} has no replacement" + (
                f": {self.note}" if self.note else ""
            )
        since = f" (served since {self.replacement_since})" if self.replacement_since else ""
        return f"move to {self.replacement}{since}"


def _minor(text: Any, where: str) -> tuple[int, int]:
    m = re.fullmatch(r"v?(\d+)\.(\d+)", str(text))
    if not m:
        raise ConfigError(f"{where}: {text!r} is not a minor like 1.25")
    return int(m.group(1)), int(m.group(2))


def parse_removed_apis(data: Any, origin: str) -> tuple[RemovedApi, ...]:
    if not isinstance(data, dict) or not isinstance(data.get("removals"), list):
        raise ConfigError(f"{origin}: expected an object with a 'removals' list")
    out: list[RemovedApi] = []
    for i, e in enumerate(data["removals"]):
        where = f"{origin}: removals[{i}]"
        if not isinstance(e, dict):
            raise ConfigError(f"{where}: must be an object")
        for key in ("group", "version", "kind", "resource"):
            if not isinstance(e.get(key), str) or (key != "group" and not e[key]):
                raise ConfigError(f"{where}.{key}: must be a string")
        repl = e.get("replacement")
        if repl is not None and not isinstance(repl, str):
            raise ConfigError(f"{where}.replacement: must be a string or null")
        out.append(
            RemovedApi(
                removed_in=_minor(e.get("removed_in"), f"{where}.removed_in"),
                group=e["group"],
                version=e["version"],
                kind=e["kind"],
                resource=e["resource"],
                replacement=repl,
                replacement_since=e.get("replacement_since"),
                note=e.get("note"),
            )
        )
    return tuple(out)


def load_removed_apis(path: Path | None = None) -> tuple[RemovedApi, ...]:
    """The packaged table, or an operator's refreshed copy at ``path``."""
    document, origin = data_file_document(PACKAGED_NAME, path, "removed-API table")
    return parse_removed_apis(document, origin)


def removed_between(
    table: Iterable[RemovedApi], current: KubeVersion, target: KubeVersion
) -> list[RemovedApi]:
    """Removals a cluster crosses going from ``current`` to ``target`` (minor above the
    current one, up to and including the target's)."""
    return [r for r in table if current.minor_key < r.removed_in <= target.minor_key]


def hop_for(removed_in: tuple[int, int], hops: Sequence[KubeVersion]) -> KubeVersion | None:
    """The first hop that reaches ``removed_in``."""
    for h in hops:
        if h.minor_key >= removed_in:
            return h
    return None


def scan_targets(
    table: Iterable[RemovedApi], current: KubeVersion, target: KubeVersion
) -> list[tuple[str, str]]:
    """(group, resource) pairs whose objects to list for annotations: the group the
    replacement lives in (the removed version's group when there is none)."""
    pairs = (
        (
            r.replacement.split("/", 1)[0]
            if r.replacement is not None and "/" in r.replacement
            else r.group,
            r.resource,
        )
        for r in removed_between(table, current, target)
    )
    return list(dict.fromkeys(pairs))  # each once, in the table's order


# --------------------------------------------------------------------------- the metric


@dataclass(frozen=True)
class DeprecatedRequest:
    group: str
    version: str
    resource: str
    subresource: str
    removed_release: str  # "1.25" or "" (deprecated, no removal planned)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_deprecated_api_metric(text: str) -> list[DeprecatedRequest]:
    """``apiserver_requested_deprecated_apis{group="policy",removed_release="1.25",
    resource="poddisruptionbudgets",subresource="",version="v1beta1"} 1`` lines of a
    Prometheus text exposition; samples with value 0 are skipped, a repeated one kept once."""
    return list(dict.fromkeys(_deprecated_requests(text)))


def _deprecated_requests(text: str) -> Iterator[DeprecatedRequest]:
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith(METRIC + "{"):
            continue
        end = line.rfind("}")
        if end == -1:
            continue
        labels = {
            k: v.replace('\\"', '"').replace("\\\\", "\\")
            for k, v in _LABEL.findall(line[len(METRIC) + 1 : end])
        }
        try:
            value = float(line[end + 1 :].split()[0])
        except (IndexError, ValueError):
            continue
        if value <= 0:
            continue
        yield DeprecatedRequest(
            group=labels.get("group", ""),
            version=labels.get("version", ""),
            resource=labels.get("resource", ""),
            subresource=labels.get("subresource", ""),
            removed_release=labels.get("removed_release", ""),
        )


# --------------------------------------------------------------------------- annotations


@dataclass(frozen=True)
class AppliedObject:
    """An object listed for the scan: its kind and name, and its last-applied annotation."""

    kind: str
    namespace: str
    name: str
    last_applied: str | None


def applied_as(last_applied: str | None) -> tuple[str, str] | None:
    """(apiVersion, kind) the object was last applied with, from the annotation's JSON."""
    if not last_applied:
        return None
    try:
        doc = json.loads(last_applied)
    except json.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    av, kind = doc.get("apiVersion"), doc.get("kind")
    if isinstance(av, str) and isinstance(kind, str) and av and kind:
        return av, kind
    return None


# --------------------------------------------------------------------------- findings


def check_removed_apis(
    table: Sequence[RemovedApi],
    current: KubeVersion,
    hops: Sequence[KubeVersion],
    *,
    requests: Sequence[DeprecatedRequest] | None,
    objects: Sequence[AppliedObject] | None,
    unchecked: Sequence[str] = (),
) -> list[Finding]:
    """Blockers for every removal within ``hops`` that the metric or an annotation shows in
    use. ``requests``/``objects`` None: that source was not read (``unchecked`` says why;
    reported only when the table lists a removal within the hops)."""
    if not hops:
        return []
    target = max(hops)
    removals = removed_between(table, current, target)
    out: list[Finding] = []
    if requests is not None:
        out += _requested(table, current, hops, requests)
    if objects is not None:
        out += _applied(removals, hops, objects)
    for why in unchecked if removals else ():
        out.append(
            Finding(
                "REMOVED_API_UNCHECKED",
                Severity.WARNING,
                f"removed-API usage not fully checked: {why}",
                None,
                "grant the read access `upgrader rbac` lists, or check by hand (kubectl get "
                f"--raw /metrics | grep {METRIC})",
            )
        )
    return out


def _requested(
    table: Sequence[RemovedApi],
    current: KubeVersion,
    hops: Sequence[KubeVersion],
    requests: Sequence[DeprecatedRequest],
) -> list[Finding]:
    """The removals within ``hops`` that clients still request (the metric)."""
    target = max(hops)
    out: list[Finding] = []
    for r in requests:
        if not r.removed_release:
            continue
        try:
            rel = _minor(r.removed_release, METRIC)
        except ConfigError:
            continue
        if not (current.minor_key < rel <= target.minor_key):
            continue
        hop = hop_for(rel, hops)
        known = next(
            (
                x
                for x in table
                if x.group == r.group and x.version == r.version and x.resource == r.resource
            ),
            None,
        )
        what = f"{r.api_version} {r.resource}" + (f"/{r.subresource}" if r.subresource else "")
        advice = known.advice() if known is not None else "move to a served version"
        out.append(
            Finding(
                "REMOVED_API_REQUESTED",
                Severity.BLOCKER,
                f"clients still request {what} (the API server's {METRIC} since it "
                f"started), which {hop} stops serving (removed in {r.removed_release})",
                None,
                f"{advice}: find the clients in the audit log or by user agent, update "
                "them and their manifests; the gauge resets when kube-apiserver restarts",
            )
        )
    return out


def _applied(
    removals: Sequence[RemovedApi], hops: Sequence[KubeVersion], objects: Sequence[AppliedObject]
) -> list[Finding]:
    """The objects last applied with a version removed within ``hops`` (annotations)."""
    by_api = {(x.api_version, x.kind): x for x in removals}
    out: list[Finding] = []
    for o in objects:
        applied = applied_as(o.last_applied)
        if applied is None:
            continue
        hit = by_api.get(applied)
        if hit is None:
            continue
        hop = hop_for(hit.removed_in, hops)
        where = f"{o.namespace}/{o.name}" if o.namespace else o.name
        out.append(
            Finding(
                "REMOVED_API_APPLIED",
                Severity.BLOCKER,
                f"{hit.kind} {where} was last applied as {hit.api_version} (group "
                f'"{hit.group}", version {hit.version}), which {hop} stops serving '
                f"(removed in {hit.removed_str})",
                None,
                f"{hit.advice()}: update the manifest and re-apply it (kubectl apply), so "
                "its last-applied-configuration names a served version",
            )
        )
    return out
