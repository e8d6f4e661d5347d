"""The execution engine against real processes: each "node" is a directory under tmp_path,
its steps are real shell commands run by ``LocalTransport``; the Kubernetes API is an
in-memory test double (:class:`MemKube`) with just the node state the engine reads and
writes. The real API is exercised by the lab tests."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from run_kit import one_hop_run, shell_step

from upgrader import state as st
from upgrader.core.model import PlanEntry, Step
from upgrader.errors import DrainTimeout, KubernetesError, StepFailed, TransportError
from upgrader.execute import events as ev
from upgrader.execute import stored
from upgrader.execute.engine import Engine, EngineOptions, batches, precordoned_nodes
from upgrader.execute.ops import DrainOptions, NodeState
from upgrader.execute.runners.api import drain_options
from upgrader.transport.base import Result
from upgrader.transport.local import LocalTransport

HOP = "v1.28.4"
NODE_LOCK = "node.lock"

# --------------------------------------------------------------------------- test doubles


@dataclass
class MemNode:
    unschedulable: bool = False
    ready: bool = True
    kubelet: str = "v1.27.8"


@dataclass
class MemKube:
    """The Kubernetes API as the engine sees it, in memory."""

    nodes: dict[str, MemNode]
    drain_timeout_on: set[str] = field(default_factory=set)
    api_errors: dict[str, int] = field(default_factory=dict)  # op -> failures left
    calls: list[tuple[str, str]] = field(default_factory=list)
    cp_progress: dict[str, list[str]] = field(default_factory=dict)  # node -> lines to say
    progress_every: list[float] = field(default_factory=list)  # as the engine passed it

    def _maybe_fail(self, op: str) -> None:
        left = self.api_errors.get(op, 0)
        if left:
            self.api_errors[op] = left - 1
            raise KubernetesError(f"{op}: 503 Service Unavailable")

    def node_state(self, node: str) -> NodeState:
        n = self.nodes[node]
        return NodeState(node, n.ready, n.unschedulable, n.kubelet)

    def cordon(self, node: str) -> bool:
        self.calls.append(("cordon", node))
        self._maybe_fail("cordon")
        changed = not self.nodes[node].unschedulable
        self.nodes[node].unschedulable = True
        return changed

    def uncordon(self, node: str) -> bool:
        self.calls.append(("uncordon", node))
        self._maybe_fail("uncordon")
        changed = self.nodes[node].unschedulable
        self.nodes[node].unschedulable = False
        return changed

    def drain(self, node: str, options: DrainOptions) -> str:
        self.calls.append(("drain", node))
        self._maybe_fail("drain")
        assert self.nodes[node].unschedulable, "drain of a schedulable node"
        if node in self.drain_timeout_on:
            raise DrainTimeout(
                f"drain of node {node} timed out after {options.timeout:g}s with 1 pod(s) "
                "still there: default/db-0: PodDisruptionBudget default/db allows no disruption",
                node=node,
                remaining=("default/db-0",),
                blocked=("default/db-0: PodDisruptionBudget default/db",),
            )
        return "2 pod(s) evicted, 1 skipped"

    def wait_ready(
        self,
        node: str,
        kubelet_version: str,
        timeout: float,
        poll: float,
        on_progress: Any = None,
        progress_every: float = 30.0,
    ) -> None:
        self.calls.append(("wait-ready", node))
        self._maybe_fail("wait-ready")
        self.nodes[node].kubelet = kubelet_version

    def wait_control_plane(
        self,
        node: str,
        version: str,
        timeout: float,
        poll: float,
        on_progress: Any = None,
        progress_every: float = 30.0,
    ) -> None:
        self.calls.append(("wait-control-plane", node))
        for text in self.cp_progress.get(node, ()):  # what a slow control plane would say
            assert on_progress is not None
            on_progress(text)
        self.progress_every.append(progress_every)


class DroppingTransport:
    """The network between us and a node, dropping the session of the first ``drops``
    commands that contain ``match`` after they ran (the node did the work; we never heard
    back). Everything else goes to the real local transport."""

    def __init__(self, inner: LocalTransport, match: str, drops: int = 1) -> None:
        self.node = inner.node
        self._inner = inner
        self._match = match
        self.drops = drops

    def run(self, command: str, timeout: float = 60.0, sudo: bool = True, **kw: Any) -> Result:
        res = self._inner.run(command, timeout=timeout, sudo=sudo, **kw)
        if self._match in command and self.drops > 0:
            self.drops -= 1
            raise TransportError(f"node {self.node}: SSH session dropped", node=self.node)
        return res

    def close(self) -> None:
        self._inner.close()


# --------------------------------------------------------------------------- helpers


def shell(node: str, name: str, command: str, *, retry_safe: bool = True, **more: Any) -> Step:
    """:func:`run_kit.shell_step` as these tests write it: ``node`` first, retried blindly
    unless told otherwise, 20 s unless given (``more``: ``check``, ``timeout``, ``phase``)."""
    more.setdefault("timeout", 20.0)
    return shell_step(name, command, node=node, retry_safe=retry_safe, **more)


def api(node: str, kind: str, name: str | None = None, phase: str = "worker") -> Step:
    params: dict[str, Any] = {}
    if kind == "drain":
        params = {"timeout": 5, "retry_interval": 1}
    if kind == "wait-ready":
        params = {"kubelet_version": HOP, "poll_interval": 1}
    return Step(
        id=f"{HOP}/{node}/{phase}/{name or kind}",
        kind=kind,
        node=node,
        hop=HOP,
        phase=phase,
        name=name or kind,
        description=kind,
        params=params,
        retry_safe=True,
        timeout=30.0,
    )


def entry(
    node: str, steps: Sequence[Step], role: str = "worker", phase: str = "worker"
) -> PlanEntry:
    return PlanEntry(node=node, role=role, phase=phase, hop=HOP, steps=tuple(steps))


def worker_visit(node: str, extra: Sequence[Step] = ()) -> PlanEntry:
    """A worker's visit: a package step, drain, more work, uncordon (files in its dir)."""
    return entry(
        node,
        [
            shell(node, "kubeadm-upgrade-node", "echo kubeadm >> log"),
            api(node, "drain"),
            *extra,
            shell(node, "kubelet-package", "echo kubelet >> log"),
            api(node, "wait-ready"),
            api(node, "uncordon"),
        ],
    )


