"""The simulated pkgs.k8s.io package repository and the repository definition files.

Owns which package versions exist (several patches of every minor from 1.24 to the newest
minor of ``upgrader/data/releases.json``, else through 1.33, minus the spec's
``missing_packages``, plus any pre-release versions given), the lab's version helpers
(plain and pre-release versions: ``1.29.0``, ``1.29.0-rc.1``, ordered as semver orders
them), the pkgs.k8s.io version strings (``1.28.4-1.1`` deb, ``1.28.4-150500.1.1`` rpm; a
pre-release carries ``~`` so that dpkg and rpm sort it before the release:
``1.29.0~rc.1-1.1``, ``1.29.0~rc.1-150500.1.1``), the text of
``/etc/apt/sources.list.d/kubernetes.list`` and ``/etc/yum.repos.d/kubernetes.repo`` and
their parsing, and ``DIR/repo.json`` (the
repository a lab was started with, read by the node tools).

Must not: import anything beyond the standard library (node tools import it on every
invocation), or share logic with upgrader's own parsers (it simulates what they read).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import upgrader

# Annotations only: importing typing costs every simulated tool call several ms of
# start-up (mypy and ruff read TYPE_CHECKING by name).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FIRST_MINOR = 24
FALLBACK_LAST_MINOR = 33
# Newest patch per minor, used when the release data is absent or lacks the minor.
_FALLBACK_LATEST = {
    24: 17,
    25: 16,
    26: 15,
    27: 16,
    28: 15,
    29: 15,
    30: 14,
    31: 13,
    32: 9,
    33: 5,
}
DEB_REVISION = "1.1"
RPM_RELEASE = "150500.1.1"
ARCH = "x86_64"
PACKAGE_NAMES = ("kubeadm", "kubelet", "kubectl")
BASE_URL = "https://pkgs.k8s.io/core:/stable:/v{minor}"
CDN_URL = "https://prod-cdn.packages.k8s.io/repositories/isv:/kubernetes:/core:/stable:/v{minor}"

_PLAIN_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-(alpha|beta|rc)\.(\d+))?$")
_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")
_PRE_RANK = {"alpha": 0, "beta": 1, "rc": 2}
# Any host: a lab with Debian nodes points every node at its own package server (the
# inventory's one custom url_template, pkgs.k8s.io's path layout).
_REPO_MINOR_RE = re.compile(r"/core:/(?:stable|prerelease):/v(\d+)\.(\d+)/(deb|rpm)")


def plain_key(plain: str) -> tuple[int, int, int]:
    """``1.28.4`` (or ``1.29.0-rc.1``) -> ``(1, 28, 4)``; the pre-release part is not in it
    (see :func:`sort_key` to order versions)."""
    m = _PLAIN_RE.match(plain)
    if not m:
        raise ValueError(f"not a version: {plain!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def sort_key(plain: str) -> tuple[int, int, int, int, int]:
    """Semver order: ``1.29.0-alpha.1 < 1.29.0-beta.0 < 1.29.0-rc.1 < 1.29.0``."""
    m = _PLAIN_RE.match(plain)
    if not m:
        raise ValueError(f"not a version: {plain!r}")
    pre = (_PRE_RANK[m.group(4)], int(m.group(5))) if m.group(4) else (3, 0)
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), *pre


def pkg_sort_key(pkg_version: str) -> tuple[int, ...]:
    """Order package version strings (``1.29.0~rc.1-1.1 < 1.29.0-1.1 < 1.29.1-1.1``) as
    dpkg and rpm do for the strings this repository publishes."""
    upstream, _, revision = pkg_version.partition("-")
    rev = tuple(int(x) for x in re.findall(r"\d+", revision))
    return (*sort_key(upstream_of(f"{upstream}-x")), *rev)


def is_prerelease(version: str) -> bool:
    return "-" in plain(version)


def plain(version: str) -> str:
    """``v1.28.4`` -> ``1.28.4``."""
    return version[1:] if version.startswith("v") else version


def minor_of(version: str) -> str:
    major, minor, _ = plain_key(plain(version))
    return f"{major}.{minor}"


def _tilde(version: str) -> str:
    """``1.29.0-rc.1`` -> ``1.29.0~rc.1`` (how the Kubernetes packages spell a pre-release:
    ``~`` sorts before anything in dpkg and rpm version comparison)."""
    return plain(version).replace("-", "~", 1)


def deb_version(version: str) -> str:
    return f"{_tilde(version)}-{DEB_REVISION}"


def rpm_version(version: str) -> str:
    return f"{_tilde(version)}-{RPM_RELEASE}"


def package_version(version: str, os_family: str) -> str:
    return rpm_version(version) if os_family == "rhel" else deb_version(version)


def upstream_of(pkg_version: str) -> str:
    """``1.28.4-1.1`` / ``1.28.4-150500.1.1`` -> ``1.28.4``; ``1.29.0~rc.1-1.1`` ->
    ``1.29.0-rc.1``."""
    return pkg_version.split("-", 1)[0].replace("~", "-", 1)


# --------------------------------------------------------------------------- releases


def _release_data_minors(path: Path) -> dict[int, set[int]]:
    """Minor -> patches found in the release data (any shape holding ``v1.N.P`` strings)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    found: dict[int, set[int]] = {}

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str):
            m = _VERSION_RE.match(value)
            if m and m.group(1) == "1":
                found.setdefault(int(m.group(2)), set()).add(int(m.group(3)))

    walk(data)
    return found


