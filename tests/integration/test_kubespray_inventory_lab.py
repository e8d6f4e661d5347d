"""A Kubespray (Ansible YAML) inventory against the lab, with ``HOME`` an empty directory and
no ``KUBECONFIG`` (issue "Operator experience": a Kubespray inventory works without touching
``HOME`` or ``KUBECONFIG``): the kubeconfig and known_hosts come from ``--kubeconfig`` and
``--known-hosts``, or from ``upgrader_*`` variables in ``all.vars`` with every other native
setting (ssh defaults, packages, release checksums); the plan's hints name those variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from apply_kit import TARGET, Lab, all_at, cluster_spec, one_worker_lab
from cli_run import cli_env

pytestmark = pytest.mark.integration


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


def _kubespray_with_upgrader_vars(lab: Lab, dest: Path) -> Path:
    """The lab's native inventory as hosts.yaml whose hosts say only ``ansible_host``: every
    ``kubeconfig``, ``ssh`` and ``packages`` key is an ``upgrader_<section>_<key>`` variable
    in ``all.vars`` (paths made absolute: the file lives elsewhere)."""
    native = yaml.safe_load(lab.inventory.read_text())
    all_vars: dict[str, object] = {"cluster_name": native["cluster"]["name"]}
    for section in ("kubeconfig", "ssh", "packages"):
        for key, value in native[section].items():
            if value is None:
                continue
            if isinstance(value, str) and value.startswith("./"):
                value = str((lab.inventory.parent / value).resolve())
            all_vars[f"upgrader_{section}_{key}"] = value
    assert "upgrader_packages_release_checksums" in all_vars  # a local directory
    hosts = {n["name"]: {"ansible_host": n["address"]} for n in native["nodes"]}
    cps = [n["name"] for n in native["nodes"] if n["role"] == "control-plane"]
    doc = {
        "all": {
            "hosts": hosts,
            "vars": all_vars,
            "children": {
                "kube_control_plane": {"hosts": dict.fromkeys(cps, None)},
                "kube_node": {"hosts": {h: None for h in hosts if h not in cps}},
            },
        }
    }
    dest.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


def _runner(tmp_path: Path) -> tuple[Path, Callable[..., subprocess.CompletedProcess[str]]]:
    """An empty HOME, no KUBECONFIG, and a runner of the real CLI in that environment."""
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

    return home, run


def _paths(lab: Lab) -> tuple[Path, Path]:
    native = yaml.safe_load(lab.inventory.read_text())
    base = lab.inventory.parent
    return (base / native["kubeconfig"]["path"]).resolve(), (
        base / native["ssh"]["known_hosts"]
    ).resolve()


def test_a_kubespray_inventory_needs_no_home_and_no_kubeconfig_variable(
    make_lab: Callable[..., Lab], tmp_path: Path
) -> None:
    lab = make_lab(cluster_spec("v1.27.8", workers=1))
    hosts = _kubespray_file(lab, tmp_path / "hosts.yaml")
    kubeconfig, known_hosts = _paths(lab)
    home, run = _runner(tmp_path)
    access = ("--kubeconfig", str(kubeconfig), "--known-hosts", str(known_hosts))
    # without the flags: the kubeconfig is looked for under the empty HOME
    bare = run("plan", "-i", str(hosts), "--to", TARGET)
    assert bare.returncode != 0
    # ... and the error says where to name one, in the Kubespray form
    assert "no such file (give --kubeconfig (or upgrader_kubeconfig_path in all.vars" in bare.stderr
    # with them: facts and plan from every node, nothing read from HOME
    plan = run("plan", "-i", str(hosts), "--to", TARGET, "--json", *access)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    doc = json.loads(plan.stdout)
    assert {e["name"] for e in doc["nodes"]} == {"cp-1", "w-1"} and doc["blocked"] is False
    # no checksums configured: the hint names the all.vars variable, not the native key
    fixes = {f["code"]: f["fix"] for f in doc["findings"]}
    assert fixes["CHECKSUMS_UNAVAILABLE"].startswith(
        "set upgrader_packages_release_checksums in all.vars of the inventory"
    )
    assert "packages.release_checksums" not in fixes["CHECKSUMS_UNAVAILABLE"]
    # the brief plan an operator reads says it the same way
    brief = run("plan", "-i", str(hosts), "--to", TARGET, *access)
    assert brief.returncode == 0, brief.stdout + brief.stderr
    assert "      fix: set upgrader_packages_release_checksums in all.vars" in brief.stdout
    assert "packages.release_checksums" not in brief.stdout
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


def test_upgrader_variables_carry_the_settings_without_flags_home_or_kubeconfig(
    make_lab: Callable[..., Lab], tmp_path: Path
) -> None:
    """Kubeconfig, known_hosts, the ssh defaults (user, port, key, sudo, policy) and the
    packages (repository, release checksums from a local directory) all from ``upgrader_*``
    variables: plan verifies the binaries and apply upgrades, with no flag and no HOME."""
    lab = make_lab(one_worker_lab())  # one worker: nothing a PDB would hold
    hosts = _kubespray_with_upgrader_vars(lab, tmp_path / "hosts.yaml")
    home, run = _runner(tmp_path)

    plan = run("plan", "-i", str(hosts), "--to", TARGET, "--json")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    doc = json.loads(plan.stdout)
    assert doc["blocked"] is False
    assert "CHECKSUMS_UNAVAILABLE" not in {f["code"] for f in doc["findings"]}
    verify = {s["node"] for e in doc["nodes"] for s in e["steps"] if s["name"] == "verify-binaries"}
    assert verify == {"cp-1", "w-1"}  # the checksums directory was read

    apply = run(
        "apply", "-i", str(hosts), "--to", TARGET, "--yes",
        "--playbooks", str(lab.work / "playbooks"),
    )  # fmt: skip
    assert apply.returncode == 0, apply.stdout + apply.stderr
    all_at(lab)
    assert os.listdir(home) == []
