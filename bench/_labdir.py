"""What ``upgrader lab up`` wrote in a lab's directory, read one way by the benchmarks, the
campaigns and the integration tests' lab kit (tests import ``bench``, never the reverse).

Owns :class:`LabDir`: the lab's files (inventory, kubeconfig, the state file, a node's root
and its ``calls.jsonl``) and what ``lab.json`` says (the nodes, their addresses, the SSH
port and user).

Must not: start, stop or reach a lab (the kits built on it do), or write in its directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any


@dataclass(eq=False)
class LabDir:
    """A lab's directory and what ``lab up`` wrote in it (two are equal only if the same)."""

    dir: Path

    @cached_property
    def info(self) -> dict[str, Any]:
        """``lab.json`` as it was at the first look (it holds after ``lab down``)."""
        data: dict[str, Any] = json.loads((self.dir / "lab.json").read_text())
        return data

    @property
    def inventory(self) -> Path:
        return self.dir / "inventory.yaml"

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def state(self) -> Path:
        return self.dir / ".upgrader" / "lab.state.json"

    @property
    def ssh_port(self) -> int:
        return int(self.info["ssh"]["port"])

    @property
    def ssh_user(self) -> str:
        return str(self.info["ssh"]["user"])

    def root(self, node: str) -> Path:
        return self.dir / "nodes" / node / "root"

    def address(self, node: str) -> str:
        return str(self.info["nodes"][node]["address"])

    def records(self, node: str) -> list[dict[str, Any]]:
        """The node's ``calls.jsonl``: one record per simulated tool call, in order."""
        p = self.dir / "nodes" / node / "calls.jsonl"
        if not p.exists():
            return []
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
