"""Release data: which Kubernetes minors exist, their patches, release and EOL dates.

Owns the shipped release table (``upgrader/data/releases.json``, package data read with
``importlib.resources``) and the loader of an operator-supplied refresh of it (the CLI's
``--release-data FILE``; ``scripts/refresh_releases.py`` writes one). The data answers
"what is the newest patch of 1.30?" (intermediate hops), "is v1.31.4 a real release?"
and "which minors are still supported today?". Nothing here downloads anything: the tool
never depends on a live lookup.

JSON schema (version 1)::

    {"schema": 1, "generated": "YYYY-MM-DD", "source": "...",
     "minors": {"1.30": {"released": "YYYY-MM-DD", "eol": "YYYY-MM-DD",
                         "latest": "v1.30.14", "patches": ["v1.30.0", ...]}}}

``patches`` may be omitted (then ``v1.N.0`` .. ``latest``); when given it must hold final
releases of that minor only and include ``latest`` as its newest entry.

Support window (:meth:`ReleaseData.supported_minors`): among minors the data says were
released on or before ``today`` and whose EOL date is on or after ``today``, the newest
three. Kubernetes patches the newest three minors; the EOL dates make the window shrink
as soon as a branch ends even if the data is older than the next release.

Must not: do network I/O or import paramiko, kubernetes, typer or rich. Reading the
packaged file or the one explicit path given is its only I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from upgrader.core.versions import KubeVersion, VersionError
from upgrader.errors import ConfigError

SCHEMA_VERSION = 1
SUPPORTED_MINOR_COUNT = 3
PACKAGED_NAME = "releases.json"

MinorKey = tuple[int, int]

_MINOR_RE = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)", re.ASCII)


@dataclass(frozen=True)
class MinorRelease:
    """One minor release series (``1.30``): dates, newest patch, every known patch."""

    minor: MinorKey
    released: date
    eol: date
    latest: KubeVersion
    patches: tuple[KubeVersion, ...]

    @property
    def name(self) -> str:
        return f"{self.minor[0]}.{self.minor[1]}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "released": self.released.isoformat(),
            "eol": self.eol.isoformat(),
            "latest": str(self.latest),
            "patches": [str(p) for p in self.patches],
        }


def _key(minor: MinorKey | KubeVersion) -> MinorKey:
    return minor.minor_key if isinstance(minor, KubeVersion) else (minor[0], minor[1])


@dataclass(frozen=True)
class ReleaseData:
    """The release table. ``minors`` is keyed by ``(major, minor)``."""

    minors: Mapping[MinorKey, MinorRelease]
    generated: date
    source: str = ""
    origin: str = field(default="packaged", compare=False)  # file it was read from

    def get(self, minor: MinorKey | KubeVersion) -> MinorRelease | None:
        """The series of ``minor`` (a ``(major, minor)`` key or any version of it)."""
        return self.minors.get(_key(minor))

    def newest_patch(self, minor: MinorKey | KubeVersion) -> KubeVersion | None:
        """Newest known patch of ``minor``, or None when the data has no such minor."""
        rel = self.get(minor)
        return rel.latest if rel is not None else None

    @property
    def newest_minor(self) -> MinorKey:
        return max(self.minors)

    @property
    def oldest_minor(self) -> MinorKey:
        return min(self.minors)

    def supported_minors(self, today: date) -> list[MinorKey]:
        """The support window on ``today``, oldest first: the newest three minors that
        were released on or before ``today`` and whose EOL date is on or after it."""
        live = sorted(k for k, r in self.minors.items() if r.released <= today and r.eol >= today)
        return live[-SUPPORTED_MINOR_COUNT:]

    def is_supported(self, minor: MinorKey | KubeVersion, today: date) -> bool:
        return _key(minor) in self.supported_minors(today)

    def knows(self, version: KubeVersion) -> bool:
        """True when ``version`` is a final release listed in the data (pre-releases and
        patches newer than the data are unknown)."""
        rel = self.get(version)
        return rel is not None and version in rel.patches

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "generated": self.generated.isoformat(),
            "source": self.source,
            "minors": {r.name: r.to_dict() for _, r in sorted(self.minors.items())},
        }


# --------------------------------------------------------------------------- loading


def _date(value: Any, where: str) -> date:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: must be a YYYY-MM-DD date string")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{where}: invalid date {value!r} (expected YYYY-MM-DD)") from None


def _version(value: Any, where: str) -> KubeVersion:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: must be a version string like v1.30.4")
    try:
        return KubeVersion.parse(value)
    except VersionError as e:
        raise ConfigError(f"{where}: {e}") from None


def _minor_release(name: str, raw: Any, where: str) -> MinorRelease:
    m = _MINOR_RE.fullmatch(name)
    if not m:
        raise ConfigError(f"{where}: key {name!r} is not a MAJOR.MINOR minor like '1.30'")
    key: MinorKey = (int(m.group(1)), int(m.group(2)))
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a mapping")
    unknown = sorted(set(raw) - {"released", "eol", "latest", "patches"})
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(map(str, unknown))}")
    for req in ("released", "eol", "latest"):
        if req not in raw:
            raise ConfigError(f"{where}.{req}: missing")
    released = _date(raw["released"], f"{where}.released")
    eol = _date(raw["eol"], f"{where}.eol")
    if eol < released:
        raise ConfigError(f"{where}.eol: {eol} is before the release date {released}")
    latest = _version(raw["latest"], f"{where}.latest")

    def check(v: KubeVersion, at: str) -> None:
        if v.minor_key != key:
            raise ConfigError(f"{at}: {v} is not a {name} release")
        if v.is_prerelease:
            raise ConfigError(f"{at}: {v} is a pre-release; list final releases only")

    check(latest, f"{where}.latest")
    raw_patches = raw.get("patches")
    if raw_patches is None:
        patches = tuple(KubeVersion(key[0], key[1], p) for p in range(latest.patch + 1))
    else:
        if not isinstance(raw_patches, list) or not raw_patches:
            raise ConfigError(f"{where}.patches: must be a non-empty list of versions")
        parsed: list[KubeVersion] = []
        for i, rp in enumerate(raw_patches):
            v = _version(rp, f"{where}.patches[{i}]")
            check(v, f"{where}.patches[{i}]")
            parsed.append(v)
        if len(set(parsed)) != len(parsed):
            raise ConfigError(f"{where}.patches: duplicate versions")
        patches = tuple(sorted(parsed))
        if patches[-1] != latest:
            raise ConfigError(
                f"{where}.latest: {latest} is not the newest entry of patches ({patches[-1]})"
            )
    return MinorRelease(minor=key, released=released, eol=eol, latest=latest, patches=patches)


def parse_release_data(data: Any, origin: str = "release data") -> ReleaseData:
    """Validate the JSON document ``data`` (already decoded). Errors name ``origin`` and
    the field (``releases.json: minors.1.30.eol: invalid date '2025-13-01'``)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{origin}: top level must be a mapping")
    schema = data.get("schema", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        raise ConfigError(f"{origin}: schema: unsupported version {schema!r} (expected 1)")
    if "generated" not in data:
        raise ConfigError(f"{origin}: generated: missing")
    generated = _date(data["generated"], f"{origin}: generated")
    source = data.get("source", "")
    if not isinstance(source, str):
        raise ConfigError(f"{origin}: source: must be a string")
    raw_minors = data.get("minors")
    if not isinstance(raw_minors, Mapping) or not raw_minors:
        raise ConfigError(f"{origin}: minors: missing or empty mapping")
    minors: dict[MinorKey, MinorRelease] = {}
    for name, raw in raw_minors.items():
        rel = _minor_release(str(name), raw, f"{origin}: minors.{name}")
        if rel.minor in minors:
            raise ConfigError(f"{origin}: minors.{name}: duplicate minor")
        minors[rel.minor] = rel
    return ReleaseData(
        minors=MappingProxyType(dict(sorted(minors.items()))),
        generated=generated,
        source=source,
        origin=origin,
    )


def load_release_data(path: Path | None = None) -> ReleaseData:
    """Load the packaged release data, or the operator's file at ``path``.

    Raises :class:`ConfigError` (one line, naming the file and field) on unreadable or
    invalid data."""
    if path is None:
        origin = f"upgrader/data/{PACKAGED_NAME}"
        try:
            text = (resources.files("upgrader") / "data" / PACKAGED_NAME).read_text("utf-8")
        except OSError as e:  # a broken installation
            raise ConfigError(f"{origin}: cannot read packaged release data: {e}") from None
    else:
        origin = str(path)
        try:
            text = Path(path).read_text("utf-8")
        except OSError as e:
            raise ConfigError(f"{origin}: cannot read release data: {e.strerror or e}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{origin}: not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{origin}: invalid JSON at line {e.lineno}: {e.msg}") from None
    return parse_release_data(data, origin)


def release_data_from(
    minors: Iterable[MinorRelease], generated: date, source: str = ""
) -> ReleaseData:
    """Build ReleaseData from values (tests, refresh script)."""
    table = {m.minor: m for m in sorted(minors, key=lambda m: m.minor)}
    return ReleaseData(minors=MappingProxyType(table), generated=generated, source=source)
