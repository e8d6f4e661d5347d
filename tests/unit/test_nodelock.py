"""The node lock's shell text and the NODE_LOCK_UNAVAILABLE check (pure code; the wrapper
is run by real shells in tests/integration/test_nodelock_shell.py and by the engine
tests)."""

from __future__ import annotations

import shlex

import pytest

from upgrader.core import nodelock
from upgrader.core.checks.node_lock import check_node_lock
from upgrader.core.model import ClusterFacts, Facts, NodeFacts, Severity
from upgrader.core.probes import fact_probes
from upgrader.core.versions import KubeVersion


def test_wrap_takes_the_lock_then_runs_the_command_with_the_lock_fd_closed() -> None:
    text = nodelock.wrap("kubeadm upgrade apply v1.28.4 -y", wait=3)
    lines = text.splitlines()
    opened = lines.index("exec 9>>/run/upgrader/upgrader.lock || exit 70")
    assert lines[opened + 2].startswith("flock -w 3 9;")
    # the directory is made 0700 when missing and judged before the file is opened
    assert "mkdir -m 0700 /run/upgrader" in lines[0]
    assert "-user 0 ! -perm -020 ! -perm -002" in lines[1]
    assert "[ -L /run/upgrader/upgrader.lock ]" in lines[opened - 1]
    body = lines.index("kubeadm upgrade apply v1.28.4 -y")
    assert lines[body - 1 : body + 2] == [
        "(",
        "kubeadm upgrade apply v1.28.4 -y",
        ') 9>&- >"$__upgrader_out" 2>"$__upgrader_err"',
    ]
    assert lines[-1] == 'exit "$__upgrader_rc"'
    assert "trap '' HUP" in lines
    assert f"exit {nodelock.BUSY_EXIT}" in text


def test_wrap_quotes_a_lock_path_with_shell_metacharacters() -> None:
    text = nodelock.wrap("true", path="/tmp/a b;rm -rf x")
    assert f"exec 9>>{shlex.quote('/tmp/a b;rm -rf x')} || exit 70" in text


def test_wrap_refuses_a_negative_wait() -> None:
    with pytest.raises(ValueError, match="wait"):
        nodelock.wrap("true", wait=-1)


def test_busy_needs_both_the_exit_code_and_the_marker() -> None:
    marker = f"{nodelock.BUSY_MARKER}: /run/upgrader/upgrader.lock is held by another command\n"
    assert nodelock.is_busy(75, marker)
    assert not nodelock.is_busy(75, "apt-get: temporary failure\n")  # the command's own 75
    assert not nodelock.is_busy(1, marker)
    assert not nodelock.is_busy(None, marker)


def test_the_fact_script_probes_the_node_lock_for_every_package_manager() -> None:
    for pm in ("apt", "dnf", "yum"):
        assert ("node_lock", nodelock.PROBE) in fact_probes(pm)


def _facts(*nodes: NodeFacts) -> Facts:
    return Facts(ClusterFacts("lab", KubeVersion.parse("v1.27.8")), nodes)


def _node(name: str, lock: bool | None, reachable: bool = True) -> NodeFacts:
    extra = {} if lock is None else {"node_lock": lock}
    return NodeFacts(name=name, role="worker", reachable=reachable, extra=extra)


def test_a_node_without_flock_or_a_safe_lock_dir_is_a_blocker_naming_it() -> None:
    facts = _facts(_node("w-1", True), _node("w-2", False), _node("w-3", None))
    found = check_node_lock(facts, nodes=["w-1", "w-2", "w-3"])
    assert [(f.code, f.severity, f.node) for f in found] == [
        ("NODE_LOCK_UNAVAILABLE", Severity.BLOCKER, "w-2")
    ]
    assert "flock" in found[0].message and "util-linux" in (found[0].fix or "")
    assert "/run/upgrader" in found[0].message and "rm -rf /run/upgrader" in (found[0].fix or "")


def test_nodes_outside_the_run_or_unreachable_are_not_judged() -> None:
    facts = _facts(_node("w-1", False), _node("w-2", False, reachable=False))
    assert check_node_lock(facts, nodes=["w-2"]) == []


def test_wrapped_command_output_and_exit_code_reach_the_caller(tmp_path: object) -> None:
    """Run by a real sh: stdout and stderr arrive (after the command), the exit status is
    the command's even when it calls ``exit``, and the output files are removed."""
    import os
    import subprocess
    from pathlib import Path

    base = Path(str(tmp_path))
    lock = base / "upgrader.lock"
    script = nodelock.wrap("echo out; echo err >&2; exit 3", wait=1, path=str(lock))
    env = {**os.environ, "TMPDIR": str(base)}
    proc = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, env=env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")
    assert sorted(p.name for p in base.iterdir()) == ["upgrader.lock"]


