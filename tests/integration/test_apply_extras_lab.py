"""``upgrader apply`` against the lab, for what surrounds the upgrade itself: the binary
verification against the release checksums, the etcd snapshot before the first
``kubeadm upgrade apply``, pre-staging (downloads before the first drain) and the
post-flight summary report. One lab per scenario, small delays; the CLI runs in a
subprocess (helpers of ``apply_kit.py``)."""

from __future__ import annotations

import hashlib
import json
import re
import stat
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from apply_kit import FAST, ONE_WORKER_LOAD, TARGET, Lab, all_at, cluster_spec, one_worker_lab
from cli_run import cli


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_binaries_verified_and_etcd_snapshot_copied(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(one_worker_lab())
    r = lab.apply()
    assert r.returncode == 0, r.stdout + r.stderr
    all_at(lab)
    state = lab.state_doc()

    # binary verification: one step per kubelet visit, after the packages, before the restart
    for node, phase in (("cp-1", "control-plane-kubelet"), ("w-1", "worker")):
        assert state["steps"][f"{TARGET}/{node}/{phase}/verify-binaries"]["status"] == "succeeded"
        log = (Path(state["transcripts"]) / f"{node}.log").read_text()
        for binary in ("kubeadm", "kubelet", "kubectl"):
            assert f"/usr/bin/{binary}: sha256 " in log and "matches the release" in log
        names = list(state["steps"])
        i = names.index(f"{TARGET}/{node}/{phase}/verify-binaries")
        assert names[i - 1].endswith("/kubelet-kubectl-packages")
        assert names[i + 1].endswith("/restart-kubelet")

    # etcd snapshot: taken on cp-1 before `kubeadm upgrade apply`, copied here, sha256 equal
    snap = state["etcd_snapshot"]
    assert snap["node"] == "cp-1"
    local = Path(snap["path"])
    assert local.is_file() and _sha256(local) == snap["sha256"]
    assert stat.S_IMODE(local.stat().st_mode) == 0o600
    # saved inside the etcd container into etcd's data dir (a hostPath mount): the node
    # keeps a root-only copy there; no readable copy anywhere else, nothing in /tmp
    run_id = state["run_id"]
    assert snap["remote"] == f"/var/lib/etcd/upgrader-snapshot-{run_id}.db"
    assert snap["etcd_version"] == "3.5.7" and snap["size"] == local.stat().st_size
    on_node = lab.dir / "nodes" / "cp-1" / "root" / snap["remote"].lstrip("/")
    assert _sha256(on_node) == snap["sha256"]
    assert stat.S_IMODE(on_node.stat().st_mode) == 0o600
    assert not list((lab.dir / "nodes" / "cp-1" / "root").rglob("*upgrader-etcd-snapshot*"))
    calls = lab.calls("cp-1")
    save = next(i for i, c in enumerate(calls) if "snapshot save" in c)
    status = next(i for i, c in enumerate(calls) if "snapshot status" in c)
    apply_ = next(i for i, c in enumerate(calls) if "kubeadm upgrade apply" in c)
    assert save < status < apply_
    assert calls[save].startswith(
        "crictl --runtime-endpoint unix:///var/run/containerd/containerd.sock exec "
    )
    assert (
        " etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt"
        in (calls[save])
    )
    assert " etcdctl snapshot status " in calls[status]  # etcd 3.5: etcdctl still has it
    assert f"etcd snapshot of cp-1 (before kubeadm upgrade apply): {local}" in r.stdout
    assert "etcdutl snapshot restore" in r.stdout
    assert not any("snapshot save" in c for c in lab.calls("w-1"))
    st = cli("status", "-i", str(lab.inventory))
    assert st.returncode == 0 and f"etcd snapshot: {local}" in st.stdout, st.stdout + st.stderr

    # the post-flight summary: printed, and written beside the state file
    assert "Summary of run" in r.stdout and "post-flight checks passed" in r.stdout
    summary = json.loads(lab.state.with_name(lab.state.name + ".summary.json").read_text())
    assert summary["run_id"] == state["run_id"] and summary["ok"] is True
    assert summary["problems"] == [] and summary["etcd_snapshot"]["path"] == snap["path"]
    nodes = {n["node"]: n for n in summary["nodes"]}
    assert set(nodes) == {"cp-1", "w-1"}
    for n in nodes.values():
        assert n["before"]["kubelet"] == "v1.27.8" and n["after"]["kubelet"] == TARGET
        assert n["before"]["kubeadm"] == "v1.27.8" and n["after"]["kubeadm"] == TARGET
        assert n["hardening"] is None  # not requested
    assert nodes["cp-1"]["after"]["control_plane"] == TARGET
    # the drained window is the drain step's start to the uncordon step's end, as recorded
    (window,) = nodes["w-1"]["drained"]
    assert window["start"] == state["steps"][f"{TARGET}/w-1/worker/drain"]["started"]
    assert window["end"] == state["steps"][f"{TARGET}/w-1/worker/uncordon"]["stopped"]
    assert window["seconds"] > 0 and nodes["w-1"]["drained_seconds"] == window["seconds"]
    assert isinstance(summary["warnings"], list)


def test_checksum_mismatch_stops_the_run_on_that_node(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(one_worker_lab())
    # The lab's release checksums, as the inventory names them: one is now wrong.
    wrong = "0" * 64
    (lab.dir / "releases" / TARGET / "kubelet.sha256").write_text(wrong + "\n")
    r = lab.apply("--skip-etcd-snapshot")
    assert r.returncode == 1, r.stdout + r.stderr
    actual = _sha256(lab.dir / "nodes" / "cp-1" / "root" / "usr" / "bin" / "kubelet")
    out = r.stdout + r.stderr
    assert f"{TARGET}/cp-1/control-plane-kubelet/verify-binaries failed" in out
    assert (
        f"/usr/bin/kubelet does not match the release checksum of {TARGET}: "
        f"expected sha256 {wrong}, actual {actual}"
    ) in out
    state = lab.state_doc()
    step = state["steps"][f"{TARGET}/cp-1/control-plane-kubelet/verify-binaries"]
    assert step["status"] == "failed"
    # the kubelet was not restarted on the tampered node, and nothing went on to w-1
    assert not any("restart kubelet" in c for c in lab.calls("cp-1"))
    assert not any("install" in c and "--download-only" not in c for c in lab.calls("w-1"))
    # --skip-etcd-snapshot: none taken
    assert "etcd_snapshot" not in state
    assert not any("snapshot save" in c for c in lab.calls("cp-1"))


# --------------------------------------------------------------------------- pre-staging

DOWNLOAD = 0.3  # seconds the lab's apt sleeps per package it downloads


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _drained_window(lab: Lab, node: str) -> tuple[float, float]:
    """cordon -> uncordon of ``node``, from the run's events."""
    events = lab.events_list()
    start = next(
        _ts(e["ts"]) for e in events if e["event"] == "node-cordoned" and e["node"] == node
    )
    end = next(
        _ts(e["ts"]) for e in events if e["event"] == "node-uncordoned" and e["node"] == node
    )
    return start, end


def _calls(lab: Lab, node: str) -> list[dict[str, Any]]:
    p = lab.dir / "nodes" / node / "calls.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()]


def _step_output(lab: Lab, node: str, step: str) -> str:
    """The transcript section of ``step``'s run on ``node``."""
    log = (Path(lab.state_doc()["transcripts"]) / f"{node}.log").read_text()
    sections = re.split(r"^== ", log, flags=re.M)
    return "".join(s for s in sections if f"{step} [run" in s.split("\n", 1)[0])


def _prestage_lab(make: Callable[..., Lab]) -> Lab:
    return make(one_worker_lab(delays={**FAST, "download": DOWNLOAD}))


def test_prestaged_packages_are_not_downloaded_while_drained(
    make_lab: Callable[..., Lab],
) -> None:
    lab = _prestage_lab(make_lab)
    r = lab.apply("--skip-etcd-snapshot")
    assert r.returncode == 0, r.stdout + r.stderr
    all_at(lab)
    assert "prestage: every node at once, before the first drain" in r.stdout
    events = lab.events_list()
    # the prestage visits ran at once, before any other visit
    starts = [e for e in events if e["event"] == "node-started"]
    assert [(e["node"], e["phase"]) for e in starts[:2]] == [
        ("cp-1", "prestage"),
        ("w-1", "prestage"),
    ]
    first_done = next(i for i, e in enumerate(events) if e["event"] == "node-finished")
    assert events.index(starts[1]) < first_done
    calls = _calls(lab, "w-1")
    assert any("--download-only" in " ".join(c["argv"]) for c in calls)
    assert any("config images pull" in " ".join(c["argv"]) for c in _calls(lab, "cp-1"))

    start, end = _drained_window(lab, "w-1")
    installs = [
        c for c in calls if c["argv"][:2] == ["apt-get", "install"] and start <= c["start"] <= end
    ]
    assert installs and not any("--download-only" in c["argv"] for c in installs)
    out = _step_output(lab, "w-1", f"{TARGET}/w-1/worker/kubelet-kubectl-packages")
    assert "Setting up kubelet" in out
    assert not re.search(r"Get:\d+ \S+\s+(kubelet|kubectl) 1\.28\.4", out)  # from the cache

    summary = json.loads(lab.state.with_name(lab.state.name + ".summary.json").read_text())
    assert [n["node"] for n in summary["nodes"]] == ["cp-1", "w-1"]


def test_without_prestage_the_drained_node_downloads(
    make_lab: Callable[..., Lab],
) -> None:
    lab = _prestage_lab(make_lab)
    plan = cli("plan", "-i", str(lab.inventory), "--to", TARGET, "--no-prestage")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "prestage" not in plan.stdout
    r = lab.apply("--skip-etcd-snapshot", "--no-prestage")
    assert r.returncode == 0, r.stdout + r.stderr
    calls = _calls(lab, "w-1")
    assert not any("--download-only" in c["argv"] for c in calls)
    start, end = _drained_window(lab, "w-1")
    (install,) = [
        c
        for c in calls
        if c["argv"][:2] == ["apt-get", "install"]
        and "kubelet=" in " ".join(c["argv"])
        and start <= c["start"] <= end
    ]
    # two packages downloaded inside the drained window: at least two download delays
    assert install["end"] - install["start"] >= 2 * DOWNLOAD
    out = _step_output(lab, "w-1", f"{TARGET}/w-1/worker/kubelet-kubectl-packages")
    assert re.search(r"Get:\d+ \S+\s+kubelet 1\.28\.4", out)


def test_etcd_36_snapshot_checked_with_etcdutl(make_lab: Callable[..., Lab]) -> None:
    """A cluster at 1.34 runs etcd 3.6 (kubeadm constants.SupportedEtcdVersion), whose
    etcdctl has no ``snapshot status`` (etcd-io/etcd etcdctl/ctlv3/command/
    snapshot_command.go v3.6): the snapshot is checked with the image's etcdutl."""
    target = "v1.35.9"
    lab = make_lab(cluster_spec("v1.34.8", workers=1, workloads=ONE_WORKER_LOAD))
    args = lab.apply_args()
    args[args.index("--to") + 1] = target
    r = cli(*args, timeout=400)
    assert r.returncode == 0, r.stdout + r.stderr
    snap = lab.state_doc()["etcd_snapshot"]
    assert snap["etcd_version"] == "3.6.4"
    local = Path(snap["path"])
    assert _sha256(local) == snap["sha256"] and stat.S_IMODE(local.stat().st_mode) == 0o600
    calls = lab.calls("cp-1")
    status = [c for c in calls if "snapshot status" in c]
    assert len(status) == 1 and " etcdutl snapshot status " in status[0]
    save = next(i for i, c in enumerate(calls) if "snapshot save" in c)
    apply_ = next(i for i, c in enumerate(calls) if "kubeadm upgrade apply" in c)
    assert save < apply_


def test_external_etcd_is_refused_at_plan_time(make_lab: Callable[..., Lab]) -> None:
    """kubeadm-config with etcd.external: no etcd on the control planes to snapshot. The
    plan says so (naming --skip-etcd-snapshot) and apply changes nothing; with the flag
    the run goes on."""
    lab = make_lab(one_worker_lab(etcd="external"))
    p = cli("plan", "-i", str(lab.inventory), "--to", TARGET)
    assert p.returncode != 0, p.stdout + p.stderr
    assert "ETCD_SNAPSHOT_UNAVAILABLE" in p.stdout and "--skip-etcd-snapshot" in p.stdout
    assert "https://192.0.2.11:2379" in p.stdout
    r = lab.apply()
    assert r.returncode != 0 and "ETCD_SNAPSHOT_UNAVAILABLE" in r.stdout + r.stderr
    for node in ("cp-1", "w-1"):
        changed = [c for c in lab.calls(node) if "kubeadm upgrade" in c or "apt-get install" in c]
        assert changed == [], changed
    ok = lab.apply("--skip-etcd-snapshot")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "etcd_snapshot" not in lab.state_doc()
    assert not (lab.dir / "nodes" / "cp-1" / "root" / "etc/kubernetes/manifests/etcd.yaml").exists()
