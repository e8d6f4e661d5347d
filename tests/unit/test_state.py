"""The state file: atomic writes that survive SIGKILL, 0600, one-line errors on bad files,
the local lock, immutable transitions and the pure resume / compatibility / status logic."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from refusal import refusal
from state_steps import CHILD_PYTHONPATH, S, kill_writer

from upgrader.errors import ConfigError, LockHeld
from upgrader.state import (
    SCHEMA,
    ResumeAction,
    RunState,
    RunStatus,
    StateFile,
    StateLock,
    StepStatus,
    check_compatible,
    default_state_path,
    default_transcripts_dir,
    fail_step,
    finish_step,
    load,
    mark_cordoned,
    mark_uncordoned,
    mask,
    new_run,
    resume_point,
    save,
    set_status,
    skip_step,
    start_step,
    status_summary,
    sync_steps,
)

STEPS = [
    S("v1.28.4/cp-1/first-control-plane/kubeadm-pkg", "cp-1", "first-control-plane", "kubeadm-pkg"),
    S("v1.28.4/cp-1/first-control-plane/upgrade-apply", "cp-1", "first-control-plane", "apply"),
    S("v1.28.4/w-1/worker/kubeadm-pkg", "w-1", "worker", "kubeadm-pkg"),
    S("v1.28.4/w-1/worker/drain", "w-1", "worker", "drain"),
    S("v1.28.4/w-2/worker/kubeadm-pkg", "w-2", "worker", "kubeadm-pkg"),
]
IDS = [s.id for s in STEPS]


def make_state(**kw: object) -> RunState:
    args: dict[str, object] = {
        "cluster": "lab",
        "inventory": "inventory.yaml",
        "fingerprint": "f" * 64,
        "target": "v1.28.4",
        "hops": ["v1.28.4"],
        "strategy": "per-hop",
        "steps": STEPS,
        "precordoned": ["w-3"],
        "run_id": "11111111-2222-3333-4444-555555555555",
        "now": "2024-05-01T10:00:00.000+00:00",
    }
    args.update(kw)
    return new_run(**args)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- file format


def test_roundtrip_keeps_every_field(tmp_path: Path) -> None:
    before = {"cp-1": {"kubelet": "v1.27.8", "kubeadm": "v1.27.8", "control_plane": None}}
    st = make_state(transcripts=str(tmp_path / "t"), versions_before=before)
    assert st.to_dict()["versions_before"] == before
    st = start_step(st, IDS[0], now="t1")
    st = finish_step(st, IDS[0], message="ok", now="t2")
    st = start_step(st, IDS[1], now="t3")
    st = fail_step(st, IDS[1], message="boom", exit_code=3, stderr="a\nb\n", now="t4")
    st = mark_cordoned(st, "w-1", IDS[3], now="t5")
    p = tmp_path / "s.json"
    save(p, st)
    back = load(p)
    assert back == st
    assert list(back.steps) == IDS  # order kept
    doc = json.loads(p.read_text())
    assert doc["schema"] == SCHEMA
    assert doc["status"] == "failed"
    assert doc["precordoned"] == ["w-3"]
    assert doc["cordoned_by_us"] == {"w-1": IDS[3]}
    assert doc["steps"][IDS[1]]["exit_code"] == 3
    assert doc["steps"][IDS[1]]["stderr_tail"] == "a\nb"
    assert set(doc) >= {
        "run_id",
        "cluster",
        "inventory",
        "fingerprint",
        "target",
        "hops",
        "strategy",
        "created",
        "updated",
        "status",
        "steps",
        "transcripts",
    }


def test_save_is_0600_and_leaves_no_temp_files(tmp_path: Path) -> None:
    p = tmp_path / ".upgrader" / "lab.state.json"
    save(p, make_state())
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert stat.S_IMODE(p.parent.stat().st_mode) & 0o077 == 0
    assert sorted(x.name for x in p.parent.iterdir()) == ["lab.state.json"]


def test_save_over_a_world_readable_file_makes_it_0600(tmp_path: Path) -> None:
    p = tmp_path / "s.json"
    p.write_text("{}")
    p.chmod(0o644)
    save(p, make_state())
    assert stat.S_IMODE(p.stat().st_mode) == 0o600


def test_load_missing_file_is_none(tmp_path: Path) -> None:
    assert load(tmp_path / "nope.json") is None
    assert StateFile(tmp_path / "nope.json").load() is None


def _valid_bytes() -> bytes:
    return json.dumps(make_state().to_dict(), indent=1).encode()


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (None, "truncated or corrupt"),  # first half of a valid file
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"[1, 2]", "not a state file"),
        (b'{"schema": 99}', "schema 99 is not supported"),
        (b'{"steps": {}}', "schema None is not supported"),
    ],
)
def test_bad_file_is_one_line_config_error_naming_the_path(
    tmp_path: Path, content: bytes | None, needle: str
) -> None:
    p = tmp_path / "lab.state.json"
    p.write_bytes(_valid_bytes()[: len(_valid_bytes()) // 2] if content is None else content)
    msg = refusal(load, p)
    assert str(p) in msg
    assert needle in msg


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d.pop("run_id"), "run_id: missing"),
        (lambda d: d.update(status="exploded"), "status: 'exploded' is not one of"),
        (lambda d: d["steps"][IDS[0]].update(status="weird"), f"steps.{IDS[0]}.status"),
        (lambda d: d["steps"][IDS[0]].update(attempts="2"), f"steps.{IDS[0]}.attempts"),
        (lambda d: d["steps"][IDS[0]].pop("node"), f"steps.{IDS[0]}.node: missing"),
        (lambda d: d.update(precordoned="w-1"), "precordoned"),
        (lambda d: d.update(cordoned_by_us={"w-1": 5}), "cordoned_by_us.w-1"),
    ],
)
def test_wrong_fields_name_the_field(tmp_path: Path, mutate: object, needle: str) -> None:
    d = make_state().to_dict()
    mutate(d)  # type: ignore[operator]
    p = tmp_path / "s.json"
    p.write_text(json.dumps(d))
    with pytest.raises(ConfigError) as ei:
        load(p)
    assert needle in str(ei.value)
    assert str(p) in str(ei.value)
    assert "\n" not in str(ei.value)


_WRITER = textwrap.dedent(
    """
    import sys
    from state_steps import numbered_steps
    from upgrader.state import new_run, save, start_step, finish_step

    path = sys.argv[1]
    steps = numbered_steps()
    st = new_run(cluster="lab", inventory="inv.yaml", fingerprint="x", target="v1.28.4",
                 hops=["v1.28.4"], strategy="per-hop", steps=steps)
    i = 0
    while True:
        sid = steps[i % len(steps)].id
        st = start_step(st, sid)
        st = finish_step(st, sid, message=f"iteration {i} " + "x" * 200)
        save(path, st)
        if i == 0:
            sys.stdout.write("ready\\n")
            sys.stdout.flush()
        i += 1
    """
)


def test_sigkill_at_any_moment_leaves_a_loadable_file(tmp_path: Path) -> None:
    """A child saves in a tight loop; we SIGKILL it at random moments, many times. Every
    time, the file must load and be a complete state (never torn)."""
    p = tmp_path / ".upgrader" / "lab.state.json"
    rng = random.Random(1234)
    for _ in range(40):
        kill_writer(_WRITER, [str(p)], rng.uniform(0, 0.03))
        st = load(p)
        assert st is not None
        assert len(st.steps) == 400
        done = sum(1 for r in st.steps.values() if r.status == StepStatus.SUCCEEDED)
        assert done >= 1
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    # the lock cleans the temp files that killed writers left behind
    sf = StateFile(p)
    with sf.lock():
        assert list(p.parent.glob(".lab.state.json.*.tmp")) == []
    assert load(p) is not None


# --------------------------------------------------------------------------- lock


def test_lock_is_exclusive_and_names_the_holder(tmp_path: Path) -> None:
    sf = StateFile(tmp_path / "lab.state.json")
    with sf.lock(run_id="run-a"):
        with pytest.raises(LockHeld) as ei:
            sf.lock().acquire()
        msg = str(ei.value)
        assert f"pid {os.getpid()}" in msg
        assert "run run-a" in msg
        assert str(sf.lock_path) in msg
        assert "\n" not in msg
        assert stat.S_IMODE(sf.lock_path.stat().st_mode) == 0o600
    # released: can take it again
    lk = sf.lock()
    lk.acquire()
    assert lk.held
    lk.release()
    assert not lk.held


def test_lock_held_by_another_process_then_freed_by_its_death(tmp_path: Path) -> None:
    lock_path = tmp_path / "lab.state.json.lock"
    script = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        from upgrader.state import StateLock
        lk = StateLock(Path(sys.argv[1]), run_id="child-run").acquire()
        print("locked", flush=True)
        time.sleep(600)
        """
    )
    env = dict(os.environ, PYTHONPATH=CHILD_PYTHONPATH)
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(lock_path)], stdout=subprocess.PIPE, env=env
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"locked\n"
        with pytest.raises(LockHeld) as ei:
            StateLock(lock_path).acquire()
        assert f"pid {child.pid}" in str(ei.value)
        assert "child-run" in str(ei.value)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with StateLock(lock_path, run_id="mine") as lk:
        assert lk.held
        info = json.loads(lock_path.read_text())
        assert info["pid"] == os.getpid()
        assert info["run_id"] == "mine"


