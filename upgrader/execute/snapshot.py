"""The etcd snapshot a run takes before its first ``kubeadm upgrade apply``.

A kubeadm control plane has no ``etcdctl`` on the host: etcd is a static pod whose image
holds ``etcdctl``/``etcdutl``. Owns:

* the node-side command (:func:`save_command`, run as root): find the running etcd
  container with ``crictl`` (:func:`upgrader.core.etcd.container_shell`), take the snapshot
  *inside* it with kubeadm's certificate paths into etcd's own data directory (the
  ``--data-dir`` of ``/etc/kubernetes/manifests/etcd.yaml``, a 0700 directory that is a
  hostPath mount, so the file appears on the node at the same path):
  ``<data-dir>/upgrader-snapshot-<run id>.db``, mode 0600, never a name in /tmp; check it
  with ``etcdctl snapshot status -w json`` on etcd 3.5 and ``etcdutl snapshot status -w
  json`` from 3.6 (where etcdctl has no ``snapshot status``); ``sha256sum`` and ``stat`` it
  on the node;
* parsing that output (:func:`parse_save_output`);
* the copy (:func:`fetch_command`: ``cat`` of that file as root, streamed over the SSH
  exec channel straight into a 0600 file in a 0700 directory on the operator's machine:
  no readable copy on the node, no SFTP as a non-root user);
* comparing size and sha256, and the restore guidance printed after a run. The node copy
  is kept (root-only, in etcd's data directory) for a restore on the node; the guidance
  names it.

Must not: decide when a snapshot is taken (the planner keeps one ``etcd-snapshot`` step per
run and raises ``ETCD_SNAPSHOT_UNAVAILABLE`` when it cannot be), record state (the engine
does), or print.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from upgrader.core import etcd

DEFAULT_DATA_DIR = "/var/lib/etcd"
_SAFE_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_HEX_RE = re.compile(r"^[0-9a-f]{64}$")
_PATH_RE = re.compile(r"^(/[A-Za-z0-9._+-]+)+$")
_CONTAINER_RE = re.compile(r"^[0-9a-f]{12,64}$")


class SnapshotError(Exception):
    """The snapshot could not be taken, checked or copied (one line)."""


@dataclass(frozen=True)
class Snapshot:
    node: str
    path: str  # on this machine
    remote: str  # on the node
    sha256: str
    revision: int | None
    size: int
    taken: str
    etcd_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Saved:
    """What the node said after saving and checking the snapshot."""

    container: str
    etcd_version: str
    remote: str
    status: Mapping[str, Any]
    sha256: str
    size: int

    @property
    def tool(self) -> str:
        return "etcdctl" if uses_etcdctl_status(self.etcd_version) else "etcdutl"


def snapshot_name(run_id: str) -> str:
    if not _SAFE_RE.match(run_id):
        raise SnapshotError(f"run id {run_id!r} cannot name a snapshot file")
    return f"upgrader-snapshot-{run_id}.db"


def uses_etcdctl_status(version: str) -> bool:
    """etcd 3.5 (and older) still has ``etcdctl snapshot status`` (deprecated); 3.6 removed
    it (``etcdctl/ctlv3/command/snapshot_command.go``): use ``etcdutl``."""
    m = re.match(r"^v?(\d+)\.(\d+)", version)
    return m is None or (int(m.group(1)), int(m.group(2))) < (3, 6)


def save_command(run_id: str) -> str:
    """The script (run as root) that saves, checks and hashes the snapshot. It prints
    ``etcd-container <id>``, ``etcd-version <x.y.z>``, ``snapshot <path>``, the status JSON,
    the ``sha256sum`` line and ``size <bytes>``; etcdctl's logs go to stderr."""
    name = shlex.quote(snapshot_name(run_id))
    save_flags = etcd.certificate_flags("server")
    return (
        "set -u\numask 077\n"
        + etcd.container_shell()
        + f"d=\"$(sed -n 's/^[[:space:]]*- --data-dir=//p' {etcd.MANIFEST} | head -n 1)\"\n"
        + f'd="${{d:-{DEFAULT_DATA_DIR}}}"\n'
        + 'case $d in /*) ;; *) echo "upgrader: etcd --data-dir $d is not absolute" >&2; '
        "exit 5;; esac\n"
        + f'f="$d/"{name}\n'
        + 'v="$($crictl exec "$c" etcdctl version 2>/dev/null | '
        "sed -n 's/^etcdctl version: //p')\"\n"
        + 'echo "etcd-container $c"; echo "etcd-version ${v:-unknown}"; echo "snapshot $f"\n'
        + 'rm -f -- "$f" "$f.part"\n'
        + f'$crictl exec "$c" etcdctl {save_flags} snapshot save "$f" >&2 || exit 6\n'
        + 'if [ ! -s "$f" ]; then echo "upgrader: etcdctl reported success but $f is not on '
        'the node" >&2; exit 6; fi\n'
        + 'chmod 0600 "$f"\n'
        + 'case "$v" in 3.[0-5].*|"") tool=etcdctl;; *) tool=etcdutl;; esac\n'
        + '$crictl exec "$c" "$tool" snapshot status "$f" -w json || exit 7\n'
        + 'sha256sum "$f" || exit 7\n'
        + 'echo "size $(stat -c %s "$f")"\n'
    )