def test_wrapped_command_survives_a_closed_output_pipe(tmp_path: object) -> None:
    """What a dropped SSH session does to a command without a terminal: its stdout and
    stderr pipes lose their reader. The wrapped command still runs to its end."""
    import os
    import subprocess
    import time
    from pathlib import Path

    base = Path(str(tmp_path))
    done = base / "done"
    script = nodelock.wrap(
        f"sleep 1; echo after-the-drop; echo more >&2; touch {done}",
        wait=1,
        path=str(base / "upgrader.lock"),
    )
    env = {**os.environ, "TMPDIR": str(base)}
    proc = subprocess.Popen(
        ["/bin/sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the session is gone: nobody reads any more
    proc.stderr.close()
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert done.exists()
    unwrapped = base / "unwrapped"
    bare = subprocess.Popen(
        ["/bin/sh", "-c", f"sleep 1; echo after-the-drop; touch {unwrapped}"],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert bare.stdout is not None
    bare.stdout.close()
    assert bare.wait(timeout=30) != 0 and not unwrapped.exists()  # SIGPIPE killed it


def test_the_holder_is_read_from_the_busy_line() -> None:
    line = (
        f"{nodelock.BUSY_MARKER}: /run/upgrader/upgrader.lock is held by another command "
        "(open by pid 42 (sleep, user nobody, not root))\n"
    )
    assert nodelock.holder(line) == "pid 42 (sleep, user nobody, not root)"
    assert nodelock.holder(f"{nodelock.BUSY_MARKER}: x is held by another command\n") is None
    assert nodelock.holder("apt-get: (open by pid 1)\n") is None


# --------------------------------------------------------------------------- real shells


def _lock_dir(base: object) -> tuple[object, str]:
    from pathlib import Path

    d = Path(str(base)) / "run-upgrader"
    return d, str(d / "upgrader.lock")


def _sh(script: str, base: object) -> tuple[int, str, str]:
    import os
    import subprocess

    env = {**os.environ, "TMPDIR": str(base)}
    proc = subprocess.run(
        ["/bin/sh", "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    return proc.returncode, proc.stdout, proc.stderr


def _root_only() -> None:
    import os

    if os.geteuid() != 0:
        pytest.fail("these tests judge root-owned lock directories: run them as root")


def test_the_lock_directory_is_made_root_only_when_missing(tmp_path: object) -> None:
    import os
    import stat

    _root_only()
    d, lock = _lock_dir(tmp_path)
    assert _sh(nodelock.wrap("echo ran", wait=1, path=lock), tmp_path) == (0, "ran\n", "")
    st = os.lstat(str(d))
    assert stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o700


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777])
def test_a_lock_directory_others_may_write_is_refused(tmp_path: object, mode: int) -> None:
    import os

    _root_only()
    d, lock = _lock_dir(tmp_path)
    os.mkdir(str(d))
    os.chmod(str(d), mode)
    ran = os.path.join(str(tmp_path), "ran")
    rc, out, err = _sh(nodelock.wrap(f"touch {ran}", wait=1, path=lock), tmp_path)
    assert rc == nodelock.UNSAFE_EXIT and out == "" and err.count("\n") == 1
    assert f"node lock directory {d} is not a directory owned by root" in err
    assert not os.path.exists(ran) and not os.path.exists(lock)


def test_a_lock_directory_owned_by_another_user_or_a_symlink_is_refused(tmp_path: object) -> None:
    import os

    _root_only()
    d, lock = _lock_dir(tmp_path)
    os.mkdir(str(d), 0o700)
    os.chown(str(d), 65534, 65534)
    rc, _, err = _sh(nodelock.wrap("true", wait=1, path=lock), tmp_path)
    assert rc == nodelock.UNSAFE_EXIT and "not a directory owned by root" in err
    os.rmdir(str(d))
    target = os.path.join(str(tmp_path), "elsewhere")
    os.mkdir(target, 0o700)
    os.symlink(target, str(d))
    rc, _, err = _sh(nodelock.wrap("true", wait=1, path=lock), tmp_path)
    assert rc == nodelock.UNSAFE_EXIT and "a symlink" in err
    assert os.listdir(target) == []


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path: object) -> None:
    import os

    _root_only()
    d, lock = _lock_dir(tmp_path)
    os.mkdir(str(d), 0o700)
    victim = os.path.join(str(tmp_path), "victim")
    with open(victim, "w") as fh:
        fh.write("keep\n")
    os.symlink(victim, lock)
    rc, out, err = _sh(nodelock.wrap("echo ran", wait=1, path=lock), tmp_path)
    assert (rc, out) == (nodelock.UNSAFE_EXIT, "")
    assert f"node lock {lock} is not a regular file (a symlink?)" in err
    with open(victim) as fh:
        assert fh.read() == "keep\n"
    os.unlink(lock)
    os.mkfifo(lock)  # not a regular file either: never opened (a FIFO would block)
    rc, _, err = _sh(nodelock.wrap("echo ran", wait=1, path=lock), tmp_path)
    assert rc == nodelock.UNSAFE_EXIT and "not a regular file" in err


def test_a_lock_held_by_a_non_root_process_is_reported_as_such(tmp_path: object) -> None:
    """A process that is not root holds the lock (root opened and locked the file, then
    became nobody, as a command started with the lock fd left open could): the busy line
    names its pid, command and user, and says it is not root."""
    import os
    import subprocess
    import time

    _root_only()
    d, lock = _lock_dir(tmp_path)
    os.mkdir(str(d), 0o700)
    holder = subprocess.Popen(
        [
            "/bin/sh",
            "-c",
            f"exec 9>>{lock}; flock 9; exec setpriv --reuid=65534 --regid=65534 "
            "--clear-groups sleep 60",
        ]
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            probe = subprocess.run(["flock", "-n", lock, "true"], check=False)
            if probe.returncode != 0:
                break
            time.sleep(0.05)
        rc, out, err = _sh(nodelock.wrap("echo ran", wait=0.2, path=lock), tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert (rc, out) == (nodelock.BUSY_EXIT, "")
    assert nodelock.is_busy(rc, err)
    by = nodelock.holder(err)
    assert by == f"pid {holder.pid} (sleep, user nobody, not root)", err


def test_wrap_checked_never_writes_the_whole_split_mark() -> None:
    token = "0123456789abcdef"
    text = nodelock.wrap_checked("test -f done", "kubeadm upgrade node", token, wait=3)
    assert nodelock.mark(token) not in text
    assert text.count("flock -w 3 9;") == 1  # one hold of the lock for both
    assert text.index("test -f done") < text.index("kubeadm upgrade node")
    with pytest.raises(ValueError):
        nodelock.wrap_checked("true", "true", "short")


def test_split_checked_reads_which_ran_and_separates_their_output() -> None:
    m = nodelock.mark("tok12345")
    both = nodelock.split_checked(
        f"c\n\n{m}\nr-out",
        f"c-err\n{m} check-exit 1 10.00 10.25\nr-err\n\n{m} run-exit 3 11.25\n",
        "tok12345",
    )
    assert both == nodelock.Checked(
        nodelock.Part("c\n", "c-err", 1, 0.25), nodelock.Part("r-out", "r-err\n", 3, 1.0)
    )
    done = nodelock.split_checked(f"\n{m}\n", f"\n{m} check-exit 0  \n", "tok12345")
    assert done == nodelock.Checked(nodelock.Part("", "", 0, None), None)
    # cut off while the command ran: its exit status is unknown
    cut = nodelock.split_checked(f"\n{m}\npart", f"\n{m} check-exit 1 1 2\nhalf", "tok12345")
    assert cut is not None and cut.command == nodelock.Part("part", "half", None, None)
    # no report of the check (busy lock, another token): None
    busy = f"{nodelock.BUSY_MARKER}: /run/upgrader/upgrader.lock is held by another command"
    assert nodelock.split_checked("", busy, "tok12345") is None
    assert nodelock.split_checked(f"\n{m}\n", f"\n{m} check-exit 0 1 2\n", "other123") is None


def test_check_watch_hears_the_report_however_the_stream_is_cut() -> None:
    m = nodelock.mark("tok12345")
    stream = f"{'x' * 5000}\n{m} check-exit 4 1 2\nthe command's own stderr".encode()
    for size in (1, 7, 64, len(stream)):
        watch = nodelock.CheckWatch("tok12345")
        heard = [watch.feed(stream[i : i + size]) for i in range(0, len(stream), size)]
        assert heard.count(True) == 1 and watch.exit_code == 4
    other = nodelock.CheckWatch("other123")
    assert not other.feed(stream) and other.exit_code is None
