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

One round trip per step: :func:`wrap_checked` runs a step's done-check and, when it does
not pass, the command, under one hold of the lock in one script, and reports which ran
(a split line on stdout, a report line on stderr, behind a mark drawn at random per call
that the script never spells whole); :func:`split_checked` reads it back apart.

Must not: run anything, decide what to do about a busy lock (the engine waits, re-checks and
fails with a clear message), or lock anything but one file per node.
"""

from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass

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


def _take(wait: float, path: str) -> str:
    """Shell lines that take the lock ``path`` on fd 9 (its directory created 0700 when
    missing, refused when not root's alone), or exit: busy or unsafe."""
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
    )


def _captured(command: str) -> str:
    """Shell lines that run ``command`` in a subshell without the lock's fd, its output in
    the two temporary files, then copy that output to the session: ``__upgrader_rc`` is
    its exit status."""
    return (
        f'(\n{command}\n) {LOCK_FD}>&- >"$__upgrader_out" 2>"$__upgrader_err"\n'
        "__upgrader_rc=$?\n"
        'cat "$__upgrader_out"; cat "$__upgrader_err" >&2\n'
    )


_DONE = 'rm -f "$__upgrader_out" "$__upgrader_err"\nexit "$__upgrader_rc"'


def wrap(command: str, wait: float = DEFAULT_WAIT, path: str = LOCK_PATH) -> str:
    """``command`` (a complete POSIX shell command line) run under the lock file ``path``
    (its directory created 0700 when missing, refused when not root's alone)."""
    return _take(wait, path) + _captured(command) + _DONE


# -- the done-check and the command in one exec ----------------------------------------
# Under one hold of the lock the wrapper runs the check; its output goes to the session,
# then a split line on stdout and a report line on stderr ("<mark> check-exit RC T0 T1",
# the times from /proc/uptime when readable); when the check exited 0 it stops there (exit
# 0), else it runs the command and ends stderr with "<mark> run-exit RC T2". The mark is
# "upgrader-split-" and a token the caller draws at random, printed from two pieces so
# that the whole mark never stands in the script (a command listing processes cannot
# print it): no output of the check or the command can fake it.
SPLIT_PREFIX = "upgrader-split-"
_UPTIME = "{{ read __upgrader_{0} __upgrader_x </proc/uptime; }} 2>/dev/null || __upgrader_{0}=\n"


def mark(token: str) -> str:
    """The split mark of a :func:`wrap_checked` script drawn with ``token``."""
    return SPLIT_PREFIX + token


def wrap_checked(
    check: str, command: str, token: str, wait: float = DEFAULT_WAIT, path: str = LOCK_PATH
) -> str:
    """``check`` and, unless it exits 0, ``command`` under one hold of the lock ``path``,
    in one script; read its result with :func:`split_checked` (``token``: letters and
    digits, at least 8, drawn at random per call)."""
    if len(token) < 8 or not token.isalnum():
        raise ValueError("token must be at least 8 letters or digits")
    head, tail = shlex.quote(SPLIT_PREFIX + token[:4]), shlex.quote(token[4:])
    return (
        _take(wait, path)
        + _UPTIME.format("t0")
        + _captured(check)
        + _UPTIME.format("t1")
        + f"printf '\\n%s%s\\n' {head} {tail}\n"
        + f"printf '\\n%s%s check-exit %s %s %s\\n' {head} {tail} "
        '"$__upgrader_rc" "$__upgrader_t0" "$__upgrader_t1" >&2\n'
        + 'if [ "$__upgrader_rc" = 0 ]; then rm -f "$__upgrader_out" "$__upgrader_err"; '
        "exit 0; fi\n"
        + _captured(command)
        + _UPTIME.format("t2")
        + f"printf '\\n%s%s run-exit %s %s\\n' {head} {tail} "
        '"$__upgrader_rc" "$__upgrader_t2" >&2\n' + _DONE
    )


@dataclass(frozen=True)
class Part:
    """What one of the two (the check, the command) wrote, and how long it took on the
    node (None when the node could not tell)."""

    stdout: str
    stderr: str
    exit_code: int | None
    duration: float | None


@dataclass(frozen=True)
class Checked:
    """A :func:`wrap_checked` script's result, split: the check, and the command when it
    ran (``None``: the check exited 0, so it did not)."""

    check: Part
    command: Part | None


def split_checked(stdout: str, stderr: str, token: str) -> Checked | None:
    """The check's and the command's output apart; None when the script's output holds no
    report of the check (the lock was busy or unsafe, the session dropped or timed out
    before the check ended): then the command did not start, or nobody knows."""
    m = mark(token)
    at = stderr.find(f"\n{m} check-exit ")
    if at < 0:
        return None
    end = stderr.find("\n", at + 1)
    if end < 0:
        return None
    words = stderr[at + 1 : end].split()
    rc, times = int(words[2]), [_uptime(w) for w in words[3:5]]
    split = stdout.find(f"\n{m}\n")
    check_out, run_out = (
        (stdout[:split], stdout[split + len(m) + 2 :])
        if split >= 0
        else (
            "",
            stdout,
        )
    )
    check = Part(check_out, stderr[:at], rc, _span(*times) if len(times) == 2 else None)
    if rc == 0:
        return Checked(check, None)
    rest = stderr[end + 1 :]
    last = rest.rfind(f"\n{m} run-exit ")
    if last < 0:  # timed out or dropped while the command ran
        return Checked(check, Part(run_out, rest, None, None))
    words = rest[last + 1 :].split()
    run_rc = int(words[2]) if len(words) > 2 and words[2].isdigit() else None
    t2 = _uptime(words[3]) if len(words) > 3 else None
    return Checked(check, Part(run_out, rest[:last], run_rc, _span(times[-1], t2)))


class CheckWatch:
    """Reads a :func:`wrap_checked` script's stderr as it arrives: :attr:`exit_code` is the
    check's exit status once its report came (before the command, if any, starts)."""

    def __init__(self, token: str) -> None:
        self._needle = f"\n{mark(token)} check-exit ".encode()
        self._buf = b""
        self.exit_code: int | None = None

    def feed(self, data: bytes) -> bool:
        """True when ``data`` completed the report (once)."""
        if self.exit_code is not None:
            return False
        self._buf += data
        at = self._buf.find(self._needle)
        if at < 0:
            self._buf = self._buf[-len(self._needle) :]
            return False
        end = self._buf.find(b"\n", at + 1)
        if end < 0:
            self._buf = self._buf[at:]
            return False
        self.exit_code = int(self._buf[at + 1 : end].split()[2])
        self._buf = b""
        return True


def _uptime(word: str) -> float | None:
    try:
        return float(word)
    except ValueError:
        return None


def _span(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else max(0.0, end - start)


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