@dataclass
class Rig:
    """A run's surroundings: node directories, the state file, events, transcripts."""

    root: Path
    kube: MemKube
    sleeps: list[float] = field(default_factory=list)
    events: list[ev.Event] = field(default_factory=list)
    wrap: dict[str, Any] = field(default_factory=dict)
    sinks: list[ev.EventHandler] = field(default_factory=list)

    @property
    def state_path(self) -> Path:
        return self.root / "state" / "lab.state.json"

    @property
    def transcripts(self) -> Path:
        return self.root / "transcripts"

    def dir(self, node: str) -> Path:
        d = self.root / "nodes" / node
        d.mkdir(parents=True, exist_ok=True)
        return d

    def log(self, node: str) -> list[str]:
        p = self.dir(node) / "log"
        return p.read_text().split() if p.exists() else []

    def transport(self, node: str) -> Any:
        inner = LocalTransport(node, cwd=self.dir(node))
        w = self.wrap.get(node)
        return w(inner) if w is not None else inner

    def new_state(self, entries: Sequence[PlanEntry]) -> st.RunState:
        nodes = [e.node for e in entries]
        s = one_hop_run(
            [s for e in entries for s in e.steps],
            inventory=str(self.root / "inventory.yaml"),
            precordoned=precordoned_nodes(self.kube, nodes),
            transcripts=str(self.transcripts),
        )
        st.save(self.state_path, s)
        return s

    def engine(
        self,
        entries: Sequence[PlanEntry],
        state: st.RunState | None = None,
        **opts: Any,
    ) -> Engine:
        if state is None:
            state = st.load(self.state_path) or self.new_state(entries)
        # A relative lock path: each node's commands run in its own directory, so each
        # node has its own lock, as each real node has its own /run/upgrader.
        opts = {"lock_path": NODE_LOCK, "lock_wait": 0.2, **opts}
        options = EngineOptions(backoff_initial=0.01, backoff_max=0.02, **opts)
        masker = ev.make_masker(options.secrets)
        return Engine(
            entries,
            state,
            save=lambda s: st.save(self.state_path, s),
            transports=self.transport,
            kube=self.kube,
            options=options,
            on_event=ev.Fanout([self.events.append, *self.sinks]),
            transcripts=ev.TranscriptWriter(self.transcripts, masker),
            sleep=self.sleeps.append,
        )

    def saved(self) -> st.RunState:
        s = st.load(self.state_path)
        assert s is not None
        return s

    def kinds(self, kind: str) -> list[ev.Event]:
        return [e for e in self.events if e.kind == kind]


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path, MemKube({n: MemNode() for n in ("cp-1", "w-1", "w-2", "w-3", "w-4")}))


def meet(rig: Rig, node: str, peer: str) -> Step:
    """A step of ``node`` that marks its visit begun and waits (bounded) for ``peer``'s mark:
    it succeeds only while both nodes are in their visit at the same time."""
    peer_dir = rig.dir(peer)
    return shell(
        node,
        "meet",
        f"touch here; i=0; while [ ! -f {peer_dir}/here ] && [ $i -lt 200 ]; do "
        f"sleep 0.05; i=$((i+1)); done; test -f {peer_dir}/here",
    )


def statuses(s: st.RunState) -> dict[str, str]:
    return {k: r.status.value for k, r in s.steps.items()}


# --------------------------------------------------------------------------- order


def test_runs_entries_and_steps_in_plan_order(rig: Rig) -> None:
    shared = rig.root / "order"
    entries = [
        entry(
            "cp-1",
            [
                shell("cp-1", "a", f"echo cp-1/a >> {shared}", phase="first-control-plane"),
                shell("cp-1", "b", f"echo cp-1/b >> {shared}", phase="first-control-plane"),
            ],
            role="control-plane",
            phase="first-control-plane",
        ),
        worker_visit("w-1"),
        entry("w-2", [shell("w-2", "a", f"echo w-2/a >> {shared}")]),
    ]
    final = rig.engine(entries).run()

    assert shared.read_text().split() == ["cp-1/a", "cp-1/b", "w-2/a"]
    assert rig.log("w-1") == ["kubeadm", "kubelet"]
    assert final.status == st.RunStatus.SUCCEEDED
    assert set(statuses(rig.saved()).values()) == {"succeeded"}
    assert rig.saved().status == st.RunStatus.SUCCEEDED
    # the API steps of w-1 happened between its shell steps, and the node ends schedulable
    assert rig.kube.calls == [
        ("cordon", "w-1"),
        ("drain", "w-1"),
        ("wait-ready", "w-1"),
        ("uncordon", "w-1"),
    ]
    assert not rig.kube.nodes["w-1"].unschedulable
    kinds = [e.kind for e in rig.events]
    assert kinds[0] == ev.RUN_STARTED and kinds[-1] == ev.RUN_FINISHED
    assert rig.events[-1].data["ok"] is True
    started = [e.data["step"] for e in rig.kinds(ev.STEP_STARTED)]
    assert started == [s.id for e in entries for s in e.steps]
    assert [e.data["index"] for e in rig.kinds(ev.STEP_FINISHED)] == list(range(1, 9))


def test_every_attempt_is_recorded_running_before_the_command_runs(rig: Rig) -> None:
    """The command reads the state file while it runs: its own step is already `running`."""
    step_id = f"{HOP}/w-1/worker/peek"
    peek = shell("w-1", "peek", f"cat {rig.state_path} > seen.json")
    rig.engine([entry("w-1", [peek])]).run()
    seen = json.loads((rig.dir("w-1") / "seen.json").read_text())
    assert seen["steps"][step_id]["status"] == "running"
    assert seen["steps"][step_id]["attempts"] == 1
    assert rig.saved().step(step_id).status == st.StepStatus.SUCCEEDED


def test_transcript_has_every_command_with_its_output_and_secrets_masked(rig: Rig) -> None:
    secret = "s3cr3t-t0ken-value"
    entries = [
        entry(
            "w-1",
            [
                shell("w-1", "talk", f"echo out-{secret}; echo err-line >&2"),
                shell("w-1", "fail", f"echo {secret} >&2; exit 3", retry_safe=False),
            ],
        )
    ]
    events_file = rig.root / "events.jsonl"
    sink = ev.JsonlSink(events_file, ev.make_masker([secret]))
    rig.sinks.append(sink)
    with pytest.raises(StepFailed):
        rig.engine(entries, secrets=(secret,)).run()
    sink.close()

    text = (rig.transcripts / "w-1.log").read_text()
    assert "echo out-***" in text and "out-***" in text
    assert "err-line" in text and "exit 0" in text and "exit 3" in text
    assert secret not in text
    assert secret not in rig.state_path.read_text()
    assert secret not in events_file.read_text()
    lines = [json.loads(x) for x in events_file.read_text().splitlines()]
    assert all("ts" in x and "event" in x for x in lines)
    assert lines[0]["event"] == "run-started" and lines[-1]["event"] == "run-finished"
    failed = rig.saved().step(f"{HOP}/w-1/worker/fail")
    assert failed.exit_code == 3 and failed.stderr_tail == "***"


