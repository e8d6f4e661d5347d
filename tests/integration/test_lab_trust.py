"""What the lab's root sshd trusts, on real labs through the real CLI (issue 12, attacks 4
and 8): ``lab up`` refuses a directory another user made (nothing started, nothing
written), runs sshd with ``StrictModes yes`` on files only root may change, starts again in
the directory it made; on its nodes the SSH user without sudo can neither open nor create
the node lock, while root (through the real sudo) takes it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from cli_run import cli

from upgrader.core import nodelock
from upgrader_lab import runner
from upgrader_lab import sudo as labsudo

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.getuid() != 0, reason="a root lab (chown to nobody, real sudo)"),
]

NOBODY = 65534


def _ssh(d: Path, command: str) -> subprocess.CompletedProcess[str]:
    """The real OpenSSH client, as the lab's SSH user, on the first node."""
    lab = json.loads((d / "lab.json").read_text())
    node = next(iter(lab["nodes"].values()))
    return subprocess.run(
        [
            "ssh",
            "-i",
            str(d / "id_ed25519"),
            "-o",
            f"UserKnownHostsFile={d / 'known_hosts'}",
            "-o",
            "BatchMode=yes",
            "-p",
            str(lab["ssh"]["port"]),
            f"{lab['ssh']['user']}@{node['address']}",
            command,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_lab_up_refuses_a_directory_another_user_made(tmp_path: Path) -> None:
    evil = tmp_path / "evil"
    evil.mkdir(mode=0o755)
    os.chown(evil, NOBODY, NOBODY)
    r = cli("lab", "up", "--dir", str(evil), "--workers", "1", "--no-api", timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and r.stdout == ""
    assert r.stderr.startswith(f"error: {evil}: owned by nobody, not by root")
    assert "give a --dir that does not exist yet" in r.stderr
    assert list(evil.iterdir()) == []  # nothing written, nothing started
    assert not labsudo.host_dropin_path(evil).exists()
    assert runner._session_pids(evil) == set()
    assert not [
        p for p in Path("/proc").iterdir() if p.name.isdigit() and runner.ours(int(p.name), evil)
    ]
    # a directory inside it, and one under a parent others may write (no sticky bit)
    r = cli("lab", "up", "--dir", str(evil / "lab"), "--no-api", timeout=120)
    assert r.returncode == 2 and f"its parent {evil} is owned by nobody" in r.stderr
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    r = cli("lab", "up", "--dir", str(shared / "lab"), "--no-api", timeout=120)
    assert r.returncode == 2 and "without the sticky bit" in r.stderr
    assert not (shared / "lab").exists()


def test_a_lab_runs_strict_sshd_on_root_only_files_and_starts_again(tmp_path: Path) -> None:
    d = tmp_path / "lab"
    up = cli("lab", "up", "--dir", str(d), "--workers", "1", "--no-api", timeout=300)
    assert up.returncode == 0, up.stderr
    try:
        config = (d / "sshd" / "sshd_config").read_text()
        assert "StrictModes yes\n" in config and "StrictModes no" not in config
        for f in [
            d,
            d / "sshd",
            d / "sshd" / "sshd_config",
            d / "sshd" / "ssh_host_ed25519_key",
            d / "sshd" / "authorized_keys",
            d / "bin",
            d / "bin" / "node-shell",
            d / "bin" / "node-lib.sh",
            d / "bin" / "node-ns",
            d / "bin" / "node-enter",
            d / "bin" / "node-ns-user",
        ]:
            st = os.lstat(f)
            assert st.st_uid == 0 and not st.st_mode & 0o022, f"{f}: {st.st_mode:o}"
        assert _ssh(d, "id -un").stdout == "upgrader-lab\n"
        # attack 8: the SSH user without sudo cannot open, create or hold the node lock
        r = _ssh(d, f"exec 9>>{nodelock.LOCK_PATH} && flock -n 9 && echo HELD")
        assert r.returncode != 0 and "HELD" not in r.stdout
        assert "Permission denied" in r.stderr
        r = _ssh(d, f"ls -ld {nodelock.LOCK_DIR}; mkdir {nodelock.LOCK_DIR}/x || echo NO-MKDIR")
        assert r.stdout.startswith("drwx------ ") and " root root " in r.stdout
        assert "NO-MKDIR" in r.stdout
        # root, through the real sudo, takes it (the engine's wrapper, run as the engine does)
        wrapped = nodelock.wrap("id -un", wait=1)
        r = _ssh(d, "sudo -n sh -c " + _q(wrapped))
        assert (r.returncode, r.stdout) == (0, "root\n"), r.stderr
        lock_dir = d / "nodes" / "cp-1" / "lock"
        assert stat.S_IMODE(os.stat(lock_dir).st_mode) == 0o700
        assert (lock_dir / "upgrader.lock").is_file()
        down = cli("lab", "down", "--dir", str(d), timeout=120)
        assert down.returncode == 0, down.stderr
        # the directory it made itself: `lab up` uses it again
        again = cli("lab", "up", "--dir", str(d), "--no-api", timeout=300)
        assert again.returncode == 0, again.stderr
        assert again.stdout.startswith(f"lab started in {d}")
        assert _ssh(d, "id -un").stdout == "upgrader-lab\n"
    finally:
        cli("lab", "down", "--dir", str(d), "--purge", timeout=120)
    assert not d.exists()


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
