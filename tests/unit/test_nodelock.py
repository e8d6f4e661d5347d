"""The node lock's shell text and the NODE_LOCK_UNAVAILABLE check (pure code; the wrapper
is run by real shells in tests/integration/test_nodelock_shell.py and by the engine
tests)."""

from __future__ import annotations

import shlex

import pytest

from upgrader.core import nodelock
from upgrader.core.checks.node_lock import check_node_lock
from upgrader.core.model import ClusterFacts, Facts, NodeFacts, Severity
from upgrader.core.parsers import fact_probes
from upgrader.core.versions import KubeVersion


def test_wrap_takes_the_lock_then_runs_the_command_with_the_lock_fd_closed() -> None:
    text = nodelock.wrap("kubeadm upgrade apply v1.28.4 -y", wait=3)
    lines = text.splitlines()
    assert lines[0] == "exec 9>>/run/lock/upgrader.lock || exit 70"
    assert lines[1].startswith("flock -w 3 9;")
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
    marker = f"{nodelock.BUSY_MARKER}: /run/lock/upgrader.lock is held by another command\n"
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


def test_a_node_without_flock_or_run_lock_is_a_blocker_naming_it() -> None:
    facts = _facts(_node("w-1", True), _node("w-2", False), _node("w-3", None))
    found = check_node_lock(facts, nodes=["w-1", "w-2", "w-3"])
    assert [(f.code, f.severity, f.node) for f in found] == [
        ("NODE_LOCK_UNAVAILABLE", Severity.BLOCKER, "w-2")
    ]
    assert "flock" in found[0].message and "util-linux" in (found[0].fix or "")


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