def test_a_step_flooding_its_output_is_capped_and_marked(rig: Rig) -> None:
    mib = 1024 * 1024
    out = f"head -c {6 * mib} /dev/zero | tr '\\000' o"
    flood = f"{out}; head -c {5 * mib} /dev/zero | tr '\\000' e >&2"
    entries = [entry("w-1", [shell("w-1", "flood", f"{flood}; exit 3", retry_safe=False)])]
    with pytest.raises(StepFailed) as info:
        rig.engine(entries).run()

    text = (rig.transcripts / "w-1.log").read_text()
    assert f"[... {2 * mib} bytes dropped ...]" in text  # stdout: 6 MiB, 4 kept
    assert f"[... {1 * mib} bytes dropped ...]" in text  # stderr: 5 MiB, 4 kept
    assert len(text) < 9 * mib
    assert max(len(line) for line in text.splitlines()) <= ev.TRANSCRIPT_LINE_CAP + 64
    failed = rig.saved().step(f"{HOP}/w-1/worker/flood")
    assert failed.exit_code == 3 and failed.stderr_tail is not None
    assert len(failed.stderr_tail) < 4000 and len(str(info.value)) < 4000


# --------------------------------------------------------------------------- stop and resume


def test_stops_at_first_failure_and_leaves_later_nodes_untouched(rig: Rig) -> None:
    entries = [
        worker_visit("w-1"),
        worker_visit("w-2", extra=[shell("w-2", "flaky", "test -f fixed", retry_safe=False)]),
        worker_visit("w-3"),
    ]
    with pytest.raises(StepFailed) as info:
        rig.engine(entries).run()

    err = info.value
    assert err.node == "w-2" and err.step == f"{HOP}/w-2/worker/flaky"
    assert "w-2" in str(err) and f"{HOP}/w-2/worker/flaky" in str(err) and "exit 1" in str(err)
    assert rig.log("w-3") == [] and ("cordon", "w-3") not in rig.kube.calls
    s = rig.saved()
    assert s.status == st.RunStatus.FAILED
    assert s.step(f"{HOP}/w-2/worker/flaky").status == st.StepStatus.FAILED
    assert s.step(f"{HOP}/w-2/worker/flaky").attempts == 1  # not retry-safe, no check
    assert all(r.status == st.StepStatus.PENDING for r in st.iter_records(s, "w-3"))
    # the failure came after we cordoned w-2: it stays cordoned and the message says so
    assert rig.kube.nodes["w-2"].unschedulable
    assert s.cordoned_by_us.get("w-2") == f"{HOP}/w-2/worker/drain"
    assert "w-2 is left cordoned" in str(err)
    assert [e.data["node"] for e in rig.kinds(ev.NODE_LEFT_CORDONED)] == ["w-2"]


def test_resume_skips_succeeded_steps_and_finishes_the_cordoned_node(rig: Rig) -> None:
    entries = [
        worker_visit("w-1"),
        worker_visit("w-2", extra=[shell("w-2", "flaky", "test -f fixed", retry_safe=False)]),
        worker_visit("w-3"),
    ]
    with pytest.raises(StepFailed):
        rig.engine(entries).run()
    calls_before = list(rig.kube.calls)
    (rig.dir("w-2") / "fixed").touch()

    final = rig.engine(entries).run()  # a new engine on the saved state: a rerun

    assert final.status == st.RunStatus.SUCCEEDED
    assert rig.log("w-1") == ["kubeadm", "kubelet"]  # not repeated
    assert rig.log("w-2") == ["kubeadm", "kubelet"]  # kubeadm step not repeated either
    assert rig.log("w-3") == ["kubeadm", "kubelet"]
    new_calls = rig.kube.calls[len(calls_before) :]
    assert ("cordon", "w-1") not in new_calls and ("drain", "w-2") not in new_calls
    assert ("uncordon", "w-2") in new_calls
    assert not any(n.unschedulable for n in rig.kube.nodes.values())
    assert dict(rig.saved().cordoned_by_us) == {}
    assert rig.saved().step(f"{HOP}/w-2/worker/flaky").attempts == 2


def test_a_step_left_running_is_rechecked_before_it_runs_again(rig: Rig) -> None:
    done_step = shell("w-1", "done-already", "echo ran >> count1", check="test -f effect1")
    todo_step = shell(
        "w-1", "not-done", "echo ran >> count2; touch effect2", check="test -f effect2"
    )
    entries = [entry("w-1", [done_step, todo_step])]
    s = rig.new_state(entries)
    # An earlier run died in the middle of both (as a SIGKILL leaves them): `running`.
    s = st.start_step(st.start_step(s, done_step.id), todo_step.id)
    st.save(rig.state_path, s)
    (rig.dir("w-1") / "effect1").touch()  # the first one had finished on the node

    rig.engine(entries, state=s).run()

    assert not (rig.dir("w-1") / "count1").exists()
    assert (rig.dir("w-1") / "count2").read_text().split() == ["ran"]
    saved = rig.saved()
    assert saved.step(done_step.id).status == st.StepStatus.SUCCEEDED
    assert "already done" in (saved.step(done_step.id).message or "")
    assert saved.step(todo_step.id).attempts == 2
    checks = rig.kinds(ev.STEP_CHECKED)
    assert [(c.data["step"], c.data["done"], c.data["resumed"]) for c in checks] == [
        (done_step.id, True, True),
        (todo_step.id, False, True),
    ]


def test_a_fresh_step_whose_check_passes_is_not_run(rig: Rig) -> None:
    step = shell("w-1", "pkg", "echo ran >> count", check="test -f installed")
    (rig.dir("w-1") / "installed").touch()
    rig.engine([entry("w-1", [step])]).run()
    assert not (rig.dir("w-1") / "count").exists()
    assert rig.saved().step(step.id).attempts == 0


# --------------------------------------------------------------------------- retries


def test_retry_safe_step_is_retried_with_backoff_until_it_succeeds(rig: Rig) -> None:
    # fails on the first two attempts, succeeds on the third
    cmd = 'echo try >> count; [ "$(wc -l < count)" -ge 3 ]'
    step = shell("w-1", "flaky", cmd)
    rig.engine([entry("w-1", [step])], attempts=3).run()

    assert (rig.dir("w-1") / "count").read_text().split() == ["try"] * 3
    assert rig.saved().step(step.id).attempts == 3
    assert len(rig.sleeps) == 2 and all(x > 0 for x in rig.sleeps)  # backoff between tries
    failed = rig.kinds(ev.STEP_ATTEMPT_FAILED)
    assert [(e.data["attempt"], e.data["will_retry"]) for e in failed] == [(1, True), (2, True)]
    assert (rig.transcripts / "w-1.log").read_text().count("[run, attempt") == 3


def test_retry_safe_step_gives_up_after_the_attempts(rig: Rig) -> None:
    step = shell("w-1", "broken", "echo try >> count; echo nope >&2; exit 2")
    with pytest.raises(StepFailed, match=r"exit 2: nope after 2 attempts"):
        rig.engine([entry("w-1", [step])], attempts=2).run()
    rec = rig.saved().step(step.id)
    assert (rec.status, rec.attempts, rec.exit_code) == (st.StepStatus.FAILED, 2, 2)
    assert rec.stderr_tail == "nope"


