"""Reading the release checksums on the operator's machine (the I/O edge of
:mod:`upgrader.core.checksums`).

Owns: reading ``DIR/<version>/<binary>.sha256`` files, and fetching a URL template's
checksums with urllib (TLS verified with the system's CA store, a timeout, at most 4 KiB
read). Every problem becomes a :class:`~upgrader.core.checksums.ReleaseChecksums` with a
one-line ``problem``; nothing raises.

Must not: decide what a missing checksum means (the planner does), or reach a node.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from upgrader.core.checksums import (
    BINARIES,
    ChecksumFormatError,
    ReleaseChecksums,
    is_url,
    location,
    parse_sha256,
)
from upgrader.core.versions import KubeVersion

FETCH_TIMEOUT = 30.0
MAX_BYTES = 4096


def _read_one(source: str, version: KubeVersion, binary: str) -> str:
    where = location(source, version, binary)
    try:
        if is_url(source):
            # https only: the inventory schema refuses any other scheme.
            req = urllib.request.Request(where, headers={"User-Agent": "upgrader"})  # noqa: S310
            ctx = ssl.create_default_context()
            with urllib.request.urlopen(req, timeout=FETCH_TIMEOUT, context=ctx) as resp:  # noqa: S310
                raw = resp.read(MAX_BYTES)
        else:
            raw = Path(where).read_bytes()[:MAX_BYTES]
    except FileNotFoundError:
        raise ChecksumFormatError(f"{where}: not found") from None
    except urllib.error.HTTPError as e:
        raise ChecksumFormatError(f"{where}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise ChecksumFormatError(f"{where}: {e.reason}") from None
    except (OSError, ValueError) as e:
        raise ChecksumFormatError(f"{where}: {e}") from None
    try:
        return parse_sha256(raw.decode("utf-8", "replace"))
    except ChecksumFormatError as e:
        raise ChecksumFormatError(f"{where}: {e}") from None


def load_release(source: str, version: KubeVersion) -> ReleaseChecksums:
    """The checksums of kubeadm, kubelet and kubectl of ``version`` from ``source``."""
    digests: dict[str, str] = {}
    for binary in BINARIES:
        try:
            digests[binary] = _read_one(source, version, binary)
        except ChecksumFormatError as e:
            return ReleaseChecksums(str(version), digests, problem=str(e).replace("\n", " "))
    return ReleaseChecksums(str(version), digests)


def load_releases(source: str, versions: Iterable[KubeVersion]) -> dict[str, ReleaseChecksums]:
    """:func:`load_release` for each of ``versions`` (keyed ``v1.28.4``)."""
    return {str(v): load_release(source, v) for v in dict.fromkeys(versions)}
