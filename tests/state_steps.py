"""Planned steps for the state tests, in one place: :class:`S` (what ``new_run`` needs of a
step), :func:`numbered_steps` (the steps the crash children save in a loop) and
:func:`kill_writer` (one such child, SIGKILLed while it writes). The children import this
module too: :data:`CHILD_PYTHONPATH` puts the repository and this directory on their path."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHILD_PYTHONPATH = os.pathsep.join((str(REPO), str(REPO / "tests")))


@dataclass(frozen=True)
class S:
    id: str
    node: str
    phase: str
    name: str


def numbered_steps(count: int = 400, nodes: int = 50) -> list[S]:
    """``count`` worker steps ``v1.28.4/n-<i>/worker/step-<i>`` over ``nodes`` nodes."""
    return [
        S(f"v1.28.4/n-{i}/worker/step-{i}", f"n-{i % nodes}", "worker", f"step-{i}")
        for i in range(count)
    ]


def kill_writer(script: str, args: list[str], pause: float) -> None:
    """Run ``script`` (a child that saves in a loop and prints ``ready`` after its first
    save) with ``args``, let it write for ``pause`` seconds, then SIGKILL it."""
    child = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=CHILD_PYTHONPATH),
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
        time.sleep(pause)  # the moment of the kill is what varies
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
