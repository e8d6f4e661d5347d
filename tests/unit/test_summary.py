"""The post-flight summary: drained windows from the state's step times, versions before
and after, hardening, warnings by node, problems, and its JSON file."""

from __future__ import annotations

import json
import stat
from dataclasses import replace
from pathlib import Path

from run_kit import one_hop_run

from upgrader import state as st
from upgrader.core.model import (
    ClusterFacts,
    ControlPlaneVersions,
    Facts,
    Finding,
    NodeFacts,
    PlanEntry,
    Severity,
    Step,
)
from upgrader.core.versions import KubeVersion
from upgrader.summary import build_summary, drained_windows, summary_path, write_summary

HOP = "v1.28.4"


def _step(node: str, phase: str, name: str, kind: str = "shell") -> Step:
    return Step(f"{HOP}/{node}/{phase}/{name}", kind, node, HOP, phase, name, name)


def _entries() -> tuple[PlanEntry, ...]:
    cp = PlanEntry(
        "cp-1", "control-plane", "first-control-plane", HOP, (_step("cp-1", "f", "apply"),)
    )
    w1 = PlanEntry(
        "w-1",
        "worker",
        "worker",
        HOP,
        (
            _step("w-1", "worker", "drain", "drain"),
            _step("w-1", "worker", "verify-kubelet-hardening"),
            _step("w-1", "worker", "uncordon", "uncordon"),
        ),
    )
    w2 = PlanEntry(
        "w-2",
        "worker",
        "worker",
        HOP,
        (
            _step("w-2", "worker", "drain", "drain"),
            _step("w-2", "worker", "uncordon", "uncordon"),
        ),
    )
    return (cp, w1, w2)


def _state(entries: tuple[PlanEntry, ...]) -> st.RunState:
    s = one_hop_run(
        [x for e in entries for x in e.steps],
        precordoned=["w-2"],
        run_id="r1",
        now="2026-01-01T10:00:00.000+00:00",
    )
    t = "2026-01-01T10:00:{:02d}.000+00:00"
    for sid, (a, b) in {
        f"{HOP}/cp-1/f/apply": (1, 2),
        f"{HOP}/w-1/worker/drain": (10, 12),
        f"{HOP}/w-1/worker/verify-kubelet-hardening": (13, 14),
        f"{HOP}/w-1/worker/uncordon": (20, 21),
        f"{HOP}/w-2/worker/drain": (30, 31),
    }.items():
        s = st.start_step(s, sid, now=t.format(a))
        s = st.finish_step(s, sid, now=t.format(b))
    return st.skip_step(s, f"{HOP}/w-2/worker/uncordon", message="precordoned")


def _facts(kubelet: str) -> Facts:
    v = KubeVersion.parse(kubelet)
    return Facts(
        ClusterFacts("lab", v),
        tuple(
            NodeFacts(n, r, kubelet=v, kubeadm=v, kubectl=v)
            for n, r in (("cp-1", "control-plane"), ("w-1", "worker"), ("w-2", "worker"))
        ),
    )


def test_drained_windows_from_the_state() -> None:
    entries = _entries()
    w = drained_windows(_state(entries), entries)
    assert set(w) == {"w-1", "w-2"}
    assert w["w-1"] == [
        {
            "hop": HOP,
            "start": "2026-01-01T10:00:10.000+00:00",
            "end": "2026-01-01T10:00:21.000+00:00",
            "seconds": 11.0,
        }
    ]
    assert w["w-2"][0]["end"] is None and w["w-2"][0]["seconds"] is None  # stays cordoned


def test_build_and_write_summary(tmp_path: Path) -> None:
    entries = _entries()
    findings = [
        Finding("CERT_EXPIRING", Severity.WARNING, "certs expire soon", node="cp-1"),
        Finding("CHECKSUMS_UNAVAILABLE", Severity.WARNING, "no checksums"),
        Finding("DRAIN_EMPTYDIR", Severity.BLOCKER, "passed", node="w-1"),
    ]
    s = build_summary(
        _state(entries),
        entries,
        _facts("v1.27.8"),
        None,  # gathering again failed: the API's kubelet versions stand in
        {"cp-1": HOP, "w-1": HOP, "w-2": HOP},
        findings,
        ["w-2 is cordoned, expected schedulable"],
        harden_kubelet=True,
    )
    assert not s.ok
    by = {n.node: n for n in s.nodes}
    assert by["cp-1"].before["kubelet"] == "v1.27.8" and by["cp-1"].after["kubelet"] == HOP
    assert by["cp-1"].warnings == ["CERT_EXPIRING: certs expire soon"]
    assert s.warnings == ["CHECKSUMS_UNAVAILABLE: no checksums"]
    assert by["w-1"].drained_seconds == 11.0 and by["w-1"].hardening == "verified"
    assert by["w-2"].drained_seconds is None and by["w-2"].hardening == "not run"
    assert by["cp-1"].drained == []
    text = s.text()
    assert "post-flight checks FAILED" in text and "drained 11.0s" in text
    assert "problem: w-2 is cordoned" in text

    after = build_summary(
        _state(entries), entries, _facts("v1.27.8"), _facts(HOP), {}, [], [], harden_kubelet=False
    )
    assert after.ok and all(n.after["kubeadm"] == HOP and n.hardening is None for n in after.nodes)

    path = summary_path(tmp_path / "lab.state.json")
    assert path.name == "lab.state.json.summary.json"
    write_summary(path, s)
    doc = json.loads(path.read_text())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert doc["run_id"] == "r1" and doc["ok"] is False
    assert [n["node"] for n in doc["nodes"]] == ["cp-1", "w-1", "w-2"]
    assert doc["nodes"][1]["drained"][0]["seconds"] == 11.0


def test_a_control_plane_behind_the_target_is_a_problem() -> None:
    entries = _entries()
    after = _facts(HOP)
    old = ControlPlaneVersions(apiserver=KubeVersion.parse("v1.27.8"))
    after = replace(
        after,
        nodes=tuple(replace(n, control_plane=old) if n.name == "cp-1" else n for n in after.nodes),
    )
    s = build_summary(_state(entries), entries, _facts("v1.27.8"), after, {}, [], [])
    assert not s.ok
    assert s.problems == [f"cp-1 runs control-plane components v1.27.8, not {HOP}"]