def test_non_retry_safe_step_is_not_rerun_when_its_check_passes(rig: Rig) -> None:
    # does its work, then fails (as `kubeadm upgrade apply` failing in its last phase)
    step = shell(
        "w-1",
        "apply",
        "echo ran >> count; touch effect; exit 1",
        check="test -f effect",
        retry_safe=False,
    )
    rig.engine([entry("w-1", [step])], attempts=3).run()
    assert (rig.dir("w-1") / "count").read_text().split() == ["ran"]
    rec = rig.saved().step(step.id)
    assert rec.status == st.StepStatus.SUCCEEDED and rec.attempts == 1
    assert "check passed" in (rec.message or "")


def test_non_retry_safe_step_that_exited_non_zero_is_not_retried(rig: Rig) -> None:
    step = shell(
        "w-1", "apply", "echo ran >> count; exit 1", check="test -f effect", retry_safe=False
    )
    with pytest.raises(StepFailed, match="not retried"):
        rig.engine([entry("w-1", [step])], attempts=3).run()
    assert (rig.dir("w-1") / "count").read_text().split() == ["ran"]
    assert rig.sleeps == []


def test_non_retry_safe_step_is_retried_after_a_timeout_only_when_its_check_says_not_done(
    rig: Rig,
) -> None:
    # The first attempt hangs (killed at the timeout before doing anything); the check
    # then says "not done", so a second attempt is allowed and completes.
    cmd = "echo ran >> count; if [ -f first ]; then touch effect; else touch first; sleep 30; fi"
    step = shell("w-1", "apply", cmd, check="test -f effect", retry_safe=False, timeout=1.0)
    rig.engine([entry("w-1", [step])], attempts=3).run()
    assert (rig.dir("w-1") / "count").read_text().split() == ["ran", "ran"]
    assert rig.saved().step(step.id).attempts == 2
    checked = rig.kinds(ev.STEP_CHECKED)
    assert [c.data["done"] for c in checked] == [False, False]  # before, and before retry


def test_dropped_session_counts_as_a_failed_attempt(rig: Rig) -> None:
    network = DroppingTransport(LocalTransport("w-1", cwd=rig.dir("w-1")), "echo ran", drops=1)
    rig.wrap["w-1"] = lambda inner: network
    safe = shell("w-1", "upgrade-safe", "echo ran >> count")
    rig.engine([entry("w-1", [safe])], attempts=3).run()
    assert (rig.dir("w-1") / "count").read_text().split() == ["ran", "ran"]  # ran twice
    rec = rig.saved().step(safe.id)
    assert rec.attempts == 2 and rec.status == st.StepStatus.SUCCEEDED
    assert "SSH session dropped" in rig.kinds(ev.STEP_ATTEMPT_FAILED)[0].data["error"]
    assert "transport error" in (rig.transcripts / "w-1.log").read_text()


def test_dropped_session_on_a_non_retry_safe_step_is_settled_by_its_check(rig: Rig) -> None:
    network = DroppingTransport(LocalTransport("w-1", cwd=rig.dir("w-1")), "echo ran", drops=1)
    rig.wrap["w-1"] = lambda inner: network
    step = shell(
        "w-1",
        "upgrade-node",
        "echo ran >> count; touch effect",
        check="test -f effect",
        retry_safe=False,
    )
    rig.engine([entry("w-1", [step])]).run()
    # the command did its work before the session dropped: the check says so, no rerun
    assert (rig.dir("w-1") / "count").read_text().split() == ["ran"]
    assert rig.saved().step(step.id).status == st.StepStatus.SUCCEEDED


def test_api_errors_are_retried_on_api_steps(rig: Rig) -> None:
    rig.kube.api_errors = {"drain": 2}
    rig.engine([worker_visit("w-1")], attempts=3).run()
    assert rig.saved().step(f"{HOP}/w-1/worker/drain").attempts == 3
    assert rig.kube.calls.count(("drain", "w-1")) == 3


# --------------------------------------------------------------------------- cordon provenance


def test_precordoned_node_stays_cordoned(rig: Rig) -> None:
    rig.kube.nodes["w-1"].unschedulable = True  # an operator's maintenance cordon
    entries = [worker_visit("w-1"), worker_visit("w-2")]
    final = rig.engine(entries).run()

    assert final.precordoned == frozenset({"w-1"})
    assert rig.kube.nodes["w-1"].unschedulable  # still cordoned
    assert not rig.kube.nodes["w-2"].unschedulable
    assert ("uncordon", "w-1") not in rig.kube.calls
    assert ("drain", "w-1") in rig.kube.calls  # it is still drained and upgraded
    rec = final.step(f"{HOP}/w-1/worker/uncordon")
    assert rec.status == st.StepStatus.SKIPPED and "cordoned before the run" in (rec.message or "")
    assert [e.data["node"] for e in rig.kinds(ev.NODE_LEFT_CORDONED)] == ["w-1"]
    assert [e.data["node"] for e in rig.kinds(ev.NODE_CORDONED)] == ["w-2"]


def test_drain_timeout_uncordons_the_node_we_cordoned_and_stops(rig: Rig) -> None:
    rig.kube.drain_timeout_on = {"w-1"}
    entries = [worker_visit("w-1"), worker_visit("w-2")]
    with pytest.raises(StepFailed) as info:
        rig.engine(entries).run()

    msg = str(info.value)
    assert "PodDisruptionBudget default/db" in msg and "uncordoned again" in msg
    assert "left cordoned" not in msg
    assert not rig.kube.nodes["w-1"].unschedulable
    assert rig.kube.calls.count(("drain", "w-1")) == 1  # a drain timeout is not retried
    assert rig.log("w-1") == ["kubeadm"]  # nothing after the drain ran
    assert not any(n == "w-2" for _, n in rig.kube.calls) and rig.log("w-2") == []
    s = rig.saved()
    assert s.step(f"{HOP}/w-1/worker/drain").status == st.StepStatus.FAILED
    assert dict(s.cordoned_by_us) == {}


def test_drain_timeout_leaves_a_precordoned_node_cordoned(rig: Rig) -> None:
    rig.kube.nodes["w-1"].unschedulable = True
    rig.kube.drain_timeout_on = {"w-1"}
    with pytest.raises(StepFailed):
        rig.engine([worker_visit("w-1")]).run()
    assert rig.kube.nodes["w-1"].unschedulable
    assert ("uncordon", "w-1") not in rig.kube.calls


def test_cordon_step_records_provenance_only_for_nodes_not_cordoned_before(rig: Rig) -> None:
    rig.kube.nodes["w-2"].unschedulable = True
    entries = [
        entry("w-1", [api("w-1", "cordon"), shell("w-1", "x", "exit 1", retry_safe=False)]),
    ]
    with pytest.raises(StepFailed, match="w-1 is left cordoned"):
        rig.engine(entries).run()
    assert dict(rig.saved().cordoned_by_us) == {"w-1": f"{HOP}/w-1/worker/cordon"}

    other = Rig(rig.root / "other", rig.kube)
    other.engine([entry("w-2", [api("w-2", "cordon"), api("w-2", "uncordon")])]).run()
    assert dict(other.saved().cordoned_by_us) == {}
    assert rig.kube.nodes["w-2"].unschedulable


