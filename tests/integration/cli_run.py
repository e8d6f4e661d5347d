"""Runs the real ``upgrader`` command line in a subprocess, as an operator would from a
script: no terminal on stdin, no colour, no ``KUBECONFIG`` from the caller's environment.

Owns the subprocess call and the one check every bad-input test makes of what it printed
(:func:`one_line_error`: exit 2, one line on stderr, no traceback). Must not hold any
other assertion (the tests do)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["NO_COLOR"] = "1"
    env.pop("KUBECONFIG", None)
    return env


def start_cli(*args: str) -> subprocess.Popen[str]:
    """``python -m upgrader ARGS`` in the background (stdout and stderr piped, as text), to
    be signalled or waited for. SIGINT is set back to its default in the child: a test run
    started in the background by a non-interactive shell inherits SIGINT ignored, and a
    Python started that way never turns Ctrl-C into KeyboardInterrupt."""
    return subprocess.Popen(
        [sys.executable, "-m", "upgrader", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=cli_env(),
        text=True,
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m upgrader ARGS`` with stdin from /dev/null; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "upgrader", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
    )


def one_line_error(r: subprocess.CompletedProcess[str], *words: str) -> str:
    """Bad input as the CLI must report it: exit 2, no traceback, one non-empty line on
    stderr holding each of ``words``; returns that line."""
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "Traceback" not in out
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, lines
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]
