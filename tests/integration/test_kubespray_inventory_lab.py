"""A Kubespray (Ansible YAML) inventory against the lab, with ``HOME`` an empty directory and
no ``KUBECONFIG``: everything a Kubespray file cannot hold comes from ``--kubeconfig`` and
``--known-hosts`` (issue "Operator experience": a Kubespray inventory works without touching
``HOME`` or ``KUBECONFIG``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from cli_run import cli_env
from test_apply_lab import TARGET, Lab, _node, make_lab

pytestmark = pytest.mark.integration
__all__ = ["make_lab"]  # the fixture, shared with test_apply_lab


def _kubespray_file(lab: Lab, dest: Path) -> Path:
    """The lab's native inventory rewritten as Kubespray's hosts.yaml (no kubeconfig, no
    known_hosts: Kubespray inventories have no such keys)."""
    native = yaml.safe_load(lab.inventory.read_text())
    ssh = native["ssh"]
    hosts = {
        n["name"]: {
            "ansible_host": n["address"],
            "ansible_port": n.get("port", ssh.get("port", 22)),
            "ansible_user": n.get("user", ssh.get("user")),
            "ansible_ssh_private_key_file": str(
                (lab.inventory.parent / n.get("identity_file", ssh["identity_file"])).resolve()
            ),
        }
        for n in native["nodes"]
    }
    cps = [n["name"] for n in native["nodes"] if n["role"] == "control-plane"]
    doc = {
        "all": {
            "hosts": hosts,
            "vars": {"cluster_name": native["cluster"]["name"]},
            "children": {
                "kube_control_plane": {"hosts": dict.fromkeys(cps, None)},
                "kube_node": {"hosts": {h: None for h in hosts if h not in cps}},
                "k8s_cluster": {"children": {"kube_control_plane": None, "kube_node": None}},
            },
        }
    }
    dest.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


def _paths(lab: Lab) -> tuple[Path, Path]:
    native = yaml.safe_load(lab.inventory.read_text())
    base = lab.inventory.parent
    return (base / native["kubeconfig"]["path"]).resolve(), (
        base / native["ssh"]["known_hosts"]
    ).resolve()


def test_a_kubespray_inventory_needs_no_home_and_no_kubeconfig_variable(
    make_lab: Callable[..., Lab], tmp_path: Path
) -> None:
    lab = make_lab({"version": "v1.27.8", "nodes": [_node("cp-1", "control-plane"), _node("w-1")]})
    hosts = _kubespray_file(lab, tmp_path / "hosts.yaml")
    kubeconfig, known_hosts = _paths(lab)
    home = tmp_path / "empty-home"
    home.mkdir()
    env = cli_env() | {"HOME": str(home)}
    env.pop("KUBECONFIG", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "upgrader", *args],
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=600,
            cwd=tmp_path,
        )

    access = ("--kubeconfig", str(kubeconfig), "--known-hosts", str(known_hosts))
    # without the flags: the kubeconfig is looked for under the empty HOME
    bare = run("plan", "-i", str(hosts), "--to", TARGET)
    assert bare.returncode != 0
    # with them: facts and plan from every node, nothing read from HOME
    plan = run("plan", "-i", str(hosts), "--to", TARGET, "--json", *access)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    doc = json.loads(plan.stdout)
    assert {e["name"] for e in doc["nodes"]} == {"cp-1", "w-1"} and doc["blocked"] is False
    out = tmp_path / "facts.json"
    facts = run("facts", "-i", str(hosts), "-o", str(out), *access)
    assert facts.returncode == 0, facts.stderr
    assert {n["name"]: n["kubelet"] for n in json.loads(out.read_text())["nodes"]} == {
        "cp-1": "v1.27.8",
        "w-1": "v1.27.8",
    }
    status = run("status", "-i", str(hosts), *access)
    assert status.returncode == 0, status.stderr
    assert "Cluster lock: free" in status.stdout  # the Lease was read with --kubeconfig
    assert os.listdir(home) == []  # nothing was written to (or needed from) HOME
    wrong = run("plan", "-i", str(hosts), "--to", TARGET, "--kubeconfig", str(tmp_path / "nope"))
    assert wrong.returncode == 2 and wrong.stderr.strip().endswith("nope: no such file")
