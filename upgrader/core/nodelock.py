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
When the wait runs out the wrapper prints :data:`BUSY_MARKER` on stderr, naming the
processes that have the lock file open (pid, command, user: "not root" when a non-root
process holds it), and exits :data:`BUSY_EXIT` (EX_TEMPFAIL) without running the command.

Where: :data:`LOCK_DIR` (``/run/upgrader``), a directory only root may enter. The lock used
to live in the world-writable ``/run/lock``, where any local user could hold
``upgrader.lock`` (stalling a run half way, nodes cordoned) or plant the path first.
``/run`` is a tmpfs on systemd distributions (Debian, Ubuntu, RHEL and its rebuilds), so
the directory is gone after a reboot: the wrapper creates it (``mkdir -m 0700``, as root)
when missing, and refuses (exit 70, one line, the command not run) when it is a symlink,
not a directory, not owned by root, or writable by group or others. The lock file itself
must be a regular file, not a symlink. A POSIX shell has no ``O_NOFOLLOW``; what makes the
open safe is the directory: once it is root's and 0700-like, nobody else can create, swap
or re-point an entry in it, so the ``[ -L ]``/``[ -f ]`` checks before ``exec 9>>`` (and
again after it) cannot be raced by an unprivileged user. ``flock`` is util-linux; the
owner check uses POSIX ``find -prune -user 0 ! -perm -020 ! -perm -002``.

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

LOCK_DIR = "/run/upgrader"
LOCK_PATH = f"{LOCK_DIR}/upgrader.lock"
BUSY_EXIT = 75  # EX_TEMPFAIL
BUSY_MARKER = "upgrader: node lock busy"
UNSAFE_EXIT = 70  # EX_SOFTWARE: the lock's directory or file is not safe to use
LOCK_FD = 9
DEFAULT_WAIT = 10.0  # seconds one SSH command waits for the lock before reporting busy
HOLDER_PREFIX = "open by "  # what follows in the busy line: who has the lock file open


def _dir_ok(d: str) -> str:
    """Shell test: ``d`` is a directory (not a symlink) owned by root, no group/other write."""
    return (
        f'[ ! -L {d} ] && [ -n "$(find {d} -prune -type d -user 0 '
        f'! -perm -020 ! -perm -002 -print 2>/dev/null)" ]'
    )


def _holders(path: str) -> str:
    """Shell lines setting ``__upgrader_by`` to the processes (other than this shell) that
    have ``path`` open: ``pid 123 (sh, user root)``, ``user nobody, not root`` for others.
    Found by comparing every /proc/PID/fd entry with the file (``-ef``: same device and
    inode), which also works for a lock file bind-mounted from elsewhere."""
    return (
        "__upgrader_by=; __upgrader_seen=\n"
        "for __upgrader_fd in /proc/[0-9]*/fd/*; do\n"
        f'  [ "$__upgrader_fd" -ef {path} ] 2>/dev/null || continue\n'
        "  __upgrader_pid=${__upgrader_fd#/proc/}; __upgrader_pid=${__upgrader_pid%%/*}\n"
        '  [ "$__upgrader_pid" = "$$" ] && continue\n'
        '  case " $__upgrader_seen " in *" $__upgrader_pid "*) continue ;; esac\n'
        '  __upgrader_seen="$__upgrader_seen $__upgrader_pid"\n'
        '  __upgrader_u=$(ls -ld "/proc/$__upgrader_pid" 2>/dev/null | '
        "awk '{print $3}')\n"
        '  __upgrader_c=$(cat "/proc/$__upgrader_pid/comm" 2>/dev/null)\n'
        '  [ "$__upgrader_u" = root ] || __upgrader_u="$__upgrader_u, not root"\n'
        '  __upgrader_by="${__upgrader_by:+$__upgrader_by; }pid $__upgrader_pid '
        '($__upgrader_c, user $__upgrader_u)"\n'
        "done\n"
    )


def wrap(command: str, wait: float = DEFAULT_WAIT, path: str = LOCK_PATH) -> str:
    """``command`` (a complete POSIX shell command line) run under the lock file ``path``
    (its directory created 0700 when missing, refused when not root's alone)."""
    if wait < 0:
        raise ValueError(f"wait must be >= 0, not {wait}")
    busy = shlex.quote(f"{BUSY_MARKER}: {path} is held by another command")
    lock_dir = shlex.quote(posixpath.dirname(path) or ".")
    bad_dir = shlex.quote(
        f"upgrader: node lock directory {posixpath.dirname(path) or '.'} is not a directory "
        "owned by root that only root may write (a symlink, another owner, or group/other "
        "write): refusing to run; remove it (the next command creates it, mode 0700)"
    )
    bad_file = shlex.quote(
        f"upgrader: node lock {path} is not a regular file (a symlink?): refusing to run; remove it"
    )
    q = shlex.quote(path)
    return (
        f"if [ ! -e {lock_dir} ] && [ ! -L {lock_dir} ]; then "
        f"mkdir -m 0700 {lock_dir} 2>/dev/null; fi\n"
        f"{_dir_ok(lock_dir)} || {{ echo {bad_dir} >&2; exit {UNSAFE_EXIT}; }}\n"
        f"if [ -L {q} ] || {{ [ -e {q} ] && [ ! -f {q} ]; }}; then "
        f"echo {bad_file} >&2; exit {UNSAFE_EXIT}; fi\n"
        f"exec {LOCK_FD}>>{q} || exit {UNSAFE_EXIT}\n"
        f"if [ -L {q} ] || [ ! -f {q} ]; then echo {bad_file} >&2; exit {UNSAFE_EXIT}; fi\n"
        f"flock -w {wait:g} {LOCK_FD}; __upgrader_lock=$?\n"
        f'if [ "$__upgrader_lock" = 1 ]; then\n'
        + _holders(q)
        + f'echo {busy}"${{__upgrader_by:+ ({HOLDER_PREFIX}$__upgrader_by)}}" >&2; '
        f"exit {BUSY_EXIT}; fi\n"
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


def holder(stderr: str) -> str | None:
    """Who has the lock file open, as the busy line of a wrapped command says it (``pid 123
    (sleep, user nobody, not root)``), or None when the line names nobody."""
    for line in stderr.splitlines():
        if line.startswith(BUSY_MARKER) and f"({HOLDER_PREFIX}" in line:
            return line.split(f"({HOLDER_PREFIX}", 1)[1].rstrip().removesuffix(")") or None
    return None


# What the facts script runs to tell whether a node can take the lock (see
# upgrader.core.parsers): flock present, and the lock's directory either absent (the
# wrapper creates it) or a root-owned directory that only root may write.
PROBE = (
    f"command -v flock && if [ -e {LOCK_DIR} ] || [ -L {LOCK_DIR} ]; then {_dir_ok(LOCK_DIR)}; "
    f"else test -d {posixpath.dirname(LOCK_DIR)}; fi"
)
