"""``upgrader lab faults list|clear`` on a real lab: node faults (``faults.json`` counters the
node tools keep) and API faults (the API server's counters), cleared while the lab runs
(through ``POST /_lab/v1/faults/clear``) and while it is stopped (``api-state.json``); after a
clear each fault fires its ``times`` again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_run import cli

from upgrader_lab.node import wrapper
from upgrader_lab.node.adminapi import Api, ApiError

pytestmark = pytest.mark.integration

SPEC: dict[str, Any] = {
    "nodes": [
        {"name": "cp-1", "role": "control-plane"},
        {"name": "w-1", "role": "worker"},
    ],
    "faults": [
        {"node": "w-1", "match": "kubeadm version", "times": 1, "exit": 3, "stderr": "boom"},
        {
            "api": {
                "method": "GET",
                "path_prefix": "/api/v1/namespaces/default/configmaps",
                "status": 503,
                "times": 2,
            }
        },
    ],
}
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


def fired(d: Path) -> dict[int, tuple[int, int]]:
    r = cli("lab", "faults", "list", "--dir", str(d), "--json")
    assert r.returncode == 0, r.stderr
    return {f["index"]: (f["fired"], f["times"]) for f in json.loads(r.stdout)}


def kubeadm_rc(d: Path) -> int:
    return wrapper.run_on_node(d, "w-1", "kubeadm version -o short").returncode


def api_status(d: Path) -> int:
    try:
        Api(d).request("GET", CONFIGMAPS)
    except ApiError as exc:
        return 503 if "HTTP 503" in str(exc) else -1
    return 200


def test_faults_list_and_clear_running_and_stopped(tmp_path: Path) -> None:
    d = tmp_path / "faults"
    spec_file = tmp_path / "faults.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    up = cli("lab", "up", "--dir", str(d), "--spec", str(spec_file), timeout=180)
    assert up.returncode == 0, up.stderr
    running = True
    try:
        assert fired(d) == {0: (0, 1), 1: (0, 2)}
        assert kubeadm_rc(d) == 3 and kubeadm_rc(d) == 0
        assert [api_status(d) for _ in range(3)] == [503, 503, 200]
        assert fired(d) == {0: (1, 1), 1: (2, 2)}

        text = cli("lab", "faults", "list", "--dir", str(d))
        assert "faults[0]  node w-1" in text.stdout and "fired 1/1" in text.stdout
        assert "status 503" in text.stdout and f"GET {CONFIGMAPS}" in text.stdout

        clear = cli("lab", "faults", "clear", "--dir", str(d))
        assert clear.returncode == 0, clear.stderr
        assert "2 nodes and the running API server (3 firings reset)" in clear.stdout
        assert fired(d) == {0: (0, 1), 1: (0, 2)}
        # each fault fires again
        assert kubeadm_rc(d) == 3 and kubeadm_rc(d) == 0
        assert api_status(d) == 503

        down = cli("lab", "down", "--dir", str(d), timeout=120)
        assert down.returncode == 0, down.stderr
        running = False
        assert fired(d) == {0: (1, 1), 1: (1, 2)}  # read from the stopped lab's files
        clear = cli("lab", "faults", "clear", "--dir", str(d))
        assert clear.returncode == 0, clear.stderr
        assert "api-state.json" in clear.stdout
        assert fired(d) == {0: (0, 1), 1: (0, 2)}
        state = json.loads((d / "api-state.json").read_text())
        assert state["faults"] == {} and state["objects"]  # only the counters changed
    finally:
        if running:
            cli("lab", "down", "--dir", str(d), timeout=120)


def test_faults_of_a_directory_without_a_lab_is_a_one_line_error(tmp_path: Path) -> None:
    for verb in ("list", "clear"):
        r = cli("lab", "faults", verb, "--dir", str(tmp_path))
        assert r.returncode == 2
        assert r.stderr.strip() == f"error: {tmp_path}: not a lab directory (no spec.json)"
