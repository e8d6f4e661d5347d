"""The run's input digests, part by part: a resume names the inventory field, the node and
the playbook step that changed (``upgrader.apply.run_inputs`` + ``state.changed_inputs``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from upgrader.apply import run_inputs
from upgrader.core.playbook import default_playbook_dir
from upgrader.core.versions import KubeVersion
from upgrader.inventory import load_inventory
from upgrader.planning import PlanRequest
from upgrader.state import changed_inputs

NATIVE = Path(__file__).resolve().parents[1] / "data" / "inventories" / "native.yaml"


def test_changed_inventory_fields_nodes_and_steps_are_named(tmp_path: Path) -> None:
    inv_path = tmp_path / "inventory.yaml"
    shutil.copy(NATIVE, inv_path)
    pb = tmp_path / "pb"
    pb.mkdir()
    shutil.copy(default_playbook_dir() / "default.yaml", pb / "default.yaml")
    site = {"version": 1, "phases": {"worker": {"post": [
        {"name": "site-x", "kind": "shell", "description": "d", "command": "true"}]}}}  # fmt: skip
    (pb / "site.yaml").write_text(yaml.safe_dump(site))
    req = PlanRequest(target=KubeVersion.parse("v1.28.4"), playbooks=pb)
    before = run_inputs(load_inventory(inv_path), req)
    assert run_inputs(load_inventory(inv_path), req) == before  # stable

    doc = yaml.safe_load(inv_path.read_text())
    doc["nodes"][2]["user"] = "someone-else"
    doc["ssh"]["connect_timeout"] = 7
    inv_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    site["phases"]["worker"]["post"][0]["command"] = "curl https://x.example | sh"  # type: ignore[index]
    (pb / "site.yaml").write_text(yaml.safe_dump(site))

    after = run_inputs(load_inventory(inv_path), req)
    assert changed_inputs(before, after) == [
        "inventory.nodes.w-1 changed",
        "inventory.ssh changed",
        "playbook site.yaml changed",
        "step worker.post.site-x changed",
    ]
