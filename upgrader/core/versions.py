"""Kubernetes version values: parsing, comparison and minor arithmetic.

Owns the one way a version string becomes a value in upgrader. Accepts exactly
``[v]MAJOR.MINOR.PATCH`` with an optional ``-alpha.N``/``-beta.N``/``-rc.N`` pre-release
and optional ``+build`` metadata (ignored when comparing, as kubeadm does).
``packaging.version.Version`` does the ordering; this module insists on the exact shape
first, since ``packaging`` also accepts ``1.28`` and ``1.28.4.5``.

Must not: do I/O, or import paramiko, kubernetes, typer or rich.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import total_ordering

from packaging.version import Version

_RE = re.compile(
    r"^v?(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>alpha|beta|rc)\.(?P<pren>0|[1-9]\d*))?"
    r"(?:\+(?P<build>[0-9A-Za-z.\-]+))?$"
)


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

    @classmethod
    def parse(cls, text: str) -> KubeVersion:
        raw = text.strip() if isinstance(text, str) else text
        if not isinstance(raw, str) or not raw:
            raise VersionError(f"empty version {text!r}; expected vMAJOR.MINOR.PATCH")
        m = _RE.match(raw)
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
    def _key(self) -> Version:
        pre = ""
        if self.pre:
            pre = {"alpha": "a", "beta": "b", "rc": "rc"}[self.pre] + str(self.pre_num)
        return Version(f"{self.major}.{self.minor}.{self.patch}{pre}")

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
        """How many minors ``self`` is above ``other`` (negative when below)."""
        if self.major != other.major:
            return (self.major - other.major) * 1000
        return self.minor - other.minor

    def same_minor(self, other: KubeVersion) -> bool:
        return self.minor_key == other.minor_key

    def bump_minor(self, n: int = 1) -> KubeVersion:
        """The ``.0`` release ``n`` minors above (or below, for negative n)."""
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