# --------------------------------------------------------------------------- batches


def test_batches_group_consecutive_workers_of_one_hop() -> None:
    cp = entry("cp-1", [], role="control-plane", phase="first-control-plane")
    ws = [entry(f"w-{i}", []) for i in range(1, 6)]
    assert [[e.node for e in b] for b in batches([cp, *ws], 1)] == [
        ["cp-1"],
        ["w-1"],
        ["w-2"],
        ["w-3"],
        ["w-4"],
        ["w-5"],
    ]
    assert [[e.node for e in b] for b in batches([cp, *ws], 2)] == [
        ["cp-1"],
        ["w-1", "w-2"],
        ["w-3", "w-4"],
        ["w-5"],
    ]


def test_max_unavailable_runs_a_batch_at_once_and_stops_after_a_failed_batch(rig: Rig) -> None:
    # Both nodes of the first batch must be in their visit at the same time: each waits
    # (bounded) for the other's marker file.
    entries = [
        worker_visit("w-1", extra=[meet(rig, "w-1", "w-2")]),
        worker_visit(
            "w-2", extra=[meet(rig, "w-2", "w-1"), shell("w-2", "x", "exit 1", retry_safe=False)]
        ),
        worker_visit("w-3"),
        worker_visit("w-4"),
    ]
    with pytest.raises(StepFailed) as info:
        rig.engine(entries, max_unavailable=2).run()
    assert info.value.node == "w-2"
    s = rig.saved()
    assert all(r.status == st.StepStatus.SUCCEEDED for r in st.iter_records(s, "w-1"))
    assert rig.log("w-3") == [] and rig.log("w-4") == []
    assert not rig.kube.nodes["w-1"].unschedulable and rig.kube.nodes["w-2"].unschedulable


# --------------------------------------------------------------------------- the node lock


@dataclass
class Orphan:
    """A command a killed run left running on a node: it holds the node's lock (the very
    wrapper the engine sends), and does its work (``script``) after ``seconds``."""

    proc: subprocess.Popen[bytes]

    @classmethod
    def start(cls, node_dir: Path, script: str, seconds: float) -> Orphan:
        from upgrader.core import nodelock

        cmd = nodelock.wrap(f"sleep {seconds}; {script}", wait=5, path=NODE_LOCK)
        proc = subprocess.Popen(["/bin/sh", "-c", cmd], cwd=node_dir)
        deadline = time.monotonic() + 5
        # held once a second flock on the file fails
        while time.monotonic() < deadline:
            probe = subprocess.run(["flock", "-n", NODE_LOCK, "true"], cwd=node_dir, check=False)
            if probe.returncode != 0:
                return cls(proc)
            time.sleep(0.02)
        proc.kill()
        raise AssertionError("the orphan never took the lock")

    def wait(self) -> int:
        return self.proc.wait(timeout=30)


def apply_step() -> Step:
    """``kubeadm upgrade apply`` as the playbook has it: not retry-safe, with a check."""
    return shell(
        "cp-1",
        "kubeadm-upgrade-apply",
        "echo apply >> log; touch applied",
        check="test -f applied",
        retry_safe=False,
    )


def run_beside(rig: Rig, step: Step, orphan_script: str, seconds: float) -> Orphan:
    """Start an orphan holding the node lock, then run ``step`` on the same node."""
    orphan = Orphan.start(rig.dir(step.node), orphan_script, seconds)
    rig.engine([entry(step.node, [step], role="control-plane")]).run()
    return orphan


def test_a_check_waits_for_the_command_a_killed_run_left_running(rig: Rig) -> None:
    # The killed run's `kubeadm upgrade apply` still runs and will succeed; the resume's
    # check must wait for it, see its effect, and never start a second one.
    step = apply_step()
    orphan = run_beside(rig, step, "echo orphan >> log; touch applied", 1.0)
    assert orphan.wait() == 0
    assert rig.log("cp-1") == ["orphan"]
    rec = rig.saved().step(step.id)
    assert rec.status == st.StepStatus.SUCCEEDED
    assert "already done" in (rec.message or "")
    waits = rig.kinds(ev.STEP_LOCK_WAIT)
    assert [e.data["step"] for e in waits] == [step.id]
    # the holder is named: the orphan's wrapper shell, root's
    holder = f"pid {orphan.proc.pid} (sh, user root)"
    assert waits[0].data["holder"] == holder
    transcript = (rig.transcripts / "cp-1.log").read_text()
    assert f"node.lock is held by {holder}; waiting" in transcript


def test_a_check_after_an_orphan_that_failed_runs_the_command_once(rig: Rig) -> None:
    step = apply_step()
    orphan = run_beside(rig, step, "echo orphan >> log; exit 141", 0.5)
    assert orphan.wait() == 141
    assert rig.log("cp-1") == ["orphan", "apply"]
    assert rig.saved().step(step.id).status == st.StepStatus.SUCCEEDED


def test_a_step_without_check_not_safe_to_repeat_is_not_started_after_a_busy_lock(
    rig: Rig,
) -> None:
    step = shell("cp-1", "apply", "echo apply >> log", retry_safe=False)
    orphan = Orphan.start(rig.dir("cp-1"), "echo orphan >> log", 1.0)
    with pytest.raises(StepFailed) as info:
        rig.engine([entry("cp-1", [step], role="control-plane")]).run()
    orphan.wait()
    assert rig.log("cp-1") == ["orphan"]
    assert "another command held the node lock node.lock" in str(info.value)
    assert "not safe to repeat and has no check" in str(info.value)
    assert rig.saved().step(step.id).status == st.StepStatus.FAILED


def test_a_retry_safe_step_without_check_runs_once_the_lock_is_free(rig: Rig) -> None:
    step = shell("w-1", "pull", "echo pull >> log")
    orphan = Orphan.start(rig.dir("w-1"), "echo orphan >> log", 1.0)
    rig.engine([entry("w-1", [step])]).run()
    orphan.wait()
    assert rig.log("w-1") == ["orphan", "pull"]
    assert rig.saved().step(step.id).status == st.StepStatus.SUCCEEDED
    assert len(rig.kinds(ev.STEP_LOCK_WAIT)) == 1  # one wait, announced once


