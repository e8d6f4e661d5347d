"""Planned steps for the state tests, in one place: :class:`S` (what ``new_run`` needs of a
step) and :func:`numbered_steps` (the steps the crash children save in a loop). The children
import it too: :data:`CHILD_PYTHONPATH` puts the repository and this directory on their path."""

from __future__ import annotations

import os
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