def fetch_command(remote: str) -> str:
    """``cat`` of the snapshot (as root): its stdout is the file, byte for byte."""
    if not _PATH_RE.match(remote) or "/../" in remote + "/" or "/./" in remote + "/":
        raise SnapshotError(f"unexpected snapshot path {remote!r}")
    return f"cat -- {shlex.quote(remote)}"


def parse_save_output(stdout: str, run_id: str) -> Saved:
    """:func:`save_command`'s stdout -> :class:`Saved` (raises :class:`SnapshotError`)."""
    name = snapshot_name(run_id)
    fields: dict[str, str] = {}
    status: Mapping[str, Any] | None = None
    digest: str | None = None
    for line in stdout.splitlines():
        text = line.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError:
                continue
            if isinstance(value, dict) and status is None:
                status = value
            continue
        key, _, rest = text.partition(" ")
        if key in ("etcd-container", "etcd-version", "snapshot", "size") and rest:
            fields.setdefault(key, rest.strip())
            continue
        words = text.split()
        if len(words) == 2 and _HEX_RE.match(words[0]):
            digest, hashed = words
            if hashed != fields.get("snapshot"):
                raise SnapshotError(f"sha256sum hashed {hashed!r}, not the snapshot")
    remote = fields.get("snapshot")
    if remote is None or not remote.endswith("/" + name) or not _PATH_RE.match(remote):
        raise SnapshotError(f"no snapshot path ending in {name} in the output ({remote!r})")
    container = fields.get("etcd-container", "")
    if not _CONTAINER_RE.match(container):
        raise SnapshotError(f"no etcd container id in the output ({container!r})")
    if status is None:
        raise SnapshotError("snapshot status printed no JSON status")
    if not isinstance(status.get("revision"), int) or not isinstance(status.get("totalSize"), int):
        raise SnapshotError(f"snapshot status: unexpected status {dict(status)}")
    if status["totalSize"] <= 0:
        raise SnapshotError("snapshot status: the snapshot is empty")
    if digest is None:
        raise SnapshotError(f"no sha256sum of {remote} in the output")
    size = fields.get("size", "")
    if not size.isdigit() or int(size) <= 0:
        raise SnapshotError(f"no size of {remote} in the output ({size!r})")
    return Saved(
        container=container,
        etcd_version=fields.get("etcd-version", "unknown"),
        remote=remote,
        status=status,
        sha256=digest,
        size=int(size),
    )


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def local_path(directory: Path, node: str, run_id: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", node)
    return directory / f"etcd-snapshot-{safe}-{run_id}.db"


def prepare_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)


def restore_guidance(record: Mapping[str, Any]) -> str:
    """What to print after a run that took a snapshot."""
    etcd_version = str(record.get("etcd_version") or "")
    return (
        f"etcd snapshot of {record.get('node')} (before kubeadm upgrade apply): "
        f"{record.get('path')} (sha256 {record.get('sha256')}; the node keeps a root-only "
        f"copy at {record.get('remote')}, remove it when no longer needed). It holds every "
        "Secret of the cluster: keep it safe. To restore: stop the control plane (move "
        "/etc/kubernetes/manifests aside) on every control-plane node, run `etcdutl snapshot "
        "restore <file> --data-dir /var/lib/etcd-restored` with each member's --name and "
        "--initial-cluster"
        + (f" (etcdutl {etcd_version.split('-')[0]}, from the etcd image)" if etcd_version else "")
        + ", point the etcd manifest's etcd-data hostPath and --data-dir at the new data dir, "
        "and bring the manifests back; see https://kubernetes.io/docs/tasks/"
        "administer-cluster/configure-upgrade-etcd/#restoring-an-etcd-cluster"
    )
