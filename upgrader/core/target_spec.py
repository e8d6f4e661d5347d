"""What ``--to`` may say, and the exact version it means.

Owns the forms an operator may give as a target and their resolution against the release
data:

* ``v1.28.4`` / ``1.28.4`` (with an optional ``-rc.N`` etc.): that exact version, unchanged;
* ``v1.29`` / ``1.29`` / ``v1.29.x`` / ``1.29.x``: the newest patch of 1.29 the release data
  knows;
* ``latest``: the newest patch of the newest minor inside the support window on ``today``
  (the newest minor of the data when no minor is supported any more).

A form that cannot be read, or a minor that the release data does not know, is a
:class:`~upgrader.core.versions.VersionError` whose one line names the nearest valid targets
(the known minor closest to the one asked for, the newest patch, ``latest``).

Must not: read files, the clock or the network (the caller passes the release data and the
date), or decide whether the target is reachable from the cluster (that is the path's and
the policy's job).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from upgrader.core.releases import MinorKey, ReleaseData
from upgrader.core.versions import KubeVersion, VersionError

LATEST = "latest"
_MINOR_FORM = re.compile(r"v?(?P<major>\d{1,4})\.(?P<minor>\d{1,4})(?:\.[xX*])?", re.ASCII)


@dataclass(frozen=True)
class ResolvedTarget:
    """The exact target and, when the operator gave a shorthand, what it was."""

    version: KubeVersion
    given: str

    @property
    def expanded(self) -> bool:
        """True when ``given`` was a shorthand (``v1.29``, ``latest``), not the version."""
        return self.given.strip().lstrip("v") != str(self.version).lstrip("v")

    def describe(self) -> str:
        """``--to v1.29 means v1.29.10 (the newest patch the release data knows)``, or ''."""
        if not self.expanded:
            return ""
        what = (
            "the newest patch of the newest supported minor"
            if self.given.strip().lower() == LATEST
            else "the newest patch the release data knows"
        )
        return f"--to {self.given.strip()} means {self.version} ({what})"


def latest(releases: ReleaseData, today: date) -> KubeVersion:
    """The newest patch of the newest supported minor (of the newest minor when none is)."""
    window = releases.supported_minors(today)
    minor = window[-1] if window else releases.newest_minor
    newest = releases.newest_patch(minor)
    assert newest is not None  # a minor key of the data always has patches
    return newest


def _nearest_minor(releases: ReleaseData, asked: MinorKey) -> MinorKey:
    return min(
        releases.minors, key=lambda k: (abs(k[0] - asked[0]) * 1000 + abs(k[1] - asked[1]), k)
    )


def _forms(releases: ReleaseData, today: date) -> str:
    newest = latest(releases, today)
    return (
        f"vMAJOR.MINOR.PATCH with an optional -alpha.N, -beta.N or -rc.N (e.g. {newest}), "
        f"vMAJOR.MINOR for that minor's newest known patch (v{newest.major}.{newest.minor} "
        f"= {newest}), or {LATEST} (= {newest})"
    )


def resolve(text: str, releases: ReleaseData, today: date) -> ResolvedTarget:
    """The exact version ``text`` names (see the module docstring for the forms)."""
    raw = text.strip()
    if raw.lower() == LATEST:
        return ResolvedTarget(latest(releases, today), text)
    m = _MINOR_FORM.fullmatch(raw)
    if m is not None:
        key = (int(m.group("major")), int(m.group("minor")))
        patch = releases.newest_patch(key)
        if patch is None:
            lo, hi = releases.oldest_minor, releases.newest_minor
            near = _nearest_minor(releases, key)
            raise VersionError(
                f"the release data ({releases.origin}) has no v{key[0]}.{key[1]} series; it "
                f"knows v{lo[0]}.{lo[1]} to v{hi[0]}.{hi[1]}: the nearest is "
                f"v{near[0]}.{near[1]} (= {releases.newest_patch(near)}), {LATEST} is "
                f"{latest(releases, today)}"
            )
        return ResolvedTarget(patch, text)
    try:
        return ResolvedTarget(KubeVersion.parse(raw), text)
    except VersionError:
        raise VersionError(
            f"invalid version {text!r}; expected {_forms(releases, today)}"
        ) from None