def test_lock_with_unreadable_holder_details_still_refuses(tmp_path: Path) -> None:
    lock_path = tmp_path / "x.lock"
    with StateLock(lock_path):
        lock_path.write_text("")  # holder info gone (e.g. torn write)
        with pytest.raises(LockHeld, match="holder details unavailable"):
            StateLock(lock_path).acquire()


# --------------------------------------------------------------------------- transitions


def test_new_run_is_all_pending_and_running() -> None:
    st = make_state()
    assert st.status == RunStatus.RUNNING
    assert all(r.status == StepStatus.PENDING and r.attempts == 0 for r in st.steps.values())
    assert st.nodes == ("cp-1", "w-1", "w-2")
    assert st.precordoned == frozenset({"w-3"})
    with pytest.raises(ValueError, match="duplicate"):
        make_state(steps=[STEPS[0], STEPS[0]])


def test_transitions_return_new_values_and_leave_the_old_alone() -> None:
    st0 = make_state()
    st1 = start_step(st0, IDS[0], now="t1")
    assert st0.step(IDS[0]).status == StepStatus.PENDING
    r = st1.step(IDS[0])
    assert (r.status, r.attempts, r.started, r.stopped) == (StepStatus.RUNNING, 1, "t1", None)
    assert st1.updated == "t1"
    st2 = fail_step(st1, IDS[0], message="apt failed", exit_code=100, now="t2")
    assert st2.status == RunStatus.FAILED
    assert st2.step(IDS[0]).exit_code == 100
    st3 = start_step(st2, IDS[0], now="t3")
    r = st3.step(IDS[0])
    assert (r.status, r.attempts, r.message, r.exit_code) == (StepStatus.RUNNING, 2, None, None)
    assert st3.status == RunStatus.RUNNING
    st4 = finish_step(st3, IDS[0], now="t4")
    assert st4.step(IDS[0]).status == StepStatus.SUCCEEDED
    assert st4.step(IDS[0]).stopped == "t4"
    st5 = skip_step(st4, IDS[1], message="already at v1.28.4", now="t5")
    assert st5.step(IDS[1]).status == StepStatus.SKIPPED
    assert st5.step(IDS[1]).attempts == 0
    assert set_status(st5, RunStatus.SUCCEEDED).finished
    with pytest.raises(KeyError, match="no/such/step"):
        start_step(st0, "no/such/step")
    with pytest.raises(TypeError):
        st0.steps["x"] = st0.step(IDS[0])  # type: ignore[index]


