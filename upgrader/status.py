"""``upgrader status`` as a library call: what the recorded run did per node.

Owns :func:`status` and its report (:class:`StatusReport`, :class:`NodeReport`): the run's
status (``killed`` when it is recorded ``running`` but no process holds its state lock),
each node's progress, failed step and transcript, the cordons, the stored worker selection,
who holds the state lock and the cluster Lease, and the text and JSON forms of all that.

Must not: change the state file, the stored plan or the Lease (reading the lock takes and
releases it at once), talk to nodes over SSH, or print.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from upgrader import safefile
from upgrader import state as st
from upgrader.core.fields import built_from
from upgrader.core.render import selection_text
from upgrader.core.workers import WorkerSelection
from upgrader.errors import ConfigError, LockHeld
from upgrader.execute import events as ev
from upgrader.execute import stored
from upgrader.inventory.model import Inventory
from upgrader.stops import continue_command


@dataclass(frozen=True)
class NodeReport:
    node: str
    state: str
    text: str
    step: str | None
    message: str | None
    done_steps: int
    total_steps: int
    transcript: str | None
    cordoned_by_us: bool
    precordoned: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class StatusReport:
    state_path: Path
    run: st.RunState | None
    nodes: tuple[NodeReport, ...]
    lock: str  # "free" or who holds the file lock
    lease: str | None  # the cluster Lease as read, or why it could not be read
    # the workers the run chose and how it groups them (from its stored plan), if any
    selection: WorkerSelection | None = None

    @property
    def run_status(self) -> str:
        """The run's status, except that a run recorded ``running`` whose state lock no
        process holds was killed (SIGKILL, a crash): it says ``killed``, never ``running``."""
        r = self.run
        if r is None:
            return "none"
        if r.status == st.RunStatus.RUNNING and self.lock == "free":
            return "killed"
        return r.status.value

    def to_dict(self) -> dict[str, Any]:
        r = self.run
        return {
            "state_file": str(self.state_path),
            "run": None
            if r is None
            else {
                "run_id": r.run_id,
                "status": self.run_status,
                "recorded_status": r.status.value,
                "target": r.target,
                "hops": list(r.hops),
                "created": r.created,
                "updated": r.updated,
                "transcripts": r.transcripts,
                "etcd_snapshot": None if r.etcd_snapshot is None else dict(r.etcd_snapshot),
                "paused": r.paused,
            },
            "nodes": [n.to_dict() for n in self.nodes],
            "lock": self.lock,
            "lease": self.lease,
            "workers": self.selection.to_dict() if self.selection is not None else None,
        }

    def text(self) -> str:
        lines = [f"State file: {self.state_path}"]
        r = self.run
        if r is None:
            lines.append("No run recorded.")
        else:
            what = self.run_status
            if what == "killed":
                what = "killed (recorded as running, but no process holds its lock)"
            lines.append(
                f"Run {r.run_id}: {what}, target {r.target} "
                f"(hops {', '.join(r.hops) or 'none'}), updated {r.updated}"
            )
            if r.status == st.RunStatus.PAUSED:
                lines[-1] = lines[-1].replace(
                    f": {what},", f": {what} ({r.paused or 'no reason recorded'}),", 1
                )
                lines.append(f"Continue with: {continue_command(r.inventory, r.target)}")
            elif not r.finished and what != "running":
                lines.append(f"The same `upgrader apply --to {r.target}` resumes it.")
            if self.selection is not None:
                lines.append(selection_text(self.selection))
            width = max((len(n.node) for n in self.nodes), default=4)
            for n in self.nodes:
                extra = ""
                if n.cordoned_by_us and r.status != st.RunStatus.SUCCEEDED:
                    extra = " [cordoned by this run]"
                elif n.precordoned:
                    extra = " [cordoned before the run; stays cordoned]"
                lines.append(f"  {n.node:<{width}}  {n.text}{extra}")
                if n.state == "failed" and n.transcript:
                    lines.append(f"  {'':<{width}}  transcript: {n.transcript}")
            if r.transcripts:
                lines.append(f"Transcripts: {r.transcripts}")
            if r.etcd_snapshot:
                lines.append(
                    f"etcd snapshot: {r.etcd_snapshot.get('path')} (of "
                    f"{r.etcd_snapshot.get('node')}, sha256 {r.etcd_snapshot.get('sha256')})"
                )
        lines.append(f"State lock: {self.lock}")
        if self.lease is not None:
            lines.append(f"Cluster lock: {self.lease}")
        return "\n".join(lines) + "\n"


def _file_lock_holder(sf: st.StateFile) -> str:
    lk = sf.lock()
    try:
        lk.acquire()
    except LockHeld as e:
        return str(e)
    lk.release()
    return "free"


def _lease_text(inventory: Inventory) -> str:
    from datetime import UTC, datetime

    from upgrader.errors import UpgraderError
    from upgrader.kube import lease
    from upgrader.kube.client import make_api_client

    try:
        api = make_api_client(
            inventory.kubeconfig_path(),
            inventory.kubeconfig_context,
            missing_hint=inventory.kubeconfig_hint,
        )
    except ConfigError as e:
        return f"unknown ({e})"
    try:
        obj = lease.read_lease(api)
    except UpgraderError as e:
        return f"unknown (API: {str(e).splitlines()[0]})"
    finally:
        api.close()  # type: ignore[no-untyped-call]
    if obj is None:
        return "free"
    return lease.LeaseInfo.from_obj(obj).describe(datetime.now(UTC))


def status(
    inventory_path: Path,
    state_path: Path | None = None,
    *,
    read_lease: bool = True,
    kubeconfig: Path | None = None,
    known_hosts: Path | None = None,
) -> StatusReport:
    """What the recorded run did per node, where its transcripts are, who holds the locks."""
    from upgrader.inventory import load_inventory

    inv = load_inventory(inventory_path, kubeconfig=kubeconfig, known_hosts=known_hosts)
    path = state_path or st.default_state_path(inventory_path, inv.cluster_name)
    sf = st.StateFile(path)
    run = sf.load()
    nodes: list[NodeReport] = []
    if run is not None:
        trusted = run.transcripts and safefile.inside(Path(run.transcripts), path.parent)
        writer = ev.TranscriptWriter(Path(run.transcripts)) if trusted and run.transcripts else None
        for name, ns in st.status_summary(run).items():
            tp = writer.path_for(name) if writer is not None else None
            nodes.append(
                built_from(  # node, state, step, message, done_steps, total_steps
                    NodeReport,
                    ns,
                    text=ns.text,
                    transcript=str(tp) if tp is not None and tp.exists() else None,
                    cordoned_by_us=name in run.cordoned_by_us,
                    precordoned=name in run.precordoned,
                )
            )
    selection = None
    if run is not None:
        try:
            selection = stored.load(stored.plan_path(path), run.run_id, run.plan_digest).selection
        except ConfigError:
            selection = None  # no stored plan (or not this run's): nothing to say
    return StatusReport(
        state_path=path,
        run=run,
        selection=selection,
        nodes=tuple(nodes),
        lock=_file_lock_holder(sf),
        lease=_lease_text(inv) if read_lease else None,
    )
