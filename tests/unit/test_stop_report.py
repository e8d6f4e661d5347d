"""``apply.stop_report``: the last lines of every stopped or refused run say where it stopped,
which nodes are cordoned and by whom, and the command that runs it again (the goldens of the
real stops are in tests/golden/stop-*.txt, written by the integration tests)."""

from __future__ import annotations

from pathlib import Path

from run_kit import one_hop_run

from upgrader import state as st
from upgrader.core.model import Step
from upgrader.stops import stop_report

HOP = "v1.28.4"
INV = Path("/srv/my cluster/inventory.yaml")  # a space: the command must stay one argument


def _step(node: str, name: str) -> Step:
    return Step(f"{HOP}/{node}/worker/{name}", "shell", node, HOP, "worker", name, name)


def _run() -> st.RunState:
    steps = [_step(n, x) for n in ("w-1", "w-2") for x in ("drain", "kubelet", "uncordon")]
    s = one_hop_run(steps, inventory=INV, precordoned=["w-9"], run_id="r1")
    s = st.start_step(s, f"{HOP}/w-1/worker/drain")
    s = st.mark_cordoned(s, "w-1", f"{HOP}/w-1/worker/drain")
    return st.finish_step(s, f"{HOP}/w-1/worker/drain")


def test_stopped_between_steps_names_the_next_one_and_both_kinds_of_cordon() -> None:
    assert stop_report(_run(), INV, HOP).splitlines() == [
        f"stopped at: before step {HOP}/w-1/worker/kubelet on w-1 (not started)",
        "cordoned by this run: w-1; cordoned before it (left so): w-9",
        f"resume with: upgrader apply -i '{INV}' --to {HOP} "
        f"(see `upgrader status -i '{INV}'` and the transcripts)",
    ]


def test_a_failed_step_comes_before_the_next_pending_one() -> None:
    s = st.start_step(_run(), f"{HOP}/w-1/worker/kubelet")
    s = st.fail_step(s, f"{HOP}/w-1/worker/kubelet", message="boom")
    first = stop_report(s, INV, HOP).splitlines()[0]
    assert first == f"stopped at: step {HOP}/w-1/worker/kubelet on w-1 failed"


def test_a_refused_run_says_nothing_changed_and_what_to_do_first() -> None:
    lead = "fix the blockers above, then re-run:"
    assert stop_report(None, INV, HOP, lead=lead).splitlines() == [
        "stopped at: before the first step; nothing was changed on any node",
        "cordoned by this run: none",
        f"fix the blockers above, then re-run: upgrader apply -i '{INV}' --to {HOP}",
    ]
