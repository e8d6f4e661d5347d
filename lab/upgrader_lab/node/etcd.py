"""The simulated ``etcdctl`` and ``etcdutl`` of the etcd image (run by ``crictl exec``).

Owns what the etcd tools print and do for the commands a kubeadm operator (or upgrader)
sends into the etcd static pod's container, per etcd minor, following etcd-io/etcd:

* ``etcdctl endpoint health`` (``etcdctl/ctlv3/command/ep_command.go``): ``<endpoint> is
  healthy: successfully committed proposal: took = ...`` on stdout; a certificate flag
  naming a missing file fails with ``Error: open <path>: no such file or directory``.
* ``etcdctl snapshot save PATH`` (``client/v3/snapshot/v3_snapshot.go``): zap JSON log
  lines on stderr (``created temporary db file``, ``fetching snapshot``, ``fetched
  snapshot``, ``saved``), writes ``PATH.part`` (mode 0600, ``fileutil.PrivateFileMode``)
  then renames it; stdout ``Snapshot saved at PATH`` and, from 3.6, ``Server version
  3.6.0``. The file ends with a sha256 of what precedes it, as a real snapshot does
  (``hasChecksum``: size % 512 == 32).
* ``etcdctl snapshot status`` (3.5: ``etcdctl/ctlv3/command/snapshot_command.go`` prints
  ``Deprecated: Use `etcdutl snapshot status` instead.`` on stderr, then the status); **3.6
  has no such subcommand**: ``snapshot`` only registers ``save``, and cobra (v1.8) answers
  an unknown subcommand of a non-root command by printing that command's usage on stdout
  and exiting **0** (``etcdctl/ctlv3/ctl.go``, ``pkg/cobrautl/help.go``).
* ``etcdutl snapshot status PATH -w json|table|simple`` (``etcdutl/etcdutl/printer*.go``,
  ``etcdutl/snapshot/v3_snapshot.go``: ``Status{hash, revision, totalKey, totalSize}``,
  plus ``version`` from 3.6).
* ``etcdctl version`` / ``etcdutl version``.

Paths are resolved through a :class:`Filesystem` (the container's view: its own root, plus
the manifest's hostPath mounts on the node), so a file saved under ``/var/lib/etcd``
appears on the node and one saved under ``/tmp`` stays in the container.

Must not: import upgrader's production code, or know how the container was found.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from upgrader_lab.node import args as argparse_

SNAPSHOT_MAGIC = b"upgrader-lab etcd snapshot\n"
_SNAPSHOT_BODY = 20480  # padded body; + 32 bytes of sha256 -> size % 512 == 32


class Filesystem(Protocol):
    """Where a path seen by the tool lives on this machine."""

    def resolve(self, path: str) -> Path: ...


class Streams:
    """Where the tool writes (bytes), so crictl can forward them."""

    def __init__(self, out: Callable[[str], None], err: Callable[[str], None]) -> None:
        self.out = out
        self.err = err


def _minor(version: str) -> tuple[int, int]:
    parts = version.split("-")[0].split(".")
    return int(parts[0]), int(parts[1])


def _ts() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())


def _zap(s: Streams, msg: str, caller: str, **fields: Any) -> None:
    entry = {"level": "info", "ts": _ts(), "caller": caller, "msg": msg, **fields}
    s.err(json.dumps(entry, separators=(",", ":")) + "\n")


def _human(size: int) -> str:
    """go-humanize Bytes (SI units)."""
    if size < 10:
        return f"{size} B"
    value = float(size)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if value < 1000:
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{value:.0f} PB"


# --------------------------------------------------------------------------- snapshot files


def snapshot_bytes(node: str, etcd_version: str, revision: int) -> bytes:
    meta = {"node": node, "etcd": etcd_version, "revision": revision, "taken": time.time()}
    body = SNAPSHOT_MAGIC + json.dumps(meta, sort_keys=True).encode() + b"\n"
    body += b"\0" * (_SNAPSHOT_BODY - len(body))
    return body + hashlib.sha256(body).digest()


def snapshot_status(data: bytes, etcd_version: str) -> dict[str, Any] | str:
    """The ``snapshot.Status`` of a file, or the error etcdutl reports."""
    if not data.startswith(SNAPSHOT_MAGIC):
        return "invalid database"
    if len(data) % 512 != 32 or hashlib.sha256(data[:-32]).digest() != data[-32:]:
        return "snapshot file integrity check failed"
    meta = json.loads(data[len(SNAPSHOT_MAGIC) :].split(b"\n", 1)[0])
    status: dict[str, Any] = {
        "hash": zlib.crc32(data[:-32]),
        "revision": int(meta.get("revision", 1)),
        "totalKey": 1342,
        "totalSize": len(data),
    }
    if _minor(etcd_version) >= (3, 6):
        status["version"] = "3.6.0"
    return status


def _print_status(s: Streams, status: dict[str, Any], fmt: str) -> int:
    if fmt == "json":
        s.out(json.dumps(status, separators=(",", ":")) + "\n")
        return 0
    cells = [
        f"{status['hash']:x}",
        str(status["revision"]),
        str(status["totalKey"]),
        _human(int(status["totalSize"])),
    ]
    heads = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"]
    if "version" in status:
        cells.append(str(status["version"]))
        heads.append("VERSION")
    if fmt == "table":
        widths = [max(len(a), len(b)) + 2 for a, b in zip(heads, cells, strict=True)]
        line = "+" + "+".join("-" * w for w in widths) + "+\n"
        s.out(line)
        s.out("|" + "|".join(h.center(w) for h, w in zip(heads, widths, strict=True)) + "|\n")
        s.out(line)
        s.out("|" + "|".join(c.rjust(w - 1) + " " for c, w in zip(cells, widths, strict=True)))
        s.out("|\n" + line)
        return 0
    s.out(", ".join(cells) + "\n")
    return 0


# --------------------------------------------------------------------------- etcdctl

_GLOBAL_VALUE = {
    "--endpoints",
    "--cacert",
    "--cert",
    "--key",
    "-w",
    "--write-out",
    "--command-timeout",
    "--dial-timeout",
    "--user",
    "--password",
}
_GLOBAL_BOOL = {"--debug", "--insecure-skip-tls-verify", "--insecure-transport", "--hex"}


def _usage_snapshot_36(s: Streams) -> None:
    """cobra's help of ``etcdctl snapshot`` in 3.6 (pkg/cobrautl/help.go template)."""
    s.out(
        "NAME:\n"
        "  snapshot - Manages etcd node snapshots\n"
        "\n"
        "USAGE:\n"
        "  etcdctl snapshot <subcommand> [flags]\n"
        "\n"
        "API VERSION:\n"
        "  3.6\n"
        "\n"
        "Examples:\n"
        "  # Save snapshot to a given file\n"
        "  etcdctl snapshot save /backup/etcd-snapshot.db\n"
        "\n"
        "COMMANDS:\n"
        "  save\tStores an etcd node backend snapshot to a given file\n"
        "\n"
        "OPTIONS:\n"
        "  -h, --help[=false]\thelp for snapshot\n"
        "\n"
        "GLOBAL OPTIONS:\n"
        '      --cacert=""\tverify certificates of TLS-enabled secure servers using this CA '
        "bundle\n"
        '      --cert=""\tidentify secure client using this TLS certificate file\n'
        '      --endpoints="127.0.0.1:2379"\tgRPC endpoints\n'
        '      --key=""\tidentify secure client using this TLS key file\n'
        '  -w, --write-out="simple"\tset the output format (fields, json, protobuf, simple, '
        "table)\n"
    )


