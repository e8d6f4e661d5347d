"""The etcd snapshot step: where the planner puts it (once per run, before the first
``kubeadm upgrade apply``; none with ``--skip-etcd-snapshot``), the plan finding when it
cannot be taken (external etcd, no etcd static pod, no crictl), the node command (inside
the etcd container through crictl; etcdctl vs etcdutl status by etcd minor) and parsing
its output, and the snapshot record in the state file (optional, backward compatible).
The node side and the streamed copy are exercised by the lab tests (test_lab_etcd.py,
test_apply_extras_lab.py)."""

from __future__ import annotations

import json
import shlex
from datetime import date
from pathlib import Path

import pytest
from run_kit import one_hop_run

from upgrader import state as st
from upgrader.core import etcd
from upgrader.core.model import Facts, Plan, Severity
from upgrader.core.planner import PlanOptions, build_plan
from upgrader.core.playbook import load_playbooks
from upgrader.core.policy import PolicyOptions
from upgrader.core.releases import load_release_data
from upgrader.core.versions import KubeVersion
from upgrader.execute import snapshot as snap
from upgrader.execute.stored import StoredPlan, from_dict

DATA = Path(__file__).resolve().parents[1] / "data" / "facts"
RUN = "0123456789ab"


def _plan(name: str, target: str, **kw: object) -> Plan:
    f = Facts.from_dict(json.loads((DATA / name).read_text()))
    return build_plan(
        f,
        KubeVersion.parse(target),
        load_playbooks(),
        load_release_data(DATA / "releases.json"),
        PlanOptions(policy=PolicyOptions(today=date(2024, 6, 1)), **kw),  # type: ignore[arg-type]
    )


def test_one_snapshot_before_the_first_upgrade_apply_of_a_multi_hop_run() -> None:
    p = _plan("multi-minor-apt.json", "v1.30.2", strategy="per-hop")
    assert len(p.hops) >= 2
    ids = [s.id for s in p.steps]
    snaps = [s for s in p.steps if s.kind == "etcd-snapshot"]
    assert len(snaps) == 1
    first_apply = next(i for i, s in enumerate(ids) if s.endswith("/kubeadm-upgrade-apply"))
    assert ids.index(snaps[0].id) == first_apply - 1
    assert snaps[0].phase == "first-control-plane" and snaps[0].hop == str(p.hops[0])
    # stored and loaded back like any other step
    sp = StoredPlan.of(p, RUN)
    again = from_dict(json.loads(json.dumps(sp.to_dict())), "plan.json")
    assert [s.kind for s in again.steps].count("etcd-snapshot") == 1


def test_skip_etcd_snapshot_leaves_it_out() -> None:
    p = _plan("one-cp-two-workers.json", "v1.28.4", etcd_snapshot=False)
    assert not any(s.kind == "etcd-snapshot" for s in p.steps)
    assert any(s.name == "kubeadm-upgrade-apply" for s in p.steps)


def test_save_command_runs_etcdctl_inside_the_etcd_container() -> None:
    """kubeadm nodes have no etcdctl on the host: the command finds the etcd static pod's
    container with crictl (on the kubelet's CRI endpoint) and runs etcdctl in it with
    kubeadm's certificate paths, saving into etcd's data dir (a hostPath mount)."""
    cmd = snap.save_command(RUN)
    assert "crictl ps -q --name '^etcd$' --state running" in cmd
    assert "--container-runtime-endpoint" in cmd and "/var/lib/kubelet/kubeadm-flags.env" in cmd
    save = next(line for line in cmd.splitlines() if "snapshot save" in line)
    words = shlex.split(save.replace("$crictl", "crictl"))
    assert words[:4] == ["crictl", "exec", "$c", "etcdctl"]
    for flag, value in (
        ("--cacert", "/etc/kubernetes/pki/etcd/ca.crt"),
        ("--cert", "/etc/kubernetes/pki/etcd/server.crt"),
        ("--key", "/etc/kubernetes/pki/etcd/server.key"),
        ("--endpoints", "https://127.0.0.1:2379"),
    ):
        assert f"{flag}={value}" in words
    assert f'f="$d/"upgrader-snapshot-{RUN}.db' in cmd  # under the manifest's --data-dir
    assert "/tmp" not in cmd and "umask 077" in cmd and 'chmod 0600 "$f"' in cmd
    # 3.5: etcdctl snapshot status; 3.6 (no such subcommand): etcdutl
    assert 'case "$v" in 3.[0-5].*|"") tool=etcdctl;; *) tool=etcdutl;; esac' in cmd
    with pytest.raises(snap.SnapshotError):
        snap.save_command("bad id; rm -rf /")


@pytest.mark.parametrize(
    ("version", "etcdctl"), [("3.5.9", True), ("3.5.21", True), ("3.6.4", False), ("3.7.0", False)]
)
def test_status_tool_by_etcd_version(version: str, etcdctl: bool) -> None:
    assert snap.uses_etcdctl_status(version) is etcdctl


def _output(remote: str, digest: str, status: str, version: str = "3.5.9") -> str:
    return (
        f"etcd-container {'c' * 64}\netcd-version {version}\nsnapshot {remote}\n"
        f"{status}\n{digest}  {remote}\nsize 20512\n"
    )


