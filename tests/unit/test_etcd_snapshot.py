"""The etcd snapshot step: where the planner puts it (once per run, before the first
``kubeadm upgrade apply``; none with ``--skip-etcd-snapshot``), the node command and
parsing its output, and the snapshot record in the state file (optional, backward
compatible). The copy over SFTP is exercised by the lab tests."""

from __future__ import annotations

import json
import shlex
from datetime import date
from pathlib import Path

import pytest

from upgrader import state as st
from upgrader.core.model import Facts, Plan
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


def test_save_command_uses_the_kubeadm_etcd_certificates() -> None:
    cmd = snap.save_command(RUN)
    words = shlex.split(cmd)
    for flag, value in (
        ("--cacert", "/etc/kubernetes/pki/etcd/ca.crt"),
        ("--cert", "/etc/kubernetes/pki/etcd/server.crt"),
        ("--key", "/etc/kubernetes/pki/etcd/server.key"),
        ("--endpoints", "https://127.0.0.1:2379"),
    ):
        assert words[words.index(flag) + 1] == value
    assert "ETCDCTL_API=3" in words
    assert f"/var/lib/upgrader/etcd-snapshot-{RUN}.db" in words
    with pytest.raises(snap.SnapshotError):
        snap.save_command("bad id; rm -rf /")


def test_parse_save_output() -> None:
    remote = snap.remote_path(RUN)
    digest = "d" * 64
    out = (
        '{"hash":123,"revision":14000,"totalKey":1342,"totalSize":4187}\n'
        f"{digest}  {remote}\nfetch {remote}\n"
    )
    status, got, fetch = snap.parse_save_output(out, RUN)
    assert status["revision"] == 14000 and got == digest and fetch == remote
    copy = out.replace(f"fetch {remote}", f"fetch {snap.readable_copy(RUN)}")
    assert snap.parse_save_output(copy, RUN)[2] == snap.readable_copy(RUN)
    assert snap.cleanup_command(snap.readable_copy(RUN), remote) is not None
    assert snap.cleanup_command(remote, remote) is None
    with pytest.raises(snap.SnapshotError, match="no JSON status"):
        snap.parse_save_output(f"{digest}  {remote}\nfetch {remote}\n", RUN)
    with pytest.raises(snap.SnapshotError, match="empty"):
        snap.parse_save_output(out.replace('"totalSize":4187', '"totalSize":0'), RUN)
    with pytest.raises(snap.SnapshotError, match="no sha256sum"):
        snap.parse_save_output(out.replace(digest, "x" * 64), RUN)
    with pytest.raises(snap.SnapshotError, match="no usable path"):
        snap.parse_save_output(out.replace(f"fetch {remote}", "fetch /etc/shadow"), RUN)


def test_snapshot_record_in_the_state_file(tmp_path: Path) -> None:
    s = st.new_run(
        cluster="c",
        inventory=tmp_path / "inv.yaml",
        fingerprint="f",
        target="v1.28.4",
        hops=["v1.28.4"],
        strategy="per-hop",
        steps=[],
        run_id=RUN,
    )
    path = tmp_path / "state.json"
    st.save(path, s)
    assert "etcd_snapshot" not in json.loads(path.read_text())  # old readers see no change
    loaded = st.load(path)
    assert loaded is not None and loaded.etcd_snapshot is None
    rec = {"node": "cp-1", "path": "/x/snap.db", "sha256": "a" * 64, "revision": 3}
    st.save(path, st.record_etcd_snapshot(s, rec))
    loaded = st.load(path)
    assert loaded is not None and dict(loaded.etcd_snapshot or {}) == rec
    guidance = snap.restore_guidance(rec)
    assert "/x/snap.db" in guidance and "snapshot restore" in guidance