def test_fail_step_keeps_last_20_lines_masked(tmp_path: Path) -> None:
    secret = "s3cr3t-sudo-pass"
    stderr = "\n".join(f"line {i}" for i in range(50)) + f"\nsudo said {secret}\n"
    st = start_step(make_state(), IDS[0])
    st = fail_step(st, IDS[0], message=f"exit 1 with {secret}", stderr=stderr, secrets=[secret, ""])
    rec = st.step(IDS[0])
    assert rec.stderr_tail is not None
    lines = rec.stderr_tail.splitlines()
    assert len(lines) == 20
    assert lines[0] == "line 31"
    assert lines[-1] == "sudo said ***"
    assert rec.message == "exit 1 with ***"
    p = tmp_path / "s.json"
    save(p, st)
    assert secret not in p.read_text()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def", "Authorization: Bearer ***"),
        ("kubeadm join x --token abcdef.0123456789abcdef --x", "kubeadm join x --token *** --x"),
        ("--certificate-key=deadbeef", "--certificate-key=***"),
        ("password: hunter2", "password: ***"),
        ("nothing here", "nothing here"),
    ],
)
def test_mask_patterns(text: str, expected: str) -> None:
    assert mask(text) == expected


def test_mask_longest_secret_first() -> None:
    assert mask("abc abcdef", ["abc", "abcdef"]) == "*** ***"


