"""Safe opens with real symlinks, hard links and modes in tmp dirs, and the state
directory/file refusals that use them (the lock, the state file, the stored plan, events,
transcripts, facts -o)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from run_kit import recorded_run, shell_step

from upgrader import safefile
from upgrader import state as st
from upgrader.errors import ConfigError
from upgrader.execute import events as ev
from upgrader.execute import stored


def mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    v = tmp_path / "victim"
    v.write_text("precious\n")
    os.chmod(v, 0o644)
    return v


def test_a_symlinked_lock_is_refused_and_its_target_untouched(tmp_path: Path, victim: Path) -> None:
    d = tmp_path / "state"
    d.mkdir(mode=0o700)
    lock = d / "lab.state.json.lock"
    lock.symlink_to(victim)
    with pytest.raises(ConfigError) as ei:
        st.StateFile(d / "lab.state.json").lock().acquire()
    assert (
        str(ei.value)
        == f"{lock}: is a symbolic link; refusing to follow it (remove the link and retry)"
    )
    assert victim.read_text() == "precious\n" and mode(victim) == 0o644


@pytest.mark.parametrize("kind", ["events", "transcript", "facts"])
def test_symlinked_output_files_are_refused(tmp_path: Path, victim: Path, kind: str) -> None:
    d = tmp_path / "out"
    d.mkdir(mode=0o700)
    link = d / ("w-1.log" if kind == "transcript" else "out.json")
    link.symlink_to(victim)
    with pytest.raises(ConfigError, match="symbolic link"):
        if kind == "events":
            ev.JsonlSink(link)
        elif kind == "transcript":
            ev.TranscriptWriter(d).note("w-1", "hello")
        else:
            safefile.write_file(link, b"{}")
    assert victim.read_text() == "precious\n"


def test_existing_files_are_set_to_0600_and_new_ones_created_0600(tmp_path: Path) -> None:
    old = tmp_path / "events.jsonl"
    old.write_text("")
    os.chmod(old, 0o644)
    ev.JsonlSink(old).close()
    assert mode(old) == 0o600
    safefile.write_file(tmp_path / "facts.json", b"{}")
    assert mode(tmp_path / "facts.json") == 0o600
    w = ev.TranscriptWriter(tmp_path / "t")
    w.note("w-1", "x")
    assert mode(tmp_path / "t") == 0o700 and mode(tmp_path / "t" / "w-1.log") == 0o600


def test_a_hard_link_is_refused_before_truncation(tmp_path: Path, victim: Path) -> None:
    link = tmp_path / "facts.json"
    os.link(victim, link)
    with pytest.raises(ConfigError, match="hard links"):
        safefile.write_file(link, b"{}")
    assert victim.read_text() == "precious\n"


def test_state_dir_writable_by_others_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "shared"
    d.mkdir()
    os.chmod(d, 0o777)
    sf = st.StateFile(d / "lab.state.json")
    with pytest.raises(ConfigError) as ei:
        sf.load()
    assert str(ei.value).startswith(f"{d}: the state directory is writable by group or others")
    with pytest.raises(ConfigError, match="writable by group or others"):
        sf.lock().acquire()
    assert not (d / "lab.state.json.lock").exists()


def test_a_symlinked_state_dir_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(ConfigError, match="symbolic link"):
        st.StateFile(tmp_path / "link" / "lab.state.json").lock().acquire()


def test_own_state_dir_is_tightened_to_0700(tmp_path: Path) -> None:
    d = tmp_path / "s"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    with st.StateFile(d / "lab.state.json").lock():
        pass
    assert mode(d) == 0o700


def _run(tmp_path: Path) -> tuple[Path, st.RunState]:
    path = tmp_path / "state" / "lab.state.json"
    run = recorded_run(path, shell_step())
    return path, run


def test_state_and_plan_writable_by_others_are_refused(tmp_path: Path) -> None:
    path, run = _run(tmp_path)
    assert mode(path) == 0o600 and mode(stored.plan_path(path)) == 0o600
    assert st.load(path) == run
    os.chmod(path, 0o666)
    with pytest.raises(ConfigError) as ei:
        st.load(path)
    assert str(ei.value).startswith(f"{path}: is writable by group or others (mode 0666)")
    os.chmod(stored.plan_path(path), 0o620)
    with pytest.raises(ConfigError, match="writable by group or others"):
        stored.load(stored.plan_path(path), "r1", run.plan_digest)


def test_a_forged_stored_plan_is_refused_by_its_digest(tmp_path: Path) -> None:
    path, run = _run(tmp_path)
    p = stored.plan_path(path)
    assert stored.load(p, "r1", run.plan_digest).steps[0].command == "true"
    doc = json.loads(p.read_text())
    doc["entries"][0]["steps"][0]["command"] = "id > /tmp/pwned"
    p.write_text(json.dumps(doc))
    with pytest.raises(ConfigError) as ei:
        stored.load(p, "r1", run.plan_digest)
    assert "does not match the digest the state file recorded" in str(ei.value)
    assert str(ei.value).startswith(f"{p}: ") and "--abandon" in str(ei.value)
    assert st.load(path) is not None and st.load(path).plan_digest == run.plan_digest  # type: ignore[union-attr]


def test_a_symlinked_state_file_is_refused(tmp_path: Path, victim: Path) -> None:
    d = tmp_path / "state"
    d.mkdir(mode=0o700)
    (d / "lab.state.json").symlink_to(victim)
    with pytest.raises(ConfigError, match="symbolic link"):
        st.load(d / "lab.state.json")


def test_inside(tmp_path: Path) -> None:
    assert safefile.inside(tmp_path / "a" / "b", tmp_path)
    assert not safefile.inside(Path("/etc/cron.d"), tmp_path)
    assert not safefile.inside(tmp_path / ".." / "x", tmp_path)
