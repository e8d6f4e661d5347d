"""--canary, --pause-between and --hold-uncordon: the stop decision (pure), the engine's
pause and continuation on real local "nodes" (see test_engine's Rig), the state's
paused -> running -> succeeded transitions, the hooks' questions and their refusal
without a terminal."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_engine import HOP, MemKube, MemNode, Rig, entry, shell, worker_visit

from upgrader import state as st
from upgrader.core.model import PlanEntry
from upgrader.errors import ConfigError
from upgrader.execute import events as ev
from upgrader.execute.engine import canary_stop
from upgrader.execute.pauses import (
    PauseBetween,
    before_batch_hook,
    before_uncordon_hook,
    parse_pause_between,
    refuse_without_tty,
    uncordon_text,
)
from upgrader.stops import pause_text


def cp(node: str = "cp-1") -> PlanEntry:
    phase = "first-control-plane"
    return entry(node, [shell(node, "a", "echo cp >> log", phase=phase)], "control-plane", phase)


def plan() -> list[PlanEntry]:
    return [cp(), worker_visit("w-1"), worker_visit("w-2"), worker_visit("w-3")]


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path, MemKube({n: MemNode() for n in ("cp-1", "w-1", "w-2", "w-3")}))


# --------------------------------------------------------------------------- the decision


def test_canary_stops_after_the_control_plane_and_the_first_n_workers() -> None:
    entries = plan()
    assert canary_stop(entries, 1) == (2, "canary: w-1 done")
    assert canary_stop(entries, 2) == (3, "canary: w-1, w-2 done")
    # the canary is the whole plan, or no canary asked: nothing to pause for
    assert canary_stop(entries, 3) is None
    assert canary_stop(entries, 5) is None
    assert canary_stop(entries, None) is None
    assert canary_stop([cp()], 1) is None


def test_canary_counts_the_workers_of_the_first_worker_phase_only() -> None:
    prestage = [
        entry(n, [shell(n, "pull", "true", phase="prestage")], phase="prestage")
        for n in ("cp-1", "w-1", "w-2")
    ]
    later = entry("w-1", [shell("w-1", "b", "true", phase="worker2")], phase="worker2")
    entries = [*prestage, cp(), worker_visit("w-1"), worker_visit("w-2"), later]
    assert canary_stop(entries, 1) == (5, "canary: w-1 done")


# --------------------------------------------------------------------------- the engine


def test_canary_run_pauses_then_the_same_command_finishes(rig: Rig) -> None:
    entries = plan()
    paused = rig.engine(entries, canary=1).run()

    assert paused.status == st.RunStatus.PAUSED
    assert paused.paused == "canary: w-1 done"
    assert rig.saved().status == st.RunStatus.PAUSED
    assert rig.log("cp-1") == ["cp"] and rig.log("w-1") == ["kubeadm", "kubelet"]
    assert rig.log("w-2") == [] and rig.log("w-3") == []
    assert {n for _, n in rig.kube.calls} == {"w-1"}
    assert not rig.kube.nodes["w-1"].unschedulable
    assert rig.kinds(ev.RUN_PAUSED)[-1].data["reason"] == "canary: w-1 done"
    assert not rig.kinds(ev.RUN_FINISHED)

    # the same command (still --canary 1) goes on: paused -> running -> succeeded
    seen: list[st.RunStatus] = []
    eng = rig.engine(entries, canary=1)
    orig = eng._save
    eng._save = lambda s: (seen.append(s.status), orig(s))[1]  # type: ignore[method-assign]
    final = eng.run()
    assert final.status == st.RunStatus.SUCCEEDED
    assert seen[0] == st.RunStatus.RUNNING and seen[-1] == st.RunStatus.SUCCEEDED
    assert rig.log("w-1") == ["kubeadm", "kubelet"]  # not run again
    assert rig.log("w-2") == ["kubeadm", "kubelet"] and rig.log("w-3") == ["kubeadm", "kubelet"]
    assert len(rig.kinds(ev.RUN_PAUSED)) == 1


def test_canary_does_not_pause_a_run_already_past_it(rig: Rig) -> None:
    entries = plan()
    s = rig.new_state(entries)
    w2 = entries[2].steps[0].id
    s = st.fail_step(st.start_step(s, w2), w2, message="boom")
    st.save(rig.state_path, s)
    final = rig.engine(entries, s, canary=1).run()
    assert final.status == st.RunStatus.SUCCEEDED
    assert not rig.kinds(ev.RUN_PAUSED)


def test_state_round_trips_the_pause_reason(rig: Rig) -> None:
    s = st.pause(rig.new_state(plan()), "canary: w-1 done")
    st.save(rig.state_path, s)
    back = rig.saved()
    assert back.status == st.RunStatus.PAUSED and back.paused == "canary: w-1 done"
    assert st.canary_passed(back) and not back.finished
    # a paused run resumes with the same inputs, without --accept-changes
    assert st.check_compatible(back, "fp", HOP).resume


def test_pause_text_names_the_canary_and_the_command_that_continues(rig: Rig) -> None:
    s = st.pause(rig.new_state(plan()), "canary: w-1 done")
    text = pause_text(s, Path("inv dir/inventory.yaml"), HOP)
    assert (
        f"paused after canary w-1: inspect it, then continue with: upgrader apply -i "
        f"'inv dir/inventory.yaml' --to {HOP}" in text
    )


# --------------------------------------------------------------------------- the hooks


def test_pause_between_parses_ask_or_seconds_and_refuses_the_rest() -> None:
    assert parse_pause_between("ask") == PauseBetween(ask=True)
    assert parse_pause_between("30") == PauseBetween(seconds=30.0)
    assert parse_pause_between(None) is None
    for bad in ("soon", "-1", "nan", "1e9"):
        with pytest.raises(ConfigError, match="--pause-between"):
            parse_pause_between(bad)


def test_questions_need_a_terminal() -> None:
    with pytest.raises(ConfigError, match=r"--hold-uncordon .*needs a terminal"):
        refuse_without_tty(None, True, tty=False)
    with pytest.raises(ConfigError, match="--pause-between ask needs a terminal"):
        refuse_without_tty(PauseBetween(ask=True), False, tty=False)
    refuse_without_tty(PauseBetween(seconds=5), False, tty=False)  # waiting needs no one
    refuse_without_tty(PauseBetween(ask=True), True, tty=True)


def test_pause_between_waits_before_each_node_after_the_first(rig: Rig) -> None:
    waits: list[float] = []
    shown: list[str] = []
    hook = before_batch_hook(
        None, PauseBetween(seconds=7), confirm=None, show=shown.append, sleep=waits.append
    )
    eng = rig.engine(plan())
    eng._before_batch = hook
    assert eng.run().status == st.RunStatus.SUCCEEDED
    assert waits == [7, 7, 7]  # before w-1, w-2, w-3; not before the first node (cp-1)
    assert "pausing 7s before w-2 (--pause-between)" in shown[1]


def test_no_gate_or_pause_before_the_prestage_batch_the_gate_before_every_node_after(
    rig: Rig,
) -> None:
    """Pre-staging only downloads, right after preflight read the same health: the gate
    (and the pause) start with the first node that changes."""
    prestage = [
        entry(n, [shell(n, "pull", "true", phase="prestage")], phase="prestage")
        for n in ("cp-1", "w-1", "w-2", "w-3")
    ]
    gated: list[list[str]] = []
    waits: list[float] = []
    eng = rig.engine([*prestage, *plan()], max_unavailable=4)
    eng._before_batch = before_batch_hook(
        lambda batch: gated.append([e.node for e in batch]),
        PauseBetween(seconds=3),
        confirm=None,
        show=lambda _: None,
        sleep=waits.append,
    )
    assert eng.run().status == st.RunStatus.SUCCEEDED
    assert all(rig.log(n) for n in ("cp-1", "w-1", "w-2", "w-3"))
    assert gated == [["cp-1"], ["w-1", "w-2", "w-3"]]
    assert waits == [3]  # before the workers' batch, not before cp-1 nor the downloads
    assert before_batch_hook(None, None, confirm=None, show=lambda _: None) is None


def test_pause_between_ask_no_pauses_the_run_before_that_node(rig: Rig) -> None:
    asked: list[str] = []

    def confirm(q: str) -> bool:
        asked.append(q)
        return "w-1" in q

    eng = rig.engine(plan())
    eng._before_batch = before_batch_hook(
        None, PauseBetween(ask=True), confirm=confirm, show=lambda _: None
    )
    s = eng.run()
    assert (
        s.status == st.RunStatus.PAUSED and s.paused == "stopped before w-2 (--pause-between ask)"
    )
    assert asked[0].startswith("Upgrade w-1 next?")
    assert rig.log("w-1") and not rig.log("w-2")


def test_hold_uncordon_shows_pods_and_events_and_a_no_leaves_the_node_cordoned(
    rig: Rig,
) -> None:
    shown: list[str] = []
    questions: list[str] = []
    pods = [("default/web-1", "Running", "ready")]
    events = [("2026-12-05T10:00:00Z", "Normal", "NodeReady", "Node w-1 status is now: Ready")]

    def confirm(q: str) -> bool:
        questions.append(q)
        return False

    eng = rig.engine(plan())
    eng._before_uncordon = before_uncordon_hook(
        lambda node: (pods, events), confirm=confirm, show=shown.append
    )
    s = eng.run()
    assert s.status == st.RunStatus.PAUSED and s.paused == "w-1 left cordoned (--hold-uncordon)"
    assert rig.kube.nodes["w-1"].unschedulable and ("uncordon", "w-1") not in rig.kube.calls
    assert shown[0] == uncordon_text("w-1", pods, events)
    assert "default/web-1  Running  ready" in shown[0] and "NodeReady" in shown[0]
    assert questions == [
        "Uncordon w-1? (no: the run pauses with w-1 cordoned; the same command continues)"
    ]
    # the same command continues from the uncordon
    assert rig.engine(plan()).run().status == st.RunStatus.SUCCEEDED
    assert not rig.kube.nodes["w-1"].unschedulable


def test_uncordon_text_without_pods_or_events() -> None:
    text = uncordon_text("w-9", [], [])
    assert text.count("(none)") == 2 and text.startswith("w-9 is upgraded and still cordoned")


def test_canary_is_alone_even_when_workers_go_in_batches(rig: Rig) -> None:
    entries = plan()
    s = rig.engine(entries, canary=1, max_unavailable=3).run()
    assert s.status == st.RunStatus.PAUSED
    assert rig.log("w-1") and not rig.log("w-2") and not rig.log("w-3")
    assert rig.engine(entries, max_unavailable=3).run().status == st.RunStatus.SUCCEEDED
    assert rig.log("w-3") == ["kubeadm", "kubelet"]
