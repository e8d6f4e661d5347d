"""The node lock: one upgrader command at a time on a node, across runs and killed sessions.

Owns the shell text that wraps every step command and done-check the engine sends to a
node, and how to recognise "the lock is held by someone else" in a command's result.

Why: when a run is killed (SIGKILL, lost terminal, lost network) while a command runs on a
node, sshd does not stop that command: ``kubeadm upgrade apply`` goes on for minutes. The
resumed run re-checks the step; without a lock it would find "not done yet" and start a
second ``kubeadm upgrade apply`` beside the first. Under the lock, the resume's check waits
until the orphaned command has finished, then reads its result.

How: the wrapper opens :data:`LOCK_PATH` on file descriptor 9 and takes an exclusive
``flock(1)`` on it, waiting at most ``wait`` seconds, then runs the command with fd 9
closed (a daemon the command might start never inherits the lock). The shell that holds the
lock waits for the command, so the lock lives exactly as long as the command does, and the
kernel drops it when that shell exits, however it exits: no stale lock files, no cleanup.
When the wait runs out the wrapper prints :data:`BUSY_MARKER` on stderr and exits
:data:`BUSY_EXIT` (EX_TEMPFAIL) without running the command.

``/run/lock`` is a tmpfs on systemd distributions (Debian, Ubuntu, RHEL and its rebuilds);
``flock`` is util-linux.

A dropped SSH session (client killed, network lost) sends the command no signal when it has
no terminal (the product asks for none; Debian's sudo with ``Defaults use_pty`` then runs it
without a pty too), but its next write to the session's stdout/stderr kills it with SIGPIPE
(Go's runtime, kubeadm's, exits on a broken pipe on fd 1 or 2), or leaves dpkg half done.
Shown on the lab with the real sudo (tests/integration/test_sudo_session_drop.py). So the
wrapper runs the command in a subshell whose output goes to two ``mktemp`` files on the
node (mode 0600) and only then copies them to the session (SIGHUP ignored, for a session
with a terminal): the command finishes or fails on its own, the lock is held until it has,
and the resumed run's check waits on the lock, then sees what it did. Output comes at the
end, not streamed.

Must not: run anything, decide what to do about a busy lock (the engine waits, re-checks and
fails with a clear message), or lock anything but one file per node.
"""

from __future__ import annotations

import posixpath
import shlex

LOCK_PATH = "/run/lock/upgrader.lock"
BUSY_EXIT = 75  # EX_TEMPFAIL
BUSY_MARKER = "upgrader: node lock busy"
LOCK_FD = 9
DEFAULT_WAIT = 10.0  # seconds one SSH command waits for the lock before reporting busy


def wrap(command: str, wait: float = DEFAULT_WAIT, path: str = LOCK_PATH) -> str:
    """``command`` (a complete POSIX shell command line) run under the lock file ``path``."""
    if wait < 0:
        raise ValueError(f"wait must be >= 0, not {wait}")
    busy = shlex.quote(f"{BUSY_MARKER}: {path} is held by another command")
    path = shlex.quote(path)
    return (
        f"exec {LOCK_FD}>>{path} || exit 70\n"
        f"flock -w {wait:g} {LOCK_FD}; __upgrader_lock=$?\n"
        f'if [ "$__upgrader_lock" = 1 ]; then echo {busy} >&2; exit {BUSY_EXIT}; fi\n'
        f'if [ "$__upgrader_lock" != 0 ]; then '
        f'echo "upgrader: flock failed with exit $__upgrader_lock" >&2; '
        f'exit "$__upgrader_lock"; fi\n'
        "trap '' HUP\n"
        "__upgrader_out=$(mktemp) && __upgrader_err=$(mktemp) || exit 70\n"
        f'(\n{command}\n) {LOCK_FD}>&- >"$__upgrader_out" 2>"$__upgrader_err"\n'
        "__upgrader_rc=$?\n"
        'cat "$__upgrader_out"; cat "$__upgrader_err" >&2\n'
        'rm -f "$__upgrader_out" "$__upgrader_err"\n'
        'exit "$__upgrader_rc"'
    )


def is_busy(exit_code: int | None, stderr: str) -> bool:
    """True when a wrapped command did not run because another command held the lock."""
    return exit_code == BUSY_EXIT and BUSY_MARKER in stderr


# What the facts script runs to tell whether a node can take the lock (see
# upgrader.core.parsers): flock present and the lock's directory there.
PROBE = f"command -v flock && test -d {shlex.quote(posixpath.dirname(LOCK_PATH))}"
