"""The lab's injected faults and how often each has fired: ``upgrader lab faults list|clear``.

Owns reading the spec's faults (``DIR/spec.json`` ``faults``, by index), their counters (node
faults: ``DIR/nodes/NAME/faults.json``, kept by :meth:`upgrader_lab.node.context.NodeContext.
take_fault`; API faults: the API server's store, through ``GET /_lab/v1/faults`` while it runs,
else ``DIR/api-state.json``) and clearing them, so that a lab's faults fire again from the
start (e.g. between two trials of one lab) without rebuilding it.

Must not: change the spec (which faults exist), or touch anything else of the lab's state.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from upgrader.errors import ConfigError, ExitCode, UpgraderError
from upgrader_lab.apiserver.certs import atomic_write
from upgrader_lab.node.context import fault_counters


class FaultsError(UpgraderError):
    """The running API server did not answer the fault request."""

    exit_code = ExitCode.STEP_FAILED


@dataclass(frozen=True)
class FaultState:
    index: int  # position in the spec's faults list (the counters' key)
    where: str  # "node w-1" | "api"
    what: str  # the node command match, or "METHOD /path-prefix"
    effect: str  # "exit 1", "hang 30s", "drop", "status 503", "timeout 5s"
    times: int
    fired: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # every field, in declaration order (the --json keys)


def _spec(lab_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((lab_dir / "spec.json").read_text())
    except (OSError, ValueError):
        raise ConfigError(f"{lab_dir}: not a lab directory (no spec.json)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{lab_dir}/spec.json: not a lab spec")
    return data


def _counts(path: Path) -> dict[str, int]:
    try:
        data = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): int(v) for k, v in data.items() if isinstance(v, int)}


def _api_running(lab_dir: Path) -> bool:
    from upgrader_lab import runner

    return bool(runner.running_pids(lab_dir)["apiserver"])


def _api_request(lab_dir: Path, method: str, path: str) -> dict[str, Any]:
    from upgrader_lab.node.adminapi import Api, ApiError

    try:
        answer = Api(lab_dir).request(method, path, {} if method == "POST" else None)
    except ApiError as exc:
        raise FaultsError(f"the lab's API server: {exc}") from None
    return answer if isinstance(answer, dict) else {}


def _api_counts(lab_dir: Path) -> dict[str, int]:
    if _api_running(lab_dir):
        raw = _api_request(lab_dir, "GET", "/_lab/v1/faults").get("faults") or {}
        return {str(k): int(v) for k, v in raw.items()}
    try:
        state = json.loads((lab_dir / "api-state.json").read_text())
    except (OSError, ValueError):
        return {}
    raw = state.get("faults") if isinstance(state, dict) else None
    return {str(k): int(v) for k, v in (raw or {}).items()}


def _effect(fault: dict[str, Any]) -> str:
    api = fault.get("api")
    body: dict[str, Any] = api if isinstance(api, dict) else fault
    if body.get("drop"):
        return "drop"
    if body.get("status") is not None:
        return f"status {body['status']}"
    if body.get("hang") is not None:
        return f"hang {body['hang']:g}s" + (
            f", then exit {body['exit']}" if body.get("exit") is not None else ""
        )
    if body.get("timeout") is not None:
        return f"timeout {body['timeout']:g}s"
    return f"exit {body.get('exit', 1)}"


def list_faults(lab_dir: Path) -> list[FaultState]:
    """Every fault of the lab's spec with how often it has fired so far."""
    spec = _spec(lab_dir)
    faults = [f for f in spec.get("faults") or [] if isinstance(f, dict)]
    api_counts = _api_counts(lab_dir) if any("api" in f for f in faults) else {}
    node_counts: dict[str, dict[str, int]] = {}
    out: list[FaultState] = []
    for i, f in enumerate(spec.get("faults") or []):
        if not isinstance(f, dict):
            continue
        if "api" in f and isinstance(f["api"], dict):
            a = f["api"]
            out.append(
                FaultState(
                    i,
                    "api",
                    f"{str(a.get('method', '*')).upper()} {a.get('path_prefix', '/')}",
                    _effect(f),
                    int(a.get("times", 1)),
                    api_counts.get(str(i), 0),
                )
            )
            continue
        node = str(f.get("node", ""))
        if node not in node_counts:
            node_counts[node] = _counts(lab_dir / "nodes" / node / "faults.json")
        out.append(
            FaultState(
                i,
                f"node {node}",
                str(f.get("match", "")),
                _effect(f),
                int(f.get("times", 1)),
                node_counts[node].get(str(i), 0),
            )
        )
    return out


def _clear_node(path: Path) -> dict[str, int]:
    """Reset one node's counters under the same flock the node tools take."""
    with fault_counters(path) as (before, write):
        write(b"{}\n")
        return {str(k): int(v) for k, v in (before or {}).items() if isinstance(v, int)}


@dataclass(frozen=True)
class Cleared:
    nodes: dict[str, dict[str, int]]  # node -> the counters it had
    api: dict[str, int]  # the API server's counters before
    api_where: str  # "running API server" | "api-state.json" | "none"


def clear_faults(lab_dir: Path) -> Cleared:
    """Reset every fault counter of the lab (nodes and API server): each fault fires its
    ``times`` again. Works with the lab running or stopped."""
    spec = _spec(lab_dir)
    nodes: dict[str, dict[str, int]] = {}
    for n in spec.get("nodes") or []:
        name = str(n.get("name", "")) if isinstance(n, dict) else ""
        ndir = lab_dir / "nodes" / name
        if name and ndir.is_dir():
            nodes[name] = _clear_node(ndir / "faults.json")
    if _api_running(lab_dir):
        before = _api_request(lab_dir, "POST", "/_lab/v1/faults/clear").get("cleared") or {}
        return Cleared(nodes, {str(k): int(v) for k, v in before.items()}, "running API server")
    state_path = lab_dir / "api-state.json"
    try:
        state = json.loads(state_path.read_text())
    except (OSError, ValueError):
        return Cleared(nodes, {}, "none")
    api_before = {str(k): int(v) for k, v in (state.get("faults") or {}).items()}
    state["faults"] = {}
    atomic_write(state_path, json.dumps(state, separators=(",", ":")).encode(), 0o600)
    return Cleared(nodes, api_before, "api-state.json")
