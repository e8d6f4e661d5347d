"""Release checksums of the Kubernetes binaries: where they come from and what they say.

Owns the shape of the inventory's ``packages.release_checksums`` source (a directory
``DIR/<version>/<binary>.sha256``, or an https URL template with ``{version}``,
``{minor}``, ``{arch}`` and ``{binary}``), the location of one binary's checksum in it,
parsing a ``.sha256`` file (dl.k8s.io's: the hex digest, optionally followed by a file
name), and the outcome of loading the checksums of one release (:class:`ReleaseChecksums`:
the digests, or why they are missing). The planner renders them into the
``verify-binaries`` step; :mod:`upgrader.checksums` reads the files or fetches the URLs.

Must not: read files or fetch anything (that is :mod:`upgrader.checksums`), or import
paramiko, kubernetes, typer or rich.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from upgrader.core.versions import KubeVersion

#: The binaries whose installed sha256 is compared with the release's.
BINARIES = ("kubeadm", "kubelet", "kubectl")
#: The architecture assumed for URL templates with ``{arch}`` (facts do not record it).
DEFAULT_ARCH = "amd64"

_HEX_RE = re.compile(r"^[0-9a-f]{64}$")


class ChecksumFormatError(ValueError):
    """A checksum file that does not hold one sha256 hex digest."""


def parse_sha256(text: str) -> str:
    """The digest of a ``.sha256`` file: ``<64 hex>`` or ``<64 hex>  <name>`` on its first
    non-empty line (lower-cased). Raises :class:`ChecksumFormatError` otherwise."""
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        digest = words[0].lower()
        if not _HEX_RE.match(digest):
            shown = digest if len(digest) <= 20 else digest[:17] + "..."
            raise ChecksumFormatError(f"{shown!r} is not a sha256 hex digest")
        return digest
    raise ChecksumFormatError("empty (no sha256 hex digest)")


def is_url(source: str) -> bool:
    return source.startswith("https://")


def location(source: str, version: KubeVersion, binary: str, arch: str = DEFAULT_ARCH) -> str:
    """Where ``binary``'s checksum of ``version`` is: ``<dir>/v1.28.4/kubelet.sha256`` for a
    directory, the URL template filled in for a URL."""
    if is_url(source):
        return (
            source.replace("{version}", str(version))
            .replace("{minor}", version.minor_str)
            .replace("{arch}", arch)
            .replace("{binary}", binary)
        )
    return f"{source.rstrip('/')}/{version}/{binary}.sha256"


@dataclass(frozen=True)
class ReleaseChecksums:
    """The checksums of one release: ``digests`` (binary -> hex) when all were read, else
    ``problem`` says why not (one line, naming the file or URL)."""

    version: str
    digests: Mapping[str, str] = field(default_factory=dict)
    problem: str | None = None

    @property
    def complete(self) -> bool:
        return self.problem is None and all(b in self.digests for b in BINARIES)
