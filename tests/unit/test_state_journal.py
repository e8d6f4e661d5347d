"""The state as a journal: a running run's transitions are appended to ``<state>.journal``
(one fsynced line each, whatever the run's size) and replayed by ``load()``; compactions
rewrite the whole state at the run's start, its end and past a size. Real files, real
processes: a torn last line is ignored, a corrupt middle line names itself, a crash
between a compaction and the journal's removal loads the compacted state."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from refusal import refusal
from run_kit import one_hop_run
from state_steps import CHILD_PYTHONPATH, S, kill_writer

from upgrader import safefile
from upgrader.errors import ConfigError
from upgrader.state import (
    JOURNAL_KEY,
    RunState,
    RunStatus,
    StateFile,
    StepStatus,
    fail_step,
    finish_step,
    journal_delta,
    journal_path,
    load,
    mark_cordoned,
    mark_uncordoned,
    pause,
    record_drain_fallback,
    record_etcd_snapshot,
    save,
    set_status,
    skip_step,
    start_step,
    sync_steps,
)


def steps_for(nodes: int, per_node: int = 3) -> list[S]:
    return [
        S(f"v1.28.4/n-{n}/worker/s{k}", f"n-{n}", "worker", f"s{k}")
        for n in range(nodes)
        for k in range(per_node)
    ]


def fresh(nodes: int = 4) -> RunState:
    return one_hop_run(
        steps_for(nodes),
        precordoned=["n-3"],
        run_id="run-1",
        now="t0",
        versions_before={"n-0": {"kubelet": "v1.27.9"}},
    )


def journal_lines(p: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in journal_path(p).read_text().splitlines() if x.strip()]


def transitions(s: RunState) -> list[RunState]:
    """Every kind of transition a running run saves, in a plausible order."""
    ids = list(s.steps)
    out = [s]

    def go(new: RunState) -> None:
        out.append(new)

    go(start_step(out[-1], ids[0], now="t1"))
    go(finish_step(out[-1], ids[0], message="ok", now="t2"))
    go(mark_cordoned(out[-1], "n-0", ids[1], now="t3"))
    go(start_step(out[-1], ids[1], now="t4"))
    go(record_drain_fallback(out[-1], ids[1], "n-0", ["default/p-1"], ["default/pdb"], now="t5"))
    go(finish_step(out[-1], ids[1], now="t6"))
    go(record_etcd_snapshot(out[-1], {"node": "n-0", "path": "/x", "sha256": "ab"}, now="t7"))
    go(skip_step(out[-1], ids[2], message="already there", now="t8"))
    go(mark_uncordoned(out[-1], "n-0", now="t9"))
    go(start_step(out[-1], ids[3], now="t10"))
    return out


def saved_transitions(p: Path) -> tuple[StateFile, list[RunState]]:
    """A StateFile at ``p`` that has saved each of :func:`transitions` of :func:`fresh` in
    turn, and those states."""
    sf = StateFile(p)
    states = transitions(fresh())
    for s in states:
        sf.save(s)
    return sf, states


def test_replay_equals_the_full_state_after_every_transition(tmp_path: Path) -> None:
    p = tmp_path / ".upgrader" / "lab.state.json"
    sf = StateFile(p)
    states = transitions(fresh())
    for i, s in enumerate(states):
        sf.save(s)
        assert load(p) == s
        assert sf.load() == s
        if i:  # the first save wrote the whole state; every later one a journal line
            assert len(journal_lines(p)) == i
    # the base file was written once, at the start, and still says so
    base = json.loads(p.read_text())
    assert base["updated"] == "t0" and isinstance(base[JOURNAL_KEY], str)
    lines = journal_lines(p)
    assert [x["seq"] for x in lines] == list(range(1, len(states)))
    assert {x["run_id"] for x in lines} == {"run-1"}
    assert {x["base"] for x in lines} == {base[JOURNAL_KEY]}
    # a line carries only what changed: the step record(s) and the run-level fields
    assert set(lines[0]) == {"run_id", "base", "seq", "steps", "set"}
    assert list(lines[0]["steps"]) == [next(iter(states[0].steps))]  # type: ignore[call-overload]
    assert lines[0]["set"] == {"updated": "t1"}
    assert lines[2] == {
        "run_id": "run-1",
        "base": base[JOURNAL_KEY],
        "seq": 3,
        "set": {"cordoned_by_us": {"n-0": list(states[0].steps)[1]}, "updated": "t3"},
    }


def test_a_line_costs_the_same_at_10_and_at_200_nodes(tmp_path: Path) -> None:
    sizes = []
    for nodes in (10, 200):
        p = tmp_path / str(nodes) / "lab.state.json"
        sf = StateFile(p)
        s = fresh(nodes)
        sf.save(s)
        sid = list(s.steps)[-1]
        sf.save(start_step(s, sid, now="t1"))
        sizes.append(journal_path(p).stat().st_size)
    # the same line but for the longer node name in the step id
    assert abs(sizes[0] - sizes[1]) <= 8 and max(sizes) < 400


def test_a_final_status_compacts_and_removes_the_journal(tmp_path: Path) -> None:
    p = tmp_path / "lab.state.json"
    sf, states = saved_transitions(p)
    assert journal_path(p).exists()
    for status in (RunStatus.FAILED, RunStatus.INTERRUPTED, RunStatus.SUCCEEDED):
        sf.save(start_step(states[-1], list(states[-1].steps)[5], now="t20"))
        assert journal_path(p).exists()
        done = set_status(sf.load() or states[-1], status, now="t21")
        sf.save(done)
        assert not journal_path(p).exists()
        assert load(p) == done
        assert json.loads(p.read_text())["status"] == status.value  # readable without replay
    # pause and fail_step end a run too
    sf.save(start_step(done, list(done.steps)[6], now="t30"))
    paused = pause(sf.load() or done, "canary: n-1 done", now="t31")
    sf.save(paused)
    assert not journal_path(p).exists() and load(p) == paused
    sf.save(start_step(paused, list(paused.steps)[7], now="t32"))
    failed = fail_step(sf.load() or paused, list(paused.steps)[7], message="boom", now="t33")
    sf.save(failed)
    assert not journal_path(p).exists() and load(p) == failed


def test_close_compacts_what_came_after_the_end(tmp_path: Path) -> None:
    """Transitions after a failure (an uncordon) are journal lines; close() at the run's
    end folds them into the state file; a writer with nothing appended leaves it be."""
    p = tmp_path / "lab.state.json"
    sf, states = saved_transitions(p)
    failed = fail_step(states[-1], list(states[-1].steps)[3], message="boom", now="t60")
    sf.save(failed)
    assert not journal_path(p).exists()
    after = mark_cordoned(failed, "n-1", list(failed.steps)[3], now="t61")
    sf.save(after)
    assert len(journal_lines(p)) == 1
    sf.close()
    assert not journal_path(p).exists() and load(p) == after
    before = p.stat().st_mtime_ns
    sf.close()  # nothing new: no rewrite
    StateFile(p).close()  # a writer that saved nothing: no rewrite
    assert p.stat().st_mtime_ns == before


def test_another_run_or_changed_steps_compact(tmp_path: Path) -> None:
    p = tmp_path / "lab.state.json"
    sf = StateFile(p)
    a = fresh()
    sf.save(a)
    sf.save(start_step(a, next(iter(a.steps)), now="t1"))
    assert journal_path(p).exists()
    grown = sync_steps(a, [*steps_for(4), S("extra", "n-9", "worker", "x")], now="t2")
    assert journal_delta(a, grown) is None
    sf.save(grown)
    assert not journal_path(p).exists() and load(p) == grown
    b = one_hop_run(steps_for(2), target="v1.29.0", run_id="run-2", now="t3")
    sf.save(start_step(grown, "extra", now="t4"))
    sf.save(b)
    assert not journal_path(p).exists() and load(p) == b


def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    p = tmp_path / "lab.state.json"
    _, states = saved_transitions(p)
    whole = journal_path(p).read_bytes()
    last = whole.rstrip(b"\n").rsplit(b"\n", 1)[1]
    for torn in (last[: len(last) // 2], last[:1], b"\x00" * 40, last[:-1] + b"\n"):
        journal_path(p).write_bytes(whole[: len(whole) - len(last) - 1] + torn)
        assert load(p) == states[-2]
    journal_path(p).write_bytes(whole + b"\n\n")  # blank lines mean nothing
    assert load(p) == states[-1]


def test_a_corrupt_middle_line_is_one_config_error_naming_the_line(tmp_path: Path) -> None:
    p = tmp_path / "lab.state.json"
    saved_transitions(p)
    lines = journal_path(p).read_bytes().splitlines(keepends=True)
    bad = lines[:]
    bad[1] = bad[1][:20] + b"\n"
    journal_path(p).write_bytes(b"".join(bad))
    msg = refusal(load, p)
    assert f"{journal_path(p)}: line 2:" in msg and "corrupt" in msg
    # a line that parses but does not follow: a gap in the sequence, another run, a step
    # the run does not have, a field no transition sets
    for i, edit in enumerate(
        (
            lambda d: d.update(seq=9),
            lambda d: d.update(run_id="other"),
            lambda d: d.update(steps={"nope": {}}),
            lambda d: d.update(set={"run_id": "x"}),
            lambda d: d.update(set=[1]),
        )
    ):
        doc = json.loads(lines[2])
        edit(doc)
        changed = [*lines[:2], json.dumps(doc).encode() + b"\n", *lines[3:]]
        journal_path(p).write_bytes(b"".join(changed))
        with pytest.raises(ConfigError, match=r": line 3: journal line") as ei:
            load(p)
        assert "\n" not in str(ei.value), i
    # a value of the wrong type is named by the state's own checks, pointing at the journal
    doc = json.loads(lines[2])
    doc["set"] = {"status": "exploded"}
    journal_path(p).write_bytes(b"".join([*lines[:2], json.dumps(doc).encode() + b"\n"]))
    with pytest.raises(ConfigError, match=r"\(\+ journal\): status: 'exploded'"):
        load(p)


def test_compaction_past_the_limit_then_more_appends(tmp_path: Path) -> None:
    p = tmp_path / "lab.state.json"
    sf = StateFile(p, journal_limit=1500)
    s = fresh(20)
    sf.save(s)
    bases = {json.loads(p.read_text())[JOURNAL_KEY]}
    for i, sid in enumerate(list(s.steps)[:40]):
        s = start_step(s, sid, now=f"a{i}")
        sf.save(s)
        s = finish_step(s, sid, message=f"step {i}", now=f"b{i}")
        sf.save(s)
        assert load(p) == s
        assert (journal_path(p).stat().st_size if journal_path(p).exists() else 0) <= 1500 + 400
        bases.add(json.loads(p.read_text())[JOURNAL_KEY])
    assert len(bases) > 5  # it compacted several times, and went on appending after each
    assert journal_lines(p)
    assert sum(1 for r in s.steps.values() if r.status == StepStatus.SUCCEEDED) == 40


def test_a_crash_between_compaction_and_journal_removal_loads_the_compacted_state(
    tmp_path: Path,
) -> None:
    p = tmp_path / "lab.state.json"
    _, states = saved_transitions(p)
    old_journal = journal_path(p).read_bytes()
    # the compaction's two writes in their order, the second one lost: the new state file
    # (with a new base) is in place, the journal it folded in is still there
    ahead = start_step(states[-1], list(states[-1].steps)[4], now="t40")
    save(p, ahead)
    assert not journal_path(p).exists()
    journal_path(p).write_bytes(old_journal)
    journal_path(p).chmod(0o600)
    assert load(p) == ahead
    # the lines of the old base are ignored even when they say something else
    assert journal_lines(p)[-1]["set"] != {}
    # and a new writer (the next run's start) compacts again, dropping the stale lines
    sf2 = StateFile(p)
    nxt = finish_step(ahead, list(ahead.steps)[4], now="t41")
    sf2.save(nxt)
    assert not journal_path(p).exists() and load(p) == nxt
    sf2.save(start_step(nxt, list(nxt.steps)[5], now="t42"))
    assert len(journal_lines(p)) == 1


def test_files_are_0600_in_a_private_dir_and_a_symlinked_journal_is_refused(
    tmp_path: Path,
) -> None:
    d = tmp_path / ".upgrader"
    p = d / "lab.state.json"
    sf, states = saved_transitions(p)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert stat.S_IMODE(journal_path(p).stat().st_mode) == 0o600
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    journal_path(p).chmod(0o666)
    with pytest.raises(ConfigError, match="writable by group or others"):
        load(p)
    journal_path(p).chmod(0o600)
    victim = tmp_path / "victim"
    victim.write_text("{}\n")
    journal_path(p).unlink()
    journal_path(p).symlink_to(victim)
    with pytest.raises(ConfigError, match="symbolic link"):
        load(p)
    with pytest.raises(ConfigError, match="symbolic link"):
        sf.save(start_step(states[-1], list(states[-1].steps)[6], now="t50"))
    assert victim.read_text() == "{}\n"
    assert not safefile.inside(victim, d)


def test_no_secret_reaches_the_journal(tmp_path: Path) -> None:
    p = tmp_path / "lab.state.json"
    sf = StateFile(p)
    s = fresh()
    sf.save(s)
    sid = next(iter(s.steps))
    s = start_step(s, sid, now="t1")
    sf.save(s)
    secret = "hunter2-token-abc"
    s = fail_step(
        s,
        sid,
        message=f"failed with {secret}",
        stderr=f"line\nAuthorization: Bearer {secret}\n",
        secrets=[secret],
        now="t2",
    )
    sf.save(start_step(s, list(s.steps)[1], now="t3"))  # keep the journal
    for f in (p, journal_path(p)):
        assert secret not in f.read_text()


_WRITER = textwrap.dedent(
    """
    import sys
    from state_steps import numbered_steps
    from upgrader.state import StateFile, new_run, start_step, finish_step

    sf = StateFile(sys.argv[1], journal_limit=int(sys.argv[2]))
    steps = numbered_steps()
    st = new_run(cluster="lab", inventory="inv.yaml", fingerprint="x", target="v1.28.4",
                 hops=["v1.28.4"], strategy="per-hop", steps=steps)
    sf.save(st)
    i = 0
    while True:
        sid = steps[i % len(steps)].id
        st = start_step(st, sid, now=f"s{i}")
        sf.save(st)
        st = finish_step(st, sid, message=f"iteration {i} " + "x" * 200, now=f"f{i}")
        sf.save(st)
        if i == 0:
            sys.stdout.write("ready\\n")
            sys.stdout.flush()
        i += 1
    """
)


@pytest.mark.parametrize("limit", [4 * 1024 * 1024, 3000])
def test_sigkill_at_any_moment_leaves_a_loadable_state(tmp_path: Path, limit: int) -> None:
    """A child saves through a StateFile in a tight loop (journal lines, and with a small
    limit frequent compactions); we SIGKILL it at random moments. Every time, the state
    loads, is complete, and never goes back: what one load saw, the next one still sees."""
    p = tmp_path / ".upgrader" / "lab.state.json"
    rng = random.Random(4321)
    for _ in range(15):
        kill_writer(_WRITER, [str(p), str(limit)], rng.uniform(0, 0.05))
        s = load(p)
        assert s is not None
        assert len(s.steps) == 400
        assert sum(1 for r in s.steps.values() if r.status == StepStatus.SUCCEEDED) >= 1
        # the state is one the child acknowledged: a step running or done, never half
        running = [r for r in s.steps.values() if r.status == StepStatus.RUNNING]
        assert len(running) <= 1
        assert stat.S_IMODE(p.stat().st_mode) == 0o600


_ENGINE_CHILD = textwrap.dedent(
    """
    import sys
    from upgrader import state as st
    from upgrader.core.model import PlanEntry, Step
    from upgrader.execute.engine import Engine, EngineOptions
    from upgrader.transport.local import LocalTransport

    root, state_path = sys.argv[1], sys.argv[2]

    def step(name, command):
        return Step(id=f"v1.28.4/w-1/worker/{name}", kind="shell", node="w-1",
                    hop="v1.28.4", phase="worker", name=name, description=name,
                    command=command, check="test -e " + name + ".done", timeout=60.0)

    steps = [step(f"s{i}", f"touch s{i}.done") for i in range(5)]
    steps.insert(3, step("hang", "touch hanging; sleep 3; touch hang.done"))
    entries = [PlanEntry(node="w-1", role="worker", phase="worker", hop="v1.28.4",
                         steps=tuple(steps))]
    sf = st.StateFile(state_path)
    s = st.load(state_path) or st.new_run(
        cluster="lab", inventory=root + "/inventory.yaml", fingerprint="fp",
        target="v1.28.4", hops=["v1.28.4"], strategy="per-hop",
        steps=[x for e in entries for x in e.steps], run_id="run-1",
    )
    sf.save(s)
    final = Engine(entries, s, save=sf.save,
                   transports=lambda n: LocalTransport(n, cwd=root + "/w-1"),
                   kube=None, options=EngineOptions(lock_path="node.lock")).run()
    print(final.status.value)
    """
)


def test_an_engine_killed_mid_step_leaves_a_journal_a_resume_reads(tmp_path: Path) -> None:
    """A real engine saving through a StateFile is SIGKILLed inside a step's command: the
    state file still holds the run's start, the journal the steps since; load() (what a
    resume reads) sees them, the killed step ``running``. The resumed run ends
    ``succeeded`` with the journal compacted away."""
    p = tmp_path / ".upgrader" / "lab.state.json"
    (tmp_path / "w-1").mkdir()
    script = tmp_path / "child.py"
    script.write_text(_ENGINE_CHILD)
    env = dict(os.environ, PYTHONPATH=CHILD_PYTHONPATH)
    child = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path), str(p)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "w-1" / "hanging").exists():
            assert child.poll() is None, child.stderr.read() if child.stderr else b""
            assert time.monotonic() < deadline, "the hanging step never started"
            time.sleep(0.02)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    base = json.loads(p.read_text())
    assert {r["status"] for r in base["steps"].values()} == {"pending"}  # the run's start
    assert len(journal_lines(p)) == 7  # s0, s1, s2 started and finished, hang started
    s = load(p)
    assert s is not None and s.status == RunStatus.RUNNING
    assert [r.status.value for r in s.steps.values()] == [
        "succeeded",
        "succeeded",
        "succeeded",
        "running",
        "pending",
        "pending",
    ]
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(p)],
        capture_output=True,
        env=dict(env, PATH=os.environ["PATH"]),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "succeeded"
    assert not journal_path(p).exists()
    final = load(p)
    assert final is not None and final.status == RunStatus.SUCCEEDED
    # the killed step was re-checked: its check waited for the orphaned command (node lock)
    # and found its effect, so it was not run again
    hang = final.step("v1.28.4/w-1/worker/hang")
    assert hang.attempts == 1 and "already done" in (hang.message or "")
    assert json.loads(p.read_text())["status"] == "succeeded"
