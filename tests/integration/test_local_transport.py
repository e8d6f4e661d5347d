"""LocalTransport runs real ``sh -c`` processes with the SSH transport's Result semantics."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from upgrader.transport.base import Transport
from upgrader.transport.local import LocalTransport

pytestmark = pytest.mark.integration


def test_is_a_transport() -> None:
    t = LocalTransport("cp-1")
    assert isinstance(t, Transport) and t.node == "cp-1"


def test_stdout_stderr_exit_code() -> None:
    r = LocalTransport("n").run("echo out; echo err >&2; exit 4", timeout=30)
    assert (r.exit_code, r.stdout, r.stderr, r.timed_out, r.ok) == (
        4,
        "out\n",
        "err\n",
        False,
        False,
    )


def test_env_cwd_and_empty_stdin(tmp_path: Path) -> None:
    t = LocalTransport("n", env={"UPGRADER_X": "42"}, cwd=tmp_path)
    r = t.run('echo "$UPGRADER_X"; pwd; cat; echo end', timeout=30, sudo=True)
    assert r.ok
    assert r.stdout.splitlines() == ["42", str(tmp_path), "end"]
    assert "PATH" in os.environ  # the rest of the environment is inherited
    assert t.run('[ -n "$PATH" ]', timeout=30).ok


def _live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are not zombies (from /proc)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(int(stat.parent.name))
    return live


def test_timeout_kills_the_process_group() -> None:
    r = LocalTransport("n").run("echo $$; (sleep 60; echo late) & sleep 60", timeout=0.5)
    assert r.timed_out and r.exit_code is None
    pgid = int(r.stdout.split()[0])  # sh -c leads its own session and group
    deadline = time.monotonic() + 10  # SIGKILLed processes finish exiting asynchronously
    while _live_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _live_members(pgid) == []


def test_large_output() -> None:
    mb = 1024 * 1024
    r = LocalTransport("n").run(
        f"head -c {mb} /dev/zero | tr '\\000' a; head -c {mb} /dev/zero | tr '\\000' b >&2",
        timeout=60,
    )
    assert r.ok and len(r.stdout) == mb and len(r.stderr) == mb


def test_shell_killed_by_signal_reports_128_plus_signal() -> None:
    r = LocalTransport("n").run("kill -9 $$", timeout=30)
    assert r.exit_code == 137


def test_stream_to_a_file(tmp_path: Path) -> None:
    import stat

    data = bytes(range(256)) * 100
    (tmp_path / "src").write_bytes(data)
    t = LocalTransport("n1")
    dest = tmp_path / "dest.db"
    r = t.stream_to(f"cat -- {tmp_path / 'src'}; echo e >&2", dest, timeout=30)
    assert r.ok and r.stderr == "e\n" and dest.read_bytes() == data
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    r = t.stream_to("exit 3", tmp_path / "no.db", timeout=30)
    assert r.exit_code == 3 and not (tmp_path / "no.db").exists()