def release_data_path() -> Path:
    """The product's shipped release data (``upgrader/data/releases.json``), the one list of
    patch releases both sides use."""
    return Path(upgrader.__file__).resolve().parent / "data" / "releases.json"


def build_repository(
    missing: list[str] | tuple[str, ...] = (),
    release_data: Path | None = None,
    prereleases: list[str] | tuple[str, ...] = (),
) -> dict[str, list[str]]:
    """Minor (``"1.28"``) -> its plain versions, oldest first, without ``missing``, with
    the ``prereleases`` (``1.29.0-rc.1``) in their place."""
    found = _release_data_minors(release_data or release_data_path())
    last = max([FALLBACK_LAST_MINOR, *found.keys()]) if found else FALLBACK_LAST_MINOR
    gone = {plain(m) for m in missing}
    repo: dict[str, list[str]] = {}
    for minor in range(FIRST_MINOR, last + 1):
        seen = found.get(minor)
        newest = max(seen) if seen else _FALLBACK_LATEST.get(minor, 0)
        versions = [f"1.{minor}.{p}" for p in range(newest + 1)]
        repo[f"1.{minor}"] = [v for v in versions if v not in gone]
    for pre in prereleases:
        p = plain(pre)
        minor_versions = repo.setdefault(minor_of(p), [])
        if p not in minor_versions and p not in gone:
            minor_versions.append(p)
            minor_versions.sort(key=sort_key)
    return repo


def write_repository(lab_dir: Path, repo: dict[str, list[str]]) -> None:
    (lab_dir / "repo.json").write_text(json.dumps({"minors": repo}, indent=1) + "\n")


def read_repository(lab_dir: Path) -> dict[str, list[str]]:
    data = json.loads((lab_dir / "repo.json").read_text())
    minors = data.get("minors", {})
    return {str(k): [str(v) for v in vs] for k, vs in minors.items()}


def all_versions(repo: dict[str, list[str]]) -> list[str]:
    return [v for vs in repo.values() for v in vs]


# --------------------------------------------------------------------------- repo files

APT_LIST = "/etc/apt/sources.list.d/kubernetes.list"
APT_KEYRING = "/etc/apt/keyrings/kubernetes-apt-keyring.gpg"
YUM_REPO = "/etc/yum.repos.d/kubernetes.repo"


def yum_repo_text(minor: str) -> str:
    url = BASE_URL.format(minor=minor)
    return (
        "[kubernetes]\n"
        "name=Kubernetes\n"
        f"baseurl={url}/rpm/\n"
        "enabled=1\n"
        "gpgcheck=1\n"
        f"gpgkey={url}/rpm/repodata/repomd.xml.key\n"
        "exclude=kubelet kubeadm kubectl cri-tools kubernetes-cni\n"
    )


def yum_repo(text: str) -> dict[str, dict[str, str]]:
    """Sections of a ``.repo`` file: ``{"kubernetes": {"baseurl": ..., "exclude": ...}}``."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip(), {})
        elif "=" in line and current is not None:
            key, value = line.split("=", 1)
            current[key.strip().lower()] = value.strip()
    return sections


def yum_minor(section: dict[str, str]) -> str | None:
    m = _REPO_MINOR_RE.search(section.get("baseurl", ""))
    if m:
        return f"{m.group(1)}.{m.group(2)}"
    return None
