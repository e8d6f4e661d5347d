"""The health gate between nodes: ``wait_until_healthy`` (N consecutive passes) and the
engine's ``before_batch`` hook it plugs into. Steps are real shell commands run by
``LocalTransport`` in per-node directories; the gate is a scripted sequence of findings."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from fake_clock import FakeClock
from run_kit import two_worker_engine

from upgrader.core.model import Finding, Severity
from upgrader.errors import StepFailed
from upgrader.preflight import between_nodes, wait_until_healthy

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


def wait(
    results: Sequence[list[Finding]],
    *,
    validate_count: int = 1,
    interval: float = 5.0,
    timeout: float = 300.0,
    clock: FakeClock | None = None,
) -> tuple[Any, FakeClock, list[int]]:
    """``wait_until_healthy`` over a scripted gate (passing once the script runs out)."""
    clock = clock or FakeClock()
    it, calls = scripted(results)
    result = wait_until_healthy(
        lambda: next(it),
        validate_count=validate_count,
        interval=interval,
        timeout=timeout,
        sleep=clock.sleep,
        clock=clock,
    )
    return result, clock, calls


def test_a_failed_gate_is_retried_with_a_fast_backoff() -> None:
    result, clock, _ = wait([BAD, BAD, []])
    assert result.passed and result.evaluations == 3 and result.findings == ()
    assert clock.sleeps == [0.5, 1.0]


def test_passes_in_a_row_are_an_interval_apart_and_a_failure_polls_fast() -> None:
    result, clock, _ = wait([[], BAD, [], []], validate_count=2)
    assert result.passed and result.evaluations == 4
    assert clock.sleeps == [5.0, 0.5, 5.0]


def test_the_backoff_starts_again_after_each_failure_streak() -> None:
    result, clock, _ = wait([BAD, BAD, BAD, [], BAD, BAD, [], []], validate_count=2)
    assert result.passed and result.evaluations == 8
    assert clock.sleeps == [0.5, 1.0, 2.0, 5.0, 0.5, 1.0, 5.0]


def test_a_warning_is_a_pass() -> None:
    result, clock, _ = wait([BAD, WARN, [], WARN], validate_count=3, interval=1.0)
    assert result.passed and result.evaluations == 4 and result.findings == tuple(WARN)
    assert clock.sleeps == [0.5, 1.0, 1.0]


def test_the_backoff_is_capped_at_the_interval() -> None:
    result, clock, _ = wait([BAD] * 7, interval=3.0)
    assert result.passed and result.evaluations == 8
    assert clock.sleeps == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0]
    short, clock2, _ = wait([BAD, BAD], interval=0.2)
    assert short.passed and clock2.sleeps == [0.2, 0.2]
    none, clock3, _ = wait([BAD, BAD, [], []], validate_count=2, interval=0.0)
    assert none.passed and clock3.sleeps == [0.0, 0.0, 0.0]


def test_timeout_with_failures_returns_the_last_failure_without_sleeping_past_it() -> None:
    last = [Finding("POD_NOT_RUNNING", Severity.BLOCKER, "kube-proxy-x is Pending", "w-9")]
    result, clock, calls = wait([BAD] * 5 + [last] + [BAD] * 100, timeout=20.0)
    # evaluations at 0, 0.5, 1.5, 3.5, 7.5, 12.5, 17.5; the next (22.5) would be too late
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert not result.passed and result.evaluations == len(calls) == 7
    assert result.findings == tuple(BAD)
    assert clock.now <= 20.0
    early, clock2, _ = wait([BAD] * 4 + [last] + [[]] * 100, validate_count=3, timeout=20.0)
    # failures at 0, 0.5, 1.5, 3.5, 7.5; passes at 12.5, 17.5 (too late for three in a row):
    # the last failure is what is reported
    assert clock2.sleeps == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert not early.passed and early.findings == tuple(last) and clock2.now <= 20.0


def test_timeout_without_a_failure_is_not_stable() -> None:
    result, clock, _ = wait([], validate_count=5, interval=1.0, timeout=2.0)
    assert not result.passed and [f.code for f in result.findings] == ["HEALTH_NOT_STABLE"]
    assert clock.sleeps == [1.0, 1.0] and result.evaluations == 3
    never, clock2, _ = wait([BAD], timeout=0.0)
    assert not never.passed and never.findings == tuple(BAD) and clock2.sleeps == []


def run_engine(tmp_path: Path, gate_results: Sequence[list[Finding]]) -> tuple[Any, list[int]]:
    it, calls = scripted(gate_results)
    engine = two_worker_engine(tmp_path, between_nodes(lambda: next(it), interval=0.0, timeout=0.0))
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
