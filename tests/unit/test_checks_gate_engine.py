"""The health gate between nodes: ``wait_until_healthy`` (N consecutive passes) and the
engine's ``before_batch`` hook it plugs into. Steps are real shell commands run by
``LocalTransport`` in per-node directories; the gate is a scripted sequence of findings."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from upgrader import state as st
from upgrader.core.model import Finding, PlanEntry, Severity, Step
from upgrader.errors import StepFailed
from upgrader.execute.engine import Engine, EngineOptions
from upgrader.preflight import between_nodes, wait_until_healthy
from upgrader.transport.local import LocalTransport

HOP = "v1.28.4"
BAD = [Finding("NODE_NOT_READY", Severity.BLOCKER, "node w-9 is not Ready", "w-9")]
WARN = [Finding("ETCD_HEALTH_UNKNOWN", Severity.WARNING, "no etcdctl", "cp-1")]


def scripted(results: Sequence[list[Finding]]) -> tuple[Iterator[list[Finding]], list[int]]:
    calls: list[int] = []

    def gen() -> Iterator[list[Finding]]:
        for i, r in enumerate(results):
            calls.append(i)
            yield r
        while True:
            calls.append(len(calls))
            yield []

    return gen(), calls


def test_consecutive_passes_with_a_fake_clock() -> None:
    it, _ = scripted([BAD, [], WARN, BAD, [], WARN, []])
    now = [0.0]
    result = wait_until_healthy(
        lambda: next(it),
        validate_count=3,
        interval=1.0,
        timeout=100,
        sleep=lambda s: now.__setitem__(0, now[0] + s),
        clock=lambda: now[0],
    )
    assert result.passed and result.evaluations == 7 and now[0] == 6.0


def test_timeout_returns_the_last_failure() -> None:
    now = [0.0]
    result = wait_until_healthy(
        lambda: BAD,
        validate_count=1,
        interval=1.0,
        timeout=3,
        sleep=lambda s: now.__setitem__(0, now[0] + s),
        clock=lambda: now[0],
    )
    assert not result.passed and [f.code for f in result.findings] == ["NODE_NOT_READY"]
    unstable = wait_until_healthy(
        lambda: [],
        validate_count=5,
        interval=1.0,
        timeout=2,
        sleep=lambda s: now.__setitem__(0, now[0] + s),
        clock=lambda: now[0],
    )
    assert not unstable.passed and unstable.findings[0].code == "HEALTH_NOT_STABLE"


def shell(node: str, name: str, command: str) -> Step:
    return Step(
        id=f"{HOP}/{node}/worker/{name}",
        kind="shell",
        node=node,
        hop=HOP,
        phase="worker",
        name=name,
        description=name,
        command=command,
        sudo=False,
    )


def run_engine(tmp_path: Path, gate_results: Sequence[list[Finding]]) -> tuple[Any, list[int]]:
    entries = [
        PlanEntry(n, "worker", "worker", HOP, (shell(n, "work", "echo done > out"),))
        for n in ("w-1", "w-2")
    ]
    for e in entries:
        (tmp_path / e.node).mkdir(exist_ok=True)
    state_path = tmp_path / "state.json"
    s = st.load(state_path) or st.new_run(
        cluster="lab",
        inventory=str(tmp_path / "inventory.yaml"),
        fingerprint="fp",
        target=HOP,
        hops=[HOP],
        strategy="per-hop",
        steps=[x for e in entries for x in e.steps],
    )
    it, calls = scripted(gate_results)
    engine = Engine(
        entries,
        s,
        save=lambda x: st.save(state_path, x),
        transports=lambda n: LocalTransport(n, cwd=str(tmp_path / n)),
        kube=None,  # type: ignore[arg-type]  # shell steps only
        options=EngineOptions(),
        before_batch=between_nodes(lambda: next(it), interval=0.0, timeout=0.0),
    )
    return engine, calls


def test_engine_runs_the_gate_before_each_node(tmp_path: Path) -> None:
    engine, calls = run_engine(tmp_path, [])
    engine.run()
    assert calls == [0, 1]
    assert (tmp_path / "w-1" / "out").exists() and (tmp_path / "w-2" / "out").exists()


def test_a_failed_gate_stops_before_the_node_and_a_rerun_resumes(tmp_path: Path) -> None:
    engine, _ = run_engine(tmp_path, [[], BAD])
    with pytest.raises(StepFailed, match="cluster health gate before w-2: NODE_NOT_READY") as e:
        engine.run()
    assert e.value.node == "w-2"
    assert (tmp_path / "w-1" / "out").exists() and not (tmp_path / "w-2" / "out").exists()
    again, calls2 = run_engine(tmp_path, [])
    again.run()
    assert calls2 == [0]  # w-1 is done: only w-2's batch is gated
    assert (tmp_path / "w-2" / "out").exists()
