"""Release data: which Kubernetes minors exist, their patches, release and EOL dates.

Owns the shipped release table (``upgrader/data/releases.json``, package data read through
:mod:`upgrader.core.datafiles`) and the loader of an operator-supplied refresh of it (the CLI's
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

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, PlainValidator, StrictStr

from upgrader.core.datafiles import data_file_document
from upgrader.core.problems import FileModel, Version, render_dotted, validate
from upgrader.core.versions import KubeVersion
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


def _date(value: object) -> date:
    if not isinstance(value, str):
        raise ValueError("must be a YYYY-MM-DD date string")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"invalid date {value!r} (expected YYYY-MM-DD)") from None


def _minor_name(name: str) -> str:
    if not _MINOR_RE.fullmatch(name):
        raise ValueError(f"key {name!r} is not a MAJOR.MINOR minor like '1.30'")
    return name


def _schema(value: object) -> object:
    if value != SCHEMA_VERSION:
        raise ValueError(f"unsupported version {value!r} (expected {SCHEMA_VERSION})")
    return value


Date = Annotated[date, PlainValidator(_date)]


class _MinorDoc(FileModel):
    released: Date
    eol: Date
    latest: Version
    patches: Annotated[list[Version], Field(min_length=1)] | None = None

    def release(self, name: str, where: str) -> MinorRelease:
        """The series ``name`` (``1.30``): the rules between the fields, checked here."""
        major, minor = name.split(".")
        key: MinorKey = (int(major), int(minor))
        if self.eol < self.released:
            raise ConfigError(f"{where}.eol: {self.eol} is before the release date {self.released}")

        def check(v: KubeVersion, at: str) -> None:
            if v.minor_key != key:
                raise ConfigError(f"{at}: {v} is not a {name} release")
            if v.is_prerelease:
                raise ConfigError(f"{at}: {v} is a pre-release; list final releases only")

        latest = self.latest
        check(latest, f"{where}.latest")
        if self.patches is None:
            patches = tuple(KubeVersion(key[0], key[1], p) for p in range(latest.patch + 1))
        else:
            for i, v in enumerate(self.patches):
                check(v, f"{where}.patches[{i}]")
            patches = tuple(sorted(set(self.patches)))
            if len(patches) != len(self.patches):
                raise ConfigError(f"{where}.patches: duplicate versions")
            if patches[-1] != latest:
                raise ConfigError(
                    f"{where}.latest: {latest} is not the newest entry of patches ({patches[-1]})"
                )
        return MinorRelease(key, self.released, self.eol, latest, patches)


class _ReleaseDataDoc(FileModel):
    """The release data file (``upgrader/data/releases.json``; the module doc has it)."""

    schema_: Annotated[int, BeforeValidator(_schema)] = Field(SCHEMA_VERSION, alias="schema")
    generated: Date
    source: StrictStr = ""
    minors: Annotated[
        dict[Annotated[str, AfterValidator(_minor_name)], _MinorDoc], Field(min_length=1)
    ]


def parse_release_data(data: Any, origin: str = "release data") -> ReleaseData:
    """Validate the JSON document ``data`` (already decoded). Errors name ``origin`` and
    the field (``releases.json: minors.1.30.eol: invalid date '2025-13-01'``)."""
    doc = validate(_ReleaseDataDoc, data, origin, render_dotted)
    minors = [m.release(name, f"{origin}: minors.{name}") for name, m in doc.minors.items()]
    return ReleaseData(
        minors=MappingProxyType({m.minor: m for m in sorted(minors, key=lambda m: m.minor)}),
        generated=doc.generated,
        source=doc.source,
        origin=origin,
    )


def load_release_data(path: Path | None = None) -> ReleaseData:
    """Load the packaged release data, or the operator's file at ``path``.

    Raises :class:`ConfigError` (one line, naming the file and field) on unreadable or
    invalid data."""
    document, origin = data_file_document(PACKAGED_NAME, path, "release data")
    return parse_release_data(document, origin)


def release_data_from(
    minors: Iterable[MinorRelease], generated: date, source: str = ""
) -> ReleaseData:
    """Build ReleaseData from values (tests, refresh script)."""
    table = {m.minor: m for m in sorted(minors, key=lambda m: m.minor)}
    return ReleaseData(minors=MappingProxyType(table), generated=generated, source=source)
