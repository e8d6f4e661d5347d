"""Runs the real ``upgrader`` command line in a subprocess, as an operator would from a
script: no terminal on stdin, no colour, no ``KUBECONFIG`` from the caller's environment.

Owns only the subprocess call; must not hold assertions (the tests do)."""

from __future__ import annotations

import os
import subprocess
import sys


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["NO_COLOR"] = "1"
    env.pop("KUBECONFIG", None)
    return env


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