def etcdctl(args: list[str], fs: Filesystem, etcd_version: str, node: str, s: Streams) -> int:
    p = argparse_.parse(args, _GLOBAL_VALUE, _GLOBAL_BOOL, {"--write-out": "-w"})
    if p.unknown:
        s.err(f"Error: unknown flag: {p.unknown[0].split('=')[0]}\n")
        return 1
    words = p.positional
    v36 = _minor(etcd_version) >= (3, 6)
    if words[:1] == ["version"]:
        plain = etcd_version.split("-")[0]
        s.out(f"etcdctl version: {plain}\nAPI version: {'3.6' if v36 else '3.5'}\n")
        return 0
    endpoint = (p.get("--endpoints") or "127.0.0.1:2379").split(",")[0]
    for flag in ("--cacert", "--cert", "--key"):
        path = p.get(flag)
        if path and not fs.resolve(path).is_file():
            s.err(f"Error: open {path}: no such file or directory\n")
            return 1
    secure = endpoint.startswith("https://")
    if secure and not (p.get("--cacert") and p.get("--cert") and p.get("--key")):
        # etcd of kubeadm requires client certificates (--client-cert-auth=true)
        s.err("Error: context deadline exceeded\n")
        return 1
    if words[:2] == ["endpoint", "health"]:
        s.out(f"{endpoint} is healthy: successfully committed proposal: took = 9.514831ms\n")
        return 0
    if words[:1] == ["snapshot"]:
        sub = words[1:2]
        if sub == ["save"]:
            if len(words) != 3:
                s.err("Error: snapshot save expects one argument\n")
                return 128
            return _snapshot_save(words[2], endpoint, fs, etcd_version, node, s)
        if sub == ["status"] and not v36:
            s.err("Deprecated: Use `etcdutl snapshot status` instead.\n\n")
            return _status(words[2:], p.get("-w") or "simple", fs, etcd_version, s)
        if sub == ["restore"] and not v36:
            s.err("Deprecated: Use `etcdutl snapshot restore` instead.\n\n")
            s.err("Error: upgrader lab: snapshot restore is not simulated\n")
            return 1
        if v36:
            _usage_snapshot_36(s)  # no status/restore in 3.6: cobra prints help, exits 0
            return 0
    s.err(f'Error: unknown command "{" ".join(words[:1])}" for "etcdctl"\n')
    return 1


