"""The ``etcd-snapshot`` step: save, check and hash a snapshot inside the node's etcd
container, stream it here as root, compare size and sha256, record it in the state.

Owns one attempt of that step (every failure but a missing crictl, a missing etcd static
pod or a missing local directory may be retried: a new snapshot) and its record. The
node-side commands and the parsing are :mod:`upgrader.execute.snapshot`'s; the copy goes
through the node's :class:`~upgrader.transport.base.FileTransport`.

Must not: decide when a snapshot is taken (the planner does), retry, or print.
"""

from __future__ import annotations

import os

from upgrader import state as st
from upgrader.core import etcd as etcd_mod
from upgrader.core.model import Step
from upgrader.errors import TransportError
from upgrader.execute import snapshot as snap
from upgrader.execute.runners.base import AttemptFailed, Host, Retryable
from upgrader.transport.base import FileTransport, Result


class SnapshotRunner:
    success_exit_code: int | None = None

    def limit(self, host: Host, step: Step) -> float:
        return float(step.timeout)

    def attempt(self, host: Host, step: Step, attempt: int) -> str:
        run_id = host.state.run_id
        directory = host.options.snapshot_dir
        if directory is None:
            raise AttemptFailed("no local directory for the etcd snapshot", retry=False)
        try:
            command = snap.save_command(run_id)
        except snap.SnapshotError as e:
            raise AttemptFailed(str(e), retry=False) from None
        res, err = host.run_command(step, command, "run", attempt, step.timeout)
        saved = _saved(host, step, res, err, run_id)
        try:
            fetch = snap.fetch_command(saved.remote)
        except snap.SnapshotError as e:
            raise Retryable(str(e), retry=True) from None
        transport = host.transport(step.node)
        if not isinstance(transport, FileTransport):
            raise AttemptFailed(f"the transport to {step.node} cannot stream files", retry=False)
        snap.prepare_dir(directory)
        local = snap.local_path(directory, step.node, run_id)
        try:
            got_res = transport.stream_to(fetch, local, timeout=step.timeout)
        except TransportError as e:
            raise Retryable(host.mask(str(e)), retry=True) from None
        if not got_res.ok:
            last = st.tail(got_res.stderr, 1)
            why = "timed out" if got_res.timed_out else f"exit {got_res.exit_code}"
            raise Retryable(
                host.mask(f"copying {saved.remote}: {why}" + (f": {last}" if last else "")),
                retry=True,
            )
        os.chmod(local, 0o600)
        got = snap.file_sha256(local)
        size = local.stat().st_size
        if got != saved.sha256 or size != saved.size:
            local.unlink(missing_ok=True)
            raise Retryable(
                f"the copy of {saved.remote} has sha256 {got} ({size} bytes), the node's "
                f"file {saved.sha256} ({saved.size} bytes)",
                retry=True,
            )
        record = snap.Snapshot(
            node=step.node,
            path=str(local.resolve()),
            remote=saved.remote,
            sha256=saved.sha256,
            revision=saved.status.get("revision"),
            size=size,
            taken=st.now_iso(),
            etcd_version=saved.etcd_version,
        ).to_dict()
        host.update(lambda s: st.record_etcd_snapshot(s, record))
        host.note(
            step.node,
            f"{step.id}: etcd {saved.etcd_version} snapshot (checked with {saved.tool} snapshot "
            f"status) copied to {local} (sha256 {saved.sha256})",
        )
        return (
            f"etcd snapshot {local} (sha256 {saved.sha256}, revision "
            f"{saved.status.get('revision')}, etcd {saved.etcd_version})"
        )


def _saved(host: Host, step: Step, res: Result | None, err: str | None, run_id: str) -> snap.Saved:
    """What the save command's result says was saved on the node (or why to retry)."""
    if res is None:
        raise Retryable(host.mask(f"SSH session failed: {err}"), retry=True)
    if res.timed_out:
        raise Retryable(f"timed out after {step.timeout:g}s", retry=True, stderr=res.stderr)
    if not res.ok:
        last = st.tail(res.stderr, 1) or st.tail(res.stdout, 1)
        # no crictl / no etcd static pod: a retry cannot help
        retry = res.exit_code not in (etcd_mod.RC_NO_CRICTL, etcd_mod.RC_NO_STATIC_POD)
        raise Retryable(
            host.mask(f"exit {res.exit_code}" + (f": {last}" if last else "")),
            retry=retry,
            exit_code=res.exit_code,
            stderr=res.stderr,
        )
    try:
        return snap.parse_save_output(res.stdout, run_id)
    except snap.SnapshotError as e:
        raise Retryable(str(e), retry=True) from None
