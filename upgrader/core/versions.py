"""Kubernetes version values: parsing, comparison and minor arithmetic.

Owns the one way a version string becomes a value in upgrader. Accepts exactly
``[v]MAJOR.MINOR.PATCH`` with an optional ``-alpha.N``/``-beta.N``/``-rc.N`` pre-release
and optional ``+build`` metadata (kept for display, ignored when comparing, as kubeadm
does). Surrounding whitespace is stripped (command output ends with a newline).

Refused on purpose: ``1.28`` and ``1.28.4.5`` (``packaging.version.Version`` would accept
both), ``latest``/``stable`` labels, the empty string, non-ASCII digits, and numbers with
leading zeros (``v1.28.04``): Kubernetes never publishes them and the semantic-version
parser kubeadm uses (``k8s.io/apimachinery/pkg/util/version.ParseSemantic``) rejects
them too, so accepting one would only let a typo reach a package manager.

Ordering: numeric major, minor, patch; then ``alpha < beta < rc < final`` and the
pre-release number. ``v1.29.0-rc.1 < v1.29.0``; ``v1.28.4+a == v1.28.4+b``.

Must not: do I/O, or import paramiko, kubernetes, typer or rich.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import total_ordering

# ASCII digits only: ``\d`` would also match e.g. Arabic-Indic digits, which int() accepts.
_NUM = r"(?:0|[1-9][0-9]*)"
_RE = re.compile(
    rf"v?(?P<major>{_NUM})\.(?P<minor>{_NUM})\.(?P<patch>{_NUM})"
    rf"(?:-(?P<pre>alpha|beta|rc)\.(?P<pren>{_NUM}))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?",
    re.ASCII,
)

PRERELEASES = ("alpha", "beta", "rc")
_PRE_RANK = {"alpha": 0, "beta": 1, "rc": 2}
_FINAL_RANK = 3


class VersionError(ValueError):
    """A string that is not a Kubernetes version of the accepted shape."""


@total_ordering
@dataclass(frozen=True)
class KubeVersion:
    """A parsed Kubernetes version. Build metadata is kept for display only."""

    major: int
    minor: int
    patch: int
    pre: str | None = None  # "alpha" | "beta" | "rc"
    pre_num: int | None = None
    build: str | None = field(default=None, compare=False, hash=False)

    def __post_init__(self) -> None:
        for name in ("major", "minor", "patch"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise VersionError(f"{name} must be a non-negative integer, got {value!r}")
        if self.pre is None:
            if self.pre_num is not None:
                raise VersionError("pre_num given without a pre-release kind")
        else:
            if self.pre not in _PRE_RANK:
                raise VersionError(
                    f"pre-release must be one of {', '.join(PRERELEASES)}, got {self.pre!r}"
                )
            if not isinstance(self.pre_num, int) or self.pre_num < 0:
                raise VersionError(f"pre-release {self.pre!r} needs a non-negative number")

    @classmethod
    def parse(cls, text: str) -> KubeVersion:
        if not isinstance(text, str):
            raise VersionError(
                f"version must be a string like v1.28.4, got {type(text).__name__} {text!r}"
            )
        raw = text.strip()
        if not raw:
            raise VersionError(f"empty version {text!r}; expected vMAJOR.MINOR.PATCH")
        m = _RE.fullmatch(raw)
        if not m:
            raise VersionError(
                f"invalid version {text!r}; expected vMAJOR.MINOR.PATCH "
                "with an optional -alpha.N, -beta.N or -rc.N (e.g. v1.28.4)"
            )
        pre = m.group("pre")
        return cls(
            major=int(m.group("major")),
            minor=int(m.group("minor")),
            patch=int(m.group("patch")),
            pre=pre,
            pre_num=int(m.group("pren")) if pre else None,
            build=m.group("build"),
        )

    @classmethod
    def of(cls, major: int, minor: int, patch: int = 0) -> KubeVersion:
        return cls(major, minor, patch)

    # -- comparison -------------------------------------------------------
    def _key(self) -> tuple[int, int, int, int, int]:
        if self.pre is None:
            return (self.major, self.minor, self.patch, _FINAL_RANK, 0)
        return (self.major, self.minor, self.patch, _PRE_RANK[self.pre], self.pre_num or 0)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, KubeVersion):
            return NotImplemented
        return self._key() < other._key()

    # -- helpers ----------------------------------------------------------
    @property
    def is_prerelease(self) -> bool:
        return self.pre is not None

    @property
    def minor_key(self) -> tuple[int, int]:
        return (self.major, self.minor)

    def minor_diff(self, other: KubeVersion) -> int:
        """How many minors ``self`` is above ``other`` (negative when below).

        Different majors count as 1000 minors apart per major, so any rule of the form
        "at most N minors apart" fails across a major version change."""
        if self.major != other.major:
            return (self.major - other.major) * 1000
        return self.minor - other.minor

    def same_minor(self, other: KubeVersion) -> bool:
        return self.minor_key == other.minor_key

    def bump_minor(self, n: int = 1) -> KubeVersion:
        """The ``.0`` release ``n`` minors above (or below, for negative n)."""
        if self.minor + n < 0:
            raise VersionError(f"{self} has no minor {n:+d} (minor would be negative)")
        return KubeVersion(self.major, self.minor + n, 0)

    @property
    def minor_str(self) -> str:
        """``1.28`` — the form used in repository URLs."""
        return f"{self.major}.{self.minor}"

    @property
    def plain(self) -> str:
        """``1.28.4`` (pre-release kept, no ``v``, no build): package version prefix."""
        s = f"{self.major}.{self.minor}.{self.patch}"
        if self.pre:
            s += f"-{self.pre}.{self.pre_num}"
        return s

    def __str__(self) -> str:
        return "v" + self.plain

    def __repr__(self) -> str:
        return f"KubeVersion({str(self)!r})"


def parse_version(text: str) -> KubeVersion:
    """Shorthand for :meth:`KubeVersion.parse`."""
    return KubeVersion.parse(text)