def _snapshot_save(
    path: str, endpoint: str, fs: Filesystem, etcd_version: str, node: str, s: Streams
) -> int:
    part = path + ".part"
    target = fs.resolve(path)
    partfile = fs.resolve(part)
    caller = "snapshot/v3_snapshot.go:65"
    try:
        fd = os.open(partfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        s.err(f"Error: could not open {part} (open {part}: {(exc.strerror or '').lower()})\n")
        return 5
    _zap(s, "created temporary db file", caller, path=part)
    _zap(s, "fetching snapshot", "snapshot/v3_snapshot.go:73", endpoint=endpoint)
    data = snapshot_bytes(node, etcd_version, 10000 + int(time.time()) % 90000)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partfile, target)
    except OSError as exc:
        partfile.unlink(missing_ok=True)
        s.err(f"Error: could not rename {part} to {path} ({exc.strerror})\n")
        return 5
    fields: dict[str, Any] = {"endpoint": endpoint, "size": _human(len(data))}
    if _minor(etcd_version) >= (3, 6):
        fields.update(took="12.503551ms", **{"etcd-version": "3.6.0"})
    else:
        fields["took"] = "now"
    _zap(s, "fetched snapshot", "snapshot/v3_snapshot.go:88", **fields)
    _zap(s, "saved", "snapshot/v3_snapshot.go:97", path=path)
    s.out(f"Snapshot saved at {path}\n")
    if _minor(etcd_version) >= (3, 6):
        s.out("Server version 3.6.0\n")
    return 0


def _status(words: list[str], fmt: str, fs: Filesystem, etcd_version: str, s: Streams) -> int:
    if len(words) != 1:
        s.err("Error: snapshot status requires exactly one argument\n")
        return 128
    path = words[0]
    try:
        data = fs.resolve(path).read_bytes()
    except OSError as exc:
        s.err(f"Error: stat {path}: {(exc.strerror or '').lower()}\n")
        return 1
    status = snapshot_status(data, etcd_version)
    if isinstance(status, str):
        s.err(f"Error: {status}\n")
        return 1
    return _print_status(s, status, fmt)


# --------------------------------------------------------------------------- etcdutl


def etcdutl(args: list[str], fs: Filesystem, etcd_version: str, s: Streams) -> int:
    p = argparse_.parse(args, {"-w", "--write-out"}, set(), {"--write-out": "-w"})
    words = p.positional
    if p.unknown:
        s.err(f"Error: unknown flag: {p.unknown[0].split('=')[0]}\n")
        return 1
    if words[:1] == ["version"]:
        plain = etcd_version.split("-")[0]
        s.out(f"etcdutl version: {plain}\nAPI version: {'.'.join(plain.split('.')[:2])}\n")
        return 0
    if words[:2] == ["snapshot", "status"]:
        return _status(words[2:], p.get("-w") or "simple", fs, etcd_version, s)
    s.err(f'Error: unknown command "{" ".join(words[:2])}" for "etcdutl"\n')
    return 1