def test_parse_save_output() -> None:
    remote = f"/var/lib/etcd/upgrader-snapshot-{RUN}.db"
    digest = "d" * 64
    status = '{"hash":123,"revision":14000,"totalKey":1342,"totalSize":20512}'
    saved = snap.parse_save_output(_output(remote, digest, status), RUN)
    assert (saved.remote, saved.sha256, saved.size) == (remote, digest, 20512)
    assert saved.status["revision"] == 14000 and saved.tool == "etcdctl"
    # etcdutl 3.6 adds the storage version to the status
    v36 = status.replace("}", ',"version":"3.6.0"}')
    assert snap.parse_save_output(_output(remote, digest, v36, "3.6.4"), RUN).tool == "etcdutl"
    assert snap.fetch_command(remote) == f"cat -- {remote}"
    with pytest.raises(snap.SnapshotError, match="no JSON status"):
        # etcdctl 3.6 `snapshot status` prints its usage and exits 0: no JSON
        snap.parse_save_output(_output(remote, digest, "NAME:\n  snapshot - Manages"), RUN)
    with pytest.raises(snap.SnapshotError, match="empty"):
        snap.parse_save_output(_output(remote, digest, status.replace("20512", "0")), RUN)
    with pytest.raises(snap.SnapshotError, match="no sha256sum"):
        snap.parse_save_output(_output(remote, "x" * 64, status), RUN)
    with pytest.raises(snap.SnapshotError, match="not the snapshot"):
        snap.parse_save_output(
            _output(remote, digest, status).replace(f"{digest}  {remote}", f"{digest}  /x"), RUN
        )
    with pytest.raises(snap.SnapshotError, match="no snapshot path"):
        snap.parse_save_output(_output("/tmp/upgrader-snapshot-x.db", digest, status), RUN)
    with pytest.raises(snap.SnapshotError, match="no size"):
        snap.parse_save_output(_output(remote, digest, status).replace("size 20512", ""), RUN)
    with pytest.raises(snap.SnapshotError, match="unexpected snapshot path"):
        snap.fetch_command("/var/lib/etcd/../../etc/shadow")


def _cp_facts(**cluster: object) -> Facts:
    data = json.loads((DATA / "one-cp-two-workers.json").read_text())
    data["cluster"].update(cluster)
    return Facts.from_dict(data)


def _blockers(f: Facts, **kw: object) -> list[str]:
    p = build_plan(
        f,
        KubeVersion.parse("v1.28.4"),
        load_playbooks(),
        load_release_data(DATA / "releases.json"),
        PlanOptions(policy=PolicyOptions(today=date(2024, 6, 1)), **kw),  # type: ignore[arg-type]
    )
    return [x.message for x in p.findings if x.code == etcd.ETCD_SNAPSHOT_UNAVAILABLE]


def test_external_etcd_is_a_plan_finding_naming_the_flag() -> None:
    f = _cp_facts(etcd_external=["https://10.0.0.5:2379"])
    assert f.cluster.etcd_external == ("https://10.0.0.5:2379",)
    p = build_plan(
        f,
        KubeVersion.parse("v1.28.4"),
        load_playbooks(),
        load_release_data(DATA / "releases.json"),
        PlanOptions(policy=PolicyOptions(today=date(2024, 6, 1))),
    )
    found = [x for x in p.findings if x.code == etcd.ETCD_SNAPSHOT_UNAVAILABLE]
    assert len(found) == 1 and found[0].severity == Severity.BLOCKER and found[0].node == "cp-1"
    assert "external" in found[0].message and "https://10.0.0.5:2379" in found[0].message
    assert "--skip-etcd-snapshot" in (found[0].fix or "")
    assert found[0] in p.blockers
    # the flag leaves the snapshot out, and with it the finding
    assert _blockers(f, etcd_snapshot=False) == []
    # round trip of the fact
    assert Facts.from_dict(f.to_dict()).cluster.etcd_external == ("https://10.0.0.5:2379",)


def test_no_crictl_or_no_etcd_pod_is_a_plan_finding() -> None:
    data = json.loads((DATA / "one-cp-two-workers.json").read_text())
    data["cluster"]["etcd_external"] = []
    data["nodes"][0].setdefault("extra", {})["crictl"] = False
    msgs = _blockers(Facts.from_dict(data))
    assert len(msgs) == 2
    assert any("crictl (cri-tools) is not installed on cp-1" in m for m in msgs)
    assert any("no etcd mirror pod" in m for m in msgs)  # facts have no etcd image tag
    data["nodes"][0]["extra"]["crictl"] = True
    data["nodes"][0]["control_plane"]["etcd"] = "3.5.9-0"
    assert _blockers(Facts.from_dict(data)) == []
    # facts that do not know (an older facts file): no finding
    assert _blockers(_cp_facts()) == []


def test_snapshot_record_in_the_state_file(tmp_path: Path) -> None:
    s = one_hop_run([], inventory=tmp_path / "inv.yaml", run_id=RUN)
    path = tmp_path / "state.json"
    st.save(path, s)
    assert "etcd_snapshot" not in json.loads(path.read_text())  # old readers see no change
    loaded = st.load(path)
    assert loaded is not None and loaded.etcd_snapshot is None
    rec = {
        "node": "cp-1",
        "path": "/x/snap.db",
        "sha256": "a" * 64,
        "revision": 3,
        "remote": "/var/lib/etcd/upgrader-snapshot-x.db",
    }
    st.save(path, st.record_etcd_snapshot(s, rec))
    loaded = st.load(path)
    assert loaded is not None and dict(loaded.etcd_snapshot or {}) == rec
    guidance = snap.restore_guidance(rec)
    assert "/x/snap.db" in guidance and "etcdutl snapshot restore" in guidance
    assert "root-only copy at /var/lib/etcd/upgrader-snapshot-x.db" in guidance
