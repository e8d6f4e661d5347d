"""Long waits speak: ``wait_control_plane``, ``wait_node_ready``, the health gate
(``wait_until_healthy``) and the post-flight budget wait (``wait_pdbs_recovered``) say what
they wait for and the time left, first after 5 s (a wait that ends sooner stays quiet), then
every ``progress_every`` seconds, never more than that apart. Fake clock: only sleeping
moves time."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from fake_clock import FakeClock

from upgrader.core.model import Finding, Severity
from upgrader.errors import StepFailed
from upgrader.kube import nodes
from upgrader.preflight import wait_pdbs_recovered, wait_until_healthy


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


CP_LINES = [
    "kube-apiserver: image tag v1.27.8, Ready=True",
    "kube-controller-manager: image tag v1.28.4, Ready=False (ContainersNotReady: x)",
    "kube-scheduler: image tag v1.28.4, Ready=True",
]


def test_wait_control_plane_says_each_component_and_the_time_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    reads = [0]

    def status(api: Any, node: str, want: Any, **kw: Any) -> tuple[bool, list[str]]:
        reads[0] += 1
        return clock.now >= 100.0, CP_LINES

    monkeypatch.setattr(nodes, "control_plane_status", status)
    said: list[tuple[float, str]] = []
    lines = nodes.wait_control_plane(
        None,  # type: ignore[arg-type]
        "cp-1",
        "v1.28.4",
        timeout=300,
        poll=5,
        clock=clock,
        sleep=clock.sleep,
        on_progress=lambda t: said.append((clock.now, t)),
        progress_every=30,
    )
    assert lines == CP_LINES
    times = [t for t, _ in said]
    assert 5.0 <= times[0] <= 10.0  # at once-ish: the first read after 5 s of waiting
    assert all(30.0 <= g <= 35.0 for g in gaps(times)), times  # every 30 s, never more
    assert len(said) == 4  # ~5, ~35, ~65, ~95; Ready at 100
    text = said[0][1]
    assert text.startswith("waiting for the control plane of cp-1 to run v1.28.4 and be Ready: ")
    assert "kube-apiserver: image tag v1.27.8, Ready=True; " in text
    assert "kube-controller-manager: image tag v1.28.4, Ready=False (ContainersNotReady" in text
    assert text.endswith("s of 300s left") and "\n" not in text


def test_a_control_plane_ready_within_5s_says_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(nodes, "control_plane_status", lambda *a, **k: (clock.now >= 3.0, CP_LINES))
    said: list[str] = []
    nodes.wait_control_plane(
        None,  # type: ignore[arg-type]
        "cp-1", "v1.28.4", timeout=60, poll=2, clock=clock, sleep=clock.sleep,
        on_progress=said.append,
    )  # fmt: skip
    assert said == []


def test_a_control_plane_never_read_says_so_and_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    from upgrader.kube.retry import ApiError

    clock = FakeClock()

    def down(*a: Any, **k: Any) -> tuple[bool, list[str]]:
        raise ApiError("LIST kube-system pods on cp-1: connection refused", None)

    monkeypatch.setattr(nodes, "control_plane_status", down)
    said: list[str] = []
    with pytest.raises(StepFailed, match=r"control plane not at v1\.28\.4 and Ready within 40s"):
        nodes.wait_control_plane(
            None,  # type: ignore[arg-type]
            "cp-1", "v1.28.4", timeout=40, poll=5, clock=clock, sleep=clock.sleep,
            on_progress=said.append, progress_every=30,
        )  # fmt: skip
    assert len(said) == 2
    assert "no pod list read yet (last API error: LIST kube-system pods" in said[0]


def test_wait_node_ready_speaks_first_after_5s(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    node = {
        "status": {
            "nodeInfo": {"kubeletVersion": "v1.27.8"},
            "conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady"}],
        }
    }
    monkeypatch.setattr(nodes, "get_node", lambda *a, **k: node)
    said: list[tuple[float, str]] = []
    with pytest.raises(StepFailed):
        nodes.wait_node_ready(
            None,  # type: ignore[arg-type]
            "w-1", "v1.28.4", timeout=70, poll=5, clock=clock, sleep=clock.sleep,
            on_progress=lambda t: said.append((clock.now, t)), progress_every=30,
        )  # fmt: skip
    times = [t for t, _ in said]
    assert 5.0 <= times[0] <= 10.0 and all(30.0 <= g <= 35.0 for g in gaps(times)), times
    assert said[0][1].startswith("waiting for w-1 to be Ready at kubelet v1.28.4: last seen")


BAD = [Finding("NODE_NOT_READY", Severity.BLOCKER, "node w-9 is not Ready", "w-9")]
ETCD = [Finding("ETCD_UNHEALTHY", Severity.BLOCKER, "cp-1: context deadline exceeded", "cp-1")]


def test_the_health_gate_says_what_fails_and_the_time_left() -> None:
    clock = FakeClock()
    said: list[tuple[float, str]] = []

    def gate() -> list[Finding]:
        if clock.now < 50:
            return BAD + ETCD
        return []

    result = wait_until_healthy(
        gate, validate_count=1, interval=5.0, timeout=300, sleep=clock.sleep, clock=clock,
        on_progress=lambda t: said.append((clock.now, t)), progress_every=30,
    )  # fmt: skip
    assert result.passed
    times = [t for t, _ in said]
    assert len(said) == 2 and 5.0 <= times[0] <= 10.0 and 30.0 <= times[1] - times[0] <= 35.0
    text = said[0][1]
    assert text == (
        "waiting for the cluster health gate: NODE_NOT_READY: node w-9 is not Ready; "
        f"ETCD_UNHEALTHY: cp-1: context deadline exceeded; {300 - times[0]:.0f}s of 300s left"
    )


def test_the_health_gate_counting_passes_says_how_many_it_has() -> None:
    clock = FakeClock()
    said: list[str] = []
    result = wait_until_healthy(
        lambda: [], validate_count=4, interval=5.0, timeout=300, sleep=clock.sleep,
        clock=clock, on_progress=said.append, progress_every=30,
    )  # fmt: skip
    assert result.passed and clock.now == 15.0
    assert said == [
        "waiting for the cluster health gate: passed 2 time(s) in a row of the 4 required; "
        "295s of 300s left"  # the passes at 0 s and 5 s
    ]


def test_a_gate_that_times_out_is_never_silent_30s() -> None:
    clock = FakeClock()
    said: list[float] = []
    result = wait_until_healthy(
        lambda: BAD, interval=5.0, timeout=200, sleep=clock.sleep, clock=clock,
        on_progress=lambda t: said.append(clock.now), progress_every=30,
    )  # fmt: skip
    assert not result.passed
    assert said[0] <= 10.0 and all(g <= 35.0 for g in gaps(said)) and 200 - said[-1] <= 35.0


def test_the_pdb_recovery_wait_names_the_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    from upgrader import preflight
    from upgrader.core.checks import postflight

    clock = FakeClock()
    monkeypatch.setattr(preflight, "paged", lambda *a, **k: iter(()))
    monkeypatch.setattr(
        postflight,
        "pdb_regressions",
        lambda before, after: (
            ["PodDisruptionBudget default/web allows no disruption"] if clock.now < 40 else []
        ),
    )
    said: list[tuple[float, str]] = []
    problems = wait_pdbs_recovered(
        None,  # type: ignore[arg-type]
        [{"metadata": {"name": "web"}}], timeout=120, interval=2, sleep=clock.sleep,
        clock=clock, on_progress=lambda t: said.append((clock.now, t)), progress_every=30,
    )  # fmt: skip
    assert problems == []
    assert [t for t, _ in said] == [6.0, 36.0]
    assert said[0][1] == (
        "waiting for the PodDisruptionBudgets to allow a disruption again: PodDisruptionBudget "
        "default/web allows no disruption; 114s of 120s left"
    )