def test_cordon_provenance() -> None:
    st = mark_cordoned(make_state(), "w-1", IDS[3])
    assert st.cordoned_by_us == {"w-1": IDS[3]}
    st2 = mark_uncordoned(st, "w-1")
    assert st2.cordoned_by_us == {}
    assert mark_uncordoned(st2, "w-1") is st2  # nothing to do


def test_sync_steps_adds_new_plan_steps_and_keeps_records() -> None:
    st = finish_step(start_step(make_state(steps=STEPS[:2]), IDS[0]), IDS[0])
    st2 = sync_steps(st, STEPS)
    assert list(st2.steps) == IDS
    assert st2.step(IDS[0]).status == StepStatus.SUCCEEDED
    assert st2.step(IDS[4]).status == StepStatus.PENDING
    assert sync_steps(st2, STEPS) is st2


# --------------------------------------------------------------------------- resume logic


def test_resume_point() -> None:
    st = make_state()
    st = finish_step(start_step(st, IDS[0]), IDS[0])
    st = skip_step(st, IDS[1])
    st = start_step(st, IDS[2])  # died while running
    st = fail_step(start_step(st, IDS[3]), IDS[3], message="x")
    rp = resume_point(st, [*IDS, "v1.28.4/w-3/worker/new"])
    assert rp.ids(ResumeAction.SKIP) == (IDS[0], IDS[1])
    assert rp.ids(ResumeAction.RECHECK) == (IDS[2], IDS[3])
    assert rp.ids(ResumeAction.RUN) == (IDS[4], "v1.28.4/w-3/worker/new")
    assert rp.first == IDS[2]
    assert not rp.done
    assert list(rp.actions) == [*IDS, "v1.28.4/w-3/worker/new"]


def test_resume_point_all_done_and_no_state() -> None:
    st = make_state()
    for sid in IDS:
        st = finish_step(start_step(st, sid), sid)
    assert resume_point(st, IDS).done
    fresh = resume_point(None, IDS)
    assert fresh.first == IDS[0]
    assert fresh.ids(ResumeAction.RUN) == tuple(IDS)


def test_check_compatible() -> None:
    st = make_state()
    assert check_compatible(None, "f" * 64, "v1.28.4").resume is False
    ok = check_compatible(st, "f" * 64, "v1.28.4")
    assert ok.resume and ok.warnings == ()
    # a changed fingerprint is refused, naming what changed, unless the operator accepts it
    st = dataclasses.replace(st, inputs={"playbook site.yaml": "a", "step worker.post.x": "b"})
    new_inputs = {"playbook site.yaml": "c", "step worker.post.y": "d"}
    with pytest.raises(ConfigError) as ei:
        check_compatible(st, "0" * 64, "v1.28.4", source="x.json", inputs=new_inputs)
    msg = str(ei.value)
    assert msg.startswith("x.json: changed since run ")
    assert "playbook site.yaml changed" in msg and "step worker.post.x removed" in msg
    assert "step worker.post.y added" in msg and "--abandon" in msg and "--accept-changes" in msg
    changed = check_compatible(st, "0" * 64, "v1.28.4", inputs=new_inputs, accept_changes=True)
    assert changed.resume and "step worker.post.y added" in changed.warnings[0]
    with pytest.raises(ConfigError) as ei:
        check_compatible(st, "f" * 64, "v1.29.1", source="x.json")
    msg = str(ei.value)
    assert "--abandon" in msg and "v1.28.4" in msg and "v1.29.1" in msg and "x.json" in msg
    for done in (RunStatus.SUCCEEDED, RunStatus.ABANDONED):
        assert check_compatible(set_status(st, done), "0", "v1.29.1").resume is False