def test_a_step_that_does_not_run_as_root_takes_no_node_lock(rig: Rig) -> None:
    # it runs as the SSH user, who may not open the root-owned lock file
    step = dataclasses.replace(shell("w-1", "whoami", "echo user >> log"), sudo=False)
    orphan = Orphan.start(rig.dir("w-1"), "echo orphan >> log", 2.0)
    rig.engine([entry("w-1", [step])]).run()
    assert rig.log("w-1") == ["user"]  # ran while the orphan still held the lock
    orphan.wait()
    assert rig.log("w-1") == ["user", "orphan"]
    assert rig.kinds(ev.STEP_LOCK_WAIT) == []


def test_a_lock_held_past_the_step_timeout_fails_the_step_naming_the_lock(rig: Rig) -> None:
    step = shell(
        "cp-1",
        "apply",
        "echo apply >> log",
        check="test -f applied",
        retry_safe=False,
        timeout=1.0,
    )
    orphan = Orphan.start(rig.dir("cp-1"), "true", 6.0)
    try:
        with pytest.raises(StepFailed) as info:
            rig.engine([entry("cp-1", [step], role="control-plane")]).run()
    finally:
        orphan.proc.kill()
        orphan.proc.wait()
    assert rig.log("cp-1") == []
    assert "another command has held the node lock node.lock for" in str(info.value)
    assert f"open by pid {orphan.proc.pid} (sh, user root)" in str(info.value)


# --------------------------------------------------------------------------- SIGKILL


CHILD = """
import sys
from upgrader import state as st
from upgrader.execute import stored
from upgrader.execute.engine import Engine, EngineOptions
from upgrader.transport.local import LocalTransport

root, state_path = sys.argv[1], sys.argv[2]
plan = stored.load(state_path + ".plan.json", "run-1")
s = st.load(state_path) or st.new_run(
    cluster="lab", inventory=root + "/inventory.yaml", fingerprint="fp", target=plan.target,
    hops=plan.hops, strategy=plan.strategy, steps=plan.steps, run_id="run-1",
)
st.save(state_path, s)
Engine(
    plan.entries, s, save=lambda x: st.save(state_path, x),
    transports=lambda n: LocalTransport(n, cwd=root + "/nodes/" + n),
    kube=None, options=EngineOptions(lock_path="node.lock"),
).run()
"""


