"""The machine's own Debian tools on a lab node: ``apt-get``, ``apt``, ``apt-cache``,
``apt-mark``, ``dpkg``, ``dpkg-query`` (and ``gpg``), behind the node tool entry point.

Owns only the hand-over: ``python -m upgrader_lab.node apt-get ARGS`` (the node's
``/usr/bin/apt-get`` shim) has already applied the node's delay and faults and will record
the call; this runs the host's real binary, bind-mounted at ``DIR/bin/host-<tool>`` inside
the node's mount namespace (the shim hides ``/usr/bin/<tool>``), with the same argv[0],
stdin, stdout and stderr, and returns its exit code. It prints nothing of its own except
when the real tool cannot run.

Must not: run in the ``path`` mount mode (the real tools would then change the host's own
dpkg database), or change what the real tool prints.
"""

from __future__ import annotations

import os
import signal
import sys

from upgrader_lab.node.context import NodeContext

REAL_TOOLS = ("apt-get", "apt", "apt-cache", "apt-mark", "dpkg", "dpkg-query", "gpg", "curl")


def host_path(ctx: NodeContext, tool: str) -> str:
    return str(ctx.lab_dir / "bin" / f"host-{tool}")


def run_real(tool: str, args: list[str], ctx: NodeContext) -> int:
    if os.environ.get("LAB_NODE_ROOT"):
        sys.stderr.write(
            f"{tool}: upgrader lab: the real {tool} needs the overlay mount mode "
            "(in the path mode it would change the host's own files)\n"
        )
        return 127
    real = host_path(ctx, tool)
    try:
        returncode = _spawn_and_wait(real, [tool, *args])
    except OSError as exc:
        sys.stderr.write(f"{tool}: upgrader lab: cannot run the real {tool}: {exc.strerror}\n")
        return 127
    return returncode if returncode >= 0 else 128 - returncode


def _spawn_and_wait(path: str, argv: list[str]) -> int:
    """``subprocess.run(argv, executable=path).returncode`` without importing subprocess
    (and threading, selectors: a few ms of every call): the child gets the same stdio,
    environment and directory, no other inheritable descriptor (``close_fds``), and the
    SIGPIPE/SIGXFSZ defaults Python's start-up ignores (``restore_signals``)."""
    inherited = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if fd > 2 and os.get_inheritable(fd):
                inherited.append((os.POSIX_SPAWN_CLOSE, fd))
        except OSError:  # the directory listing's own descriptor, closed by now
            continue
    pid = os.posix_spawn(
        path,
        argv,
        os.environ,
        file_actions=inherited,
        setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
    )
    try:
        _, status = os.waitpid(pid, 0)
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    return os.waitstatus_to_exitcode(status)


def main(tool: str, args: list[str], ctx: NodeContext) -> int:
    return run_real(tool, args, ctx)
