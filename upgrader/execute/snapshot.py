"""The etcd snapshot a run takes before its first ``kubeadm upgrade apply``.

Owns: the node-side command (``etcdctl snapshot save`` with kubeadm's etcd client
certificates against the local member, ``snapshot status -w json``, ``sha256sum``, and a
copy the SSH user may read when it is not root), parsing what that command prints,
copying the file to the operator's machine over SFTP (mode 0600 in a 0700 directory: a
snapshot holds every Secret of the cluster), comparing the local sha256 with the node's,
removing the readable copy, and the restore guidance printed after a run.

Must not: decide when a snapshot is taken (the planner keeps one ``etcd-snapshot`` step per
run), record state (the engine does), or print.
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

REMOTE_DIR = "/var/lib/upgrader"
ETCDCTL = (
    "ETCDCTL_API=3 etcdctl --cacert /etc/kubernetes/pki/etcd/ca.crt "
    "--cert /etc/kubernetes/pki/etcd/server.crt --key /etc/kubernetes/pki/etcd/server.key "
    "--endpoints https://127.0.0.1:2379"
)
_SAFE_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_HEX_RE = re.compile(r"^[0-9a-f]{64}$")


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

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def remote_path(run_id: str) -> str:
    if not _SAFE_RE.match(run_id):
        raise SnapshotError(f"run id {run_id!r} cannot name a snapshot file")
    return f"{REMOTE_DIR}/etcd-snapshot-{run_id}.db"


def readable_copy(run_id: str) -> str:
    """The copy the SSH user fetches when it is not root."""
    remote_path(run_id)  # validates run_id
    return f"/tmp/upgrader-etcd-snapshot-{run_id}.db"


def save_command(run_id: str) -> str:
    """The command (run with sudo) that saves, checks and hashes the snapshot. It prints
    the ``snapshot status`` JSON, the ``sha256sum`` line and ``fetch <path>``: the file the
    SSH user can read (a 0600 copy it owns under /tmp when it is not root)."""
    f = shlex.quote(remote_path(run_id))
    g = shlex.quote(readable_copy(run_id))
    return (
        f"umask 077 && mkdir -p {REMOTE_DIR} && chmod 0700 {REMOTE_DIR} && "
        f"{ETCDCTL} snapshot save {f} >&2 && "
        f"{ETCDCTL} snapshot status {f} -w json && "
        f"sha256sum {f} && "
        'u="${SUDO_USER:-}"; '
        f'if [ -n "$u" ] && [ "$u" != root ]; then rm -f {g} && cp {f} {g} && '
        f'chown "$u" {g} && echo fetch {g}; else echo fetch {f}; fi'
    )


def cleanup_command(fetched: str, remote: str) -> str | None:
    """Removes the readable copy (never the snapshot itself)."""
    return None if fetched == remote else f"rm -f {shlex.quote(fetched)}"


def parse_save_output(stdout: str, run_id: str) -> tuple[Mapping[str, Any], str, str]:
    """(status JSON, sha256 on the node, path to fetch) from :func:`save_command`'s output."""
    remote = remote_path(run_id)
    status: Mapping[str, Any] | None = None
    digest = fetch = None
    for line in stdout.splitlines():
        text = line.strip()
        if text.startswith("{") and status is None:
            try:
                value = json.loads(text)
            except ValueError:
                continue
            if isinstance(value, dict):
                status = value
        elif text.startswith("fetch "):
            fetch = text[len("fetch ") :].strip()
        else:
            words = text.split()
            if len(words) == 2 and _HEX_RE.match(words[0]) and words[1] == remote:
                digest = words[0]
    if status is None:
        raise SnapshotError("etcdctl snapshot status printed no JSON status")
    if not isinstance(status.get("revision"), int) or not isinstance(status.get("totalSize"), int):
        raise SnapshotError(f"etcdctl snapshot status: unexpected status {dict(status)}")
    if status["totalSize"] <= 0:
        raise SnapshotError("etcdctl snapshot status: the snapshot is empty")
    if digest is None:
        raise SnapshotError(f"no sha256sum of {remote} in the output")
    if fetch not in (remote, readable_copy(run_id)):
        raise SnapshotError(f"no usable path to fetch in the output ({fetch!r})")
    return status, digest, fetch


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
    return (
        f"etcd snapshot of {record.get('node')} (before kubeadm upgrade apply): "
        f"{record.get('path')} (sha256 {record.get('sha256')}; also on the node at "
        f"{record.get('remote')}). It holds every Secret of the cluster: keep it safe. "
        "To restore: stop the control plane (move /etc/kubernetes/manifests aside) on every "
        "control-plane node, run `etcdutl snapshot restore <file> --data-dir "
        "/var/lib/etcd-restored` (etcdctl snapshot restore before etcd 3.5) on each etcd "
        "member with its --name and --initial-cluster, point the etcd manifest at the new "
        "data dir, and bring the manifests back; see https://kubernetes.io/docs/tasks/"
        "administer-cluster/configure-upgrade-etcd/#restoring-an-etcd-cluster"
    )