def _start_child(rig: Rig, entries: Sequence[PlanEntry]) -> subprocess.Popen[bytes]:
    sp = stored.StoredPlan("run-1", "v1.27.8", HOP, (HOP,), "per-hop", tuple(entries))
    rig.state_path.parent.mkdir(parents=True, exist_ok=True)
    stored.save(stored.plan_path(rig.state_path), sp)
    script = rig.root / "child.py"
    script.write_text(CHILD)
    return subprocess.Popen(
        [sys.executable, str(script), str(rig.root), str(rig.state_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for(path: Path, proc: subprocess.Popen[bytes], limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(
                f"child exited early: {proc.stderr.read() if proc.stderr else ''!r}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.02)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL


def _reload(rig: Rig) -> tuple[list[PlanEntry], st.RunState]:
    s = rig.saved()
    plan = stored.load(stored.plan_path(rig.state_path), s.run_id)
    return list(plan.entries), s


def _sigkill_entries(middle: Step) -> list[PlanEntry]:
    return [
        entry(
            "w-1",
            [
                shell("w-1", "one", "echo one >> log"),
                middle,
                shell("w-1", "three", "echo three >> log"),
            ],
        )
    ]


def test_sigkill_mid_step_then_resume_reruns_the_unfinished_step(rig: Rig) -> None:
    # The step's process dies with the engine (as a remote command whose session ended);
    # on resume its check says "not done", so it runs again; steps before it do not.
    middle = shell(
        "w-1",
        "two",
        "echo two-start >> log; echo $$ > pid; "
        "if [ ! -f started ]; then touch started; sleep 60; fi; echo two-end >> log",
        check="grep -qx two-end log",
        retry_safe=False,
    )
    child = _start_child(rig, _sigkill_entries(middle))
    _wait_for(rig.dir("w-1") / "started", child)
    _kill(child)
    os.kill(int((rig.dir("w-1") / "pid").read_text()), signal.SIGKILL)

    entries, s = _reload(rig)
    assert s.step(middle.id).status == st.StepStatus.RUNNING
    assert s.step(f"{HOP}/w-1/worker/one").status == st.StepStatus.SUCCEEDED
    rig.engine(entries, state=s).run()

    assert rig.log("w-1") == ["one", "two-start", "two-start", "two-end", "three"]
    final = rig.saved()
    assert final.status == st.RunStatus.SUCCEEDED
    assert final.step(middle.id).attempts == 2


def test_sigkill_mid_step_then_resume_does_not_repeat_a_step_that_finished(rig: Rig) -> None:
    # The engine dies, but the command goes on and completes on the node (as a remote
    # command does): the resume's check sees its effect and does not run it again.
    middle = shell(
        "w-1",
        "two",
        "touch started; while [ ! -f go ]; do sleep 0.05; done; echo two >> log",
        check="grep -qx two log",
        retry_safe=False,
    )
    child = _start_child(rig, _sigkill_entries(middle))
    _wait_for(rig.dir("w-1") / "started", child)
    _kill(child)
    (rig.dir("w-1") / "go").touch()
    deadline = time.monotonic() + 30
    while "two" not in rig.log("w-1") and time.monotonic() < deadline:
        time.sleep(0.02)

    entries, s = _reload(rig)
    assert s.step(middle.id).status == st.StepStatus.RUNNING
    rig.engine(entries, state=s).run()

    assert rig.log("w-1") == ["one", "two", "three"]
    rec = rig.saved().step(middle.id)
    assert rec.status == st.StepStatus.SUCCEEDED and rec.attempts == 1
    assert "already done" in (rec.message or "")


# --------------------------------------------------------------------------- stored plan


def test_stored_plan_round_trips_every_step_field(tmp_path: Path) -> None:
    entries = (worker_visit("w-1"),)
    step = Step(
        id="v1.28.4/w-1/worker/odd",
        kind="shell",
        node="w-1",
        hop=HOP,
        phase="worker",
        name="odd",
        description="d",
        command="true",
        check="false",
        params={},
        retry_safe=False,
        timeout=12.5,
        sudo=False,
    )
    entries = (*entries, entry("w-1", [step]))
    sp = stored.StoredPlan("r", "v1.27.8", HOP, (HOP,), "per-hop", entries)
    p = stored.plan_path(tmp_path / "x.state.json")
    stored.save(p, sp)
    back = stored.load(p, "r")
    assert back == sp
    with pytest.raises(Exception, match="belongs to run r, not q"):
        stored.load(p, "q")


def test_precordoned_nodes_reads_each_node_once(rig: Rig) -> None:
    rig.kube.nodes["w-3"].unschedulable = True
    assert precordoned_nodes(rig.kube, ["w-1", "w-3", "w-1"]) == frozenset({"w-3"})


# --------------------------------------------------------------------------- display


def test_plain_reporter_prints_one_line_per_step_and_the_failure(rig: Rig) -> None:
    from io import StringIO

    from upgrader.execute.progress import PlainReporter, RichProgress

    out, quiet_out, rich_out = StringIO(), StringIO(), StringIO()
    rig.sinks.extend(
        [PlainReporter(out), PlainReporter(quiet_out, quiet=True), RichProgress(rich_out)]
    )
    entries = [
        worker_visit("w-1"),
        entry("w-2", [shell("w-2", "boom", "exit 4", retry_safe=False)]),
    ]
    with pytest.raises(StepFailed):
        rig.engine(entries).run()

    lines = out.getvalue().splitlines()
    assert lines[0].startswith("run ") and "6 steps on 2 nodes" in lines[0]
    assert "[1/6] w-1 kubeadm-upgrade-node ok" in "\n".join(lines)
    assert any(x.startswith("[6/6] w-2 boom FAILED: exit 4") for x in lines)
    assert lines[-1].startswith("run ") and "stopped" in lines[-1]
    assert quiet_out.getvalue().splitlines() == [
        x for x in lines if "FAILED" in x or "left cordoned" in x
    ]
    assert "w-2 boom FAILED" in rich_out.getvalue()
    assert "-- w-1 done (worker, v1.28.4)" in lines  # which visit of the node ended


def test_output_that_is_no_terminal_carries_a_timestamp_per_line(rig: Rig) -> None:
    import re
    from io import StringIO

    from upgrader.execute.progress import make_reporter

    out = StringIO()  # not a terminal
    rig.sinks.append(make_reporter(stream=out))
    rig.engine([worker_visit("w-1")]).run()
    lines = out.getvalue().splitlines()
    assert lines and all(
        re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (run |\[|-- |    )", x) for x in lines
    ), lines


# --------------------------------------------------------------------------- apply helpers


def test_post_check_names_each_node_off_its_expected_state(rig: Rig) -> None:
    from upgrader.apply import post_check

    entries = [worker_visit("w-1"), worker_visit("w-2"), worker_visit("w-3")]
    rig.kube.nodes["w-3"].unschedulable = True
    final = rig.engine(entries).run()
    assert post_check(rig.kube, final, tuple(entries)) == []

    rig.kube.nodes["w-1"].kubelet = "v1.27.8"
    rig.kube.nodes["w-2"].unschedulable = True
    rig.kube.nodes["w-3"].unschedulable = False
    rig.kube.nodes["w-3"].ready = False
    assert post_check(rig.kube, final, tuple(entries)) == [
        "w-1 reports kubelet v1.27.8, expected v1.28.4",
        "w-2 is cordoned, expected schedulable",
        "w-3 is not Ready",
        "w-3 is schedulable, expected cordoned (as before the run)",
    ]


def test_nodes_an_abandoned_run_cordoned_are_not_taken_for_precordoned(rig: Rig) -> None:
    from upgrader.apply import _precordoned

    entries = (worker_visit("w-1"), worker_visit("w-2"), worker_visit("w-3"))
    rig.kube.nodes["w-2"].unschedulable = True  # the operator's
    old = st.mark_cordoned(rig.new_state(entries), "w-3", f"{HOP}/w-3/worker/drain")
    rig.kube.nodes["w-3"].unschedulable = True  # the abandoned run's
    assert _precordoned(rig.kube, entries, None) == frozenset({"w-2", "w-3"})
    assert _precordoned(rig.kube, entries, old) == frozenset({"w-2"})


# --------------------------------------------------------------------------- long waits speak


def test_a_slow_control_plane_wait_speaks_as_step_waiting_events(rig: Rig) -> None:
    """What ``wait-control-plane`` says while it waits reaches the events and the progress
    lines as ``step-waiting`` of that step, with the engine's ``progress_every``."""
    from io import StringIO

    from upgrader.execute.progress import PlainReporter

    out = StringIO()
    rig.sinks.append(PlainReporter(out))
    said = (
        "waiting for the control plane of cp-1 to run v1.28.4 and be Ready: kube-apiserver: "
        "image tag v1.27.8, Ready=True; 85s of 90s left"
    )
    rig.kube.cp_progress["cp-1"] = [said]
    step = api("cp-1", "wait-control-plane", phase="control-plane")
    rig.engine([entry("cp-1", [step], role="control-plane", phase="control-plane")],
               progress_every=7.0).run()  # fmt: skip
    assert rig.kube.progress_every == [7.0]
    waiting = rig.kinds(ev.STEP_WAITING)
    assert [e.data["message"] for e in waiting] == [said]
    assert waiting[0].step == step.id and waiting[0].node == "cp-1"
    assert waiting[0].data["kind"] == "wait-control-plane"
    assert f"[1/1] cp-1 wait-control-plane: {said}" in out.getvalue().splitlines()


def test_the_health_gate_between_nodes_speaks_as_health_gate_waiting(rig: Rig) -> None:
    """While the gate before w-2 fails, ``health-gate-waiting`` events name what fails and
    the time left (no step runs then: not a ``step-waiting``); the gate then passes."""
    from io import StringIO

    from upgrader.core.model import Finding, Severity
    from upgrader.execute.progress import PlainReporter
    from upgrader.preflight import between_nodes

    out = StringIO()
    rig.sinks.append(PlainReporter(out))
    bad = [Finding("NODE_NOT_READY", Severity.BLOCKER, "node w-1 is not Ready", "w-1")]
    now = [0.0]
    results = iter([[], *([bad] * 30)])

    def gate() -> list[Finding]:
        return next(results, [])

    def sleep(s: float) -> None:
        now[0] += s

    entries = [entry("w-1", [shell("w-1", "a", "true")]), entry("w-2", [shell("w-2", "b", "true")])]
    engine = rig.engine(entries)
    engine._before_batch = between_nodes(
        gate,
        interval=5.0,
        timeout=300.0,
        sleep=sleep,
        clock=lambda: now[0],
        on_progress=engine.gate_waiting,
        progress_every=30.0,
    )
    engine.run()
    gw = rig.kinds(ev.GATE_WAITING)
    assert len(gw) >= 4, gw
    assert all(e.node == "w-2" and e.data["nodes"] == ["w-2"] and e.step is None for e in gw)
    first = gw[0].data["message"]
    assert first.startswith("waiting for the cluster health gate: NODE_NOT_READY: node w-1 is ")
    assert first.endswith("s of 300s left")
    assert not rig.kinds(ev.STEP_WAITING)
    lines = out.getvalue().splitlines()
    assert f"    before w-2: {first}" in lines


def test_a_long_command_says_it_still_runs_and_stops_saying_it_when_done(rig: Rig) -> None:
    """No attempt is silent for longer than ``progress_every``: a command that runs on
    says so, with the time left of its timeout, until it ends (and never after)."""
    import re

    step = shell("w-1", "slow", "sleep 1.5; echo slow >> log")
    rig.engine([entry("w-1", [step, shell("w-1", "quick", "true")])], progress_every=0.4).run()
    kinds = [(e.kind, e.step) for e in rig.events]
    waiting = [e for e in rig.kinds(ev.STEP_WAITING)]
    assert 2 <= len(waiting) <= 4, waiting
    assert all(e.step == step.id for e in waiting)
    assert all(
        re.fullmatch(r"still running after \d+s; \d+s of 20s left", e.data["message"])
        for e in waiting
    ), [e.data["message"] for e in waiting]
    finished = kinds.index((ev.STEP_FINISHED, step.id))
    assert all(k != ev.STEP_WAITING for k, _ in kinds[finished:])  # the heartbeat stopped


def test_a_resume_given_drain_flags_drains_with_them_not_with_the_recorded_step(rig: Rig) -> None:
    w1, w2 = worker_visit("w-1"), worker_visit("w-2")
    recorded = next(s for s in w1.steps if s.kind == "drain")
    assert "fallback" not in recorded.params  # the stored step says: no fallback
    engine = rig.engine([w1, w2], drain_overrides={"w-1": ("delete", "app=db")})
    opts = drain_options(engine, recorded)
    assert (opts.fallback, opts.pod_selector) == ("delete", "app=db")
    other = drain_options(engine, next(s for s in w2.steps if s.kind == "drain"))
    assert (other.fallback, other.pod_selector) == ("none", None)


# --------------------------------------------------------------------------- one round trip


@dataclass
class Counting:
    """A transport that counts the execs it is asked for (each one an SSH round trip)."""

    inner: LocalTransport
    calls: list[str]

    @property
    def node(self) -> str:
        return self.inner.node

    def run(self, command: str, timeout: float = 60.0, sudo: bool = True, **kw: Any) -> Result:
        self.calls.append(command)
        return self.inner.run(command, timeout=timeout, sudo=sudo, **kw)

    def close(self) -> None:
        self.inner.close()


def counted(rig: Rig, node: str) -> list[str]:
    calls: list[str] = []
    rig.wrap[node] = lambda inner: Counting(inner, calls)
    return calls


def test_a_step_whose_check_fails_sends_check_and_command_in_one_exec(rig: Rig) -> None:
    calls = counted(rig, "cp-1")
    step = apply_step()
    rig.engine([entry("cp-1", [step], role="control-plane")]).run()
    assert len(calls) == 1
    assert rig.log("cp-1") == ["apply"]
    rec = rig.saved().step(step.id)
    assert (rec.status, rec.attempts, rec.exit_code) == (st.StepStatus.SUCCEEDED, 1, 0)
    mine = [(e.kind, e.data.get("done")) for e in rig.events if e.data.get("step") == step.id]
    assert mine == [
        (ev.STEP_CHECKED, False),
        (ev.STEP_STARTED, None),
        (ev.STEP_FINISHED, None),
    ]
    # the transcript shows the check and the command apart, each as the plan wrote it
    text = (rig.transcripts / "cp-1.log").read_text()
    assert f"{step.id} [check]\n$ test -f applied\n-- exit 1 after" in text
    assert f"{step.id} [run, attempt 1]\n$ echo apply >> log; touch applied\n-- exit 0" in text


def test_a_step_whose_check_passes_is_done_in_one_exec_without_running(rig: Rig) -> None:
    calls = counted(rig, "cp-1")
    step = apply_step()
    (rig.dir("cp-1") / "applied").touch()
    rig.engine([entry("cp-1", [step], role="control-plane")]).run()
    assert len(calls) == 1
    assert rig.log("cp-1") == []
    rec = rig.saved().step(step.id)
    assert (rec.status, rec.attempts, rec.started, rec.exit_code) == (
        st.StepStatus.SUCCEEDED,
        0,
        None,
        None,
    )
    assert rec.message == "already done (check passed); command not run"
    kinds = [e.kind for e in rig.events if e.data.get("step") == step.id]
    assert kinds == [ev.STEP_CHECKED, ev.STEP_FINISHED]
    assert "[run" not in (rig.transcripts / "cp-1.log").read_text()


def test_the_joint_exec_splits_any_output_of_check_and_command(rig: Rig) -> None:
    # Output without final newlines, blank lines, the split mark's prefix, and a check that
    # lists the processes (so it sees the wrapper script itself): each lands where it belongs.
    check = "printf 'c-out'; printf '\\n\\nc-err upgrader-split-' >&2; ps -ef >/dev/null; exit 1"
    command = "printf 'upgrader-split-\\n\\nr-out'; printf 'r-err' >&2; echo run >> log"
    step = shell("cp-1", "odd", command, check=check, retry_safe=False)
    rig.engine([entry("cp-1", [step], role="control-plane")]).run()
    text = (rig.transcripts / "cp-1.log").read_text()
    assert "-- stdout:\nc-out\n-- stderr:\n\n\nc-err upgrader-split-\n==" in text
    assert "-- stdout:\nupgrader-split-\n\nr-out\n-- stderr:\nr-err\n" in text
    assert rig.log("cp-1") == ["run"]


def test_a_failed_command_of_the_joint_exec_is_rechecked_before_a_retry(rig: Rig) -> None:
    calls = counted(rig, "cp-1")
    step = shell(
        "cp-1", "flaky", "echo try >> log; exit 4", check="test -f applied", retry_safe=False
    )
    with pytest.raises(StepFailed):
        rig.engine([entry("cp-1", [step], role="control-plane")]).run()
    assert rig.log("cp-1") == ["try"]  # a non-zero exit of a step not safe to repeat
    whys = [e.data["why"] for e in rig.kinds(ev.STEP_CHECKED)]
    assert whys == ["before", "after-failure"]
    assert len(calls) == 2
    rec = rig.saved().step(step.id)
    assert (rec.status, rec.attempts, rec.exit_code) == (st.StepStatus.FAILED, 1, 4)


def test_a_secret_in_the_joint_exec_output_is_masked(rig: Rig) -> None:
    step = shell("cp-1", "s", "echo token-s3cr3t", check="echo token-s3cr3t >&2; false")
    rig.engine([entry("cp-1", [step], role="control-plane")], secrets=("token-s3cr3t",)).run()
    text = (rig.transcripts / "cp-1.log").read_text()
    assert "s3cr3t" not in text
    assert text.count("-- stdout:\n***") == 1 and text.count("-- stderr:\n***") == 1


def test_the_joint_exec_says_step_started_before_the_command_has_run(rig: Rig) -> None:
    step = shell("cp-1", "slow", "sleep 1; echo ran >> log", check="false", retry_safe=False)
    seen: list[tuple[str, list[str]]] = []
    rig.sinks.append(lambda e: seen.append((e.kind, rig.log("cp-1"))) if e.step else None)
    rig.engine([entry("cp-1", [step], role="control-plane")]).run()
    assert (ev.STEP_CHECKED, []) in seen and (ev.STEP_STARTED, []) in seen
    assert seen[-1] == (ev.STEP_FINISHED, ["ran"])