def test_status_summary() -> None:
    st = make_state(
        steps=[*STEPS, S("v1.28.4/w-3/worker/kubeadm-pkg", "w-3", "worker", "kubeadm-pkg")]
    )
    st = finish_step(start_step(st, IDS[0]), IDS[0])
    st = finish_step(start_step(st, IDS[1]), IDS[1])  # cp-1 done
    st = finish_step(start_step(st, IDS[2]), IDS[2])
    st = fail_step(start_step(st, IDS[3]), IDS[3], message="drain timed out")  # w-1 failed
    st = start_step(st, "v1.28.4/w-3/worker/kubeadm-pkg")
    summary = status_summary(st)
    assert list(summary) == ["cp-1", "w-1", "w-2", "w-3"]
    assert summary["cp-1"].text == "done"
    assert summary["w-1"].state == "failed"
    assert summary["w-1"].text == f"failed at step {IDS[3]}: drain timed out"
    assert summary["w-2"].text == "pending"
    assert summary["w-3"].state == "running"
    st2 = make_state()
    st2 = finish_step(start_step(st2, IDS[2]), IDS[2])
    s2 = status_summary(st2)["w-1"]
    assert s2.state == "in-progress"
    assert s2.step == IDS[3]
    assert (s2.done_steps, s2.total_steps) == (1, 2)


def test_a_node_with_only_its_downloads_done_is_pending_not_in_progress() -> None:
    pre = [
        S("v1.28.4/w-9/prestage/package-repository", "w-9", "prestage", "package-repository"),
        S("v1.28.4/w-9/prestage/download", "w-9", "prestage", "download"),
        S("v1.28.4/w-9/worker/drain", "w-9", "worker", "drain"),
    ]
    st = make_state(steps=pre)
    for r in pre[:2]:
        st = finish_step(start_step(st, r.id), r.id)
    s = status_summary(st)["w-9"]
    assert s.state == "staged" and s.step == pre[2].id
    assert s.text == "pending (packages pre-staged; the node itself not touched yet)"
    st = finish_step(start_step(st, pre[2].id), pre[2].id)
    assert status_summary(st)["w-9"].state == "done"


# --------------------------------------------------------------------------- paths


def test_default_paths(tmp_path: Path) -> None:
    inv = tmp_path / "clusters" / "inventory.yaml"
    assert default_state_path(inv, "prod-eu") == tmp_path / "clusters/.upgrader/prod-eu.state.json"
    assert default_state_path(inv, "../../etc/x").name == "_.._etc_x.state.json"
    assert default_state_path(inv, "a b/c").parent == tmp_path / "clusters" / ".upgrader"
    with pytest.raises(ConfigError):
        default_state_path(inv, "...")
    sp = default_state_path(inv, "lab")
    assert default_transcripts_dir(sp, "r1") == sp.parent / "lab.state.json.d" / "r1"
    assert StateFile.for_inventory(inv, "lab").path == sp
    assert StateFile(sp).lock_path == sp.parent / "lab.state.json.lock"


def test_failed_write_keeps_the_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "s.json"
    old = make_state()
    save(p, old)

    def boom(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="No space"):
        save(p, start_step(old, IDS[0]))
    monkeypatch.undo()
    assert load(p) == old
    assert [x.name for x in tmp_path.iterdir()] == ["s.json"]
