"""``upgrader_*`` variables in a Kubespray inventory: every native setting without a flag
can be given there (cluster-wide ones in ``all.vars``, per-node ones in host or group vars
too), Kubespray's own variables keep their meaning, bad or unknown variables are one-line
errors pointing into the file, and hints name the setting in the form of the file."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from refusal import refusal

from upgrader.core.model import Facts
from upgrader.core.parsers import Section
from upgrader.core.planner import CHECKSUMS_UNAVAILABLE, PlanOptions, build_plan
from upgrader.core.playbook import load_playbooks
from upgrader.core.policy import PolicyOptions
from upgrader.core.releases import load_release_data
from upgrader.core.settings import BY_KEY, SETTINGS, SettingHints
from upgrader.core.versions import KubeVersion
from upgrader.gather import interpret_sections
from upgrader.inventory import Inventory, load_inventory
from upgrader.inventory.schema import DrainSpec, InventoryDocument, NodeSpec

FACTS = Path(__file__).resolve().parents[1] / "data" / "facts"


def _doc(all_vars: dict[str, Any], hosts: dict[str, Any] | None = None, **groups: Any) -> Any:
    hosts = hosts or {"cp1": {"ansible_host": "10.0.0.1"}, "w1": {"ansible_host": "10.0.0.2"}}
    return {
        "all": {
            "hosts": hosts,
            "vars": all_vars,
            "children": {
                "kube_control_plane": {"hosts": {"cp1": None}},
                "kube_node": {"hosts": {h: None for h in hosts if h != "cp1"}, **groups},
            },
        }
    }


def _write(tmp_path: Path, data: Any, name: str = "hosts.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _load(path: Path) -> Inventory:
    return load_inventory(path, ssh_config_path=path.parent / "no-ssh-config")


def _error(path: Path) -> str:
    return refusal(_load, path)


def test_every_native_setting_has_a_variable() -> None:
    """The table covers the native schema: each section key, and each node key that is
    not the node's identity (name, address, role come from the groups and ansible_host)."""
    sections = {"cluster", "kubeconfig", "ssh", "packages", "kubeadm", "drain", "workers", "images"}
    native = {
        f"{s}.{k}"
        for s in sections
        for k in InventoryDocument.model_fields[s].annotation.model_fields  # type: ignore[union-attr]
    }
    assert native == set(BY_KEY)
    per_node = set(NodeSpec.model_fields) - {"name", "address", "role", "drain"}
    per_node |= {f"drain.{k}" for k in DrainSpec.model_fields}  # a nested node field
    assert per_node == {s.node_field for s in SETTINGS if s.node_field}
    assert all(s.variable.startswith("upgrader_") for s in SETTINGS)


def test_cluster_wide_variables_map_to_the_native_keys(tmp_path: Path) -> None:
    (tmp_path / "sums").mkdir()
    all_vars = {
        "upgrader_cluster_name": "prod-eu",
        "cluster_name": "cluster.local",  # Kubespray's DNS domain: upgrader_* wins
        "upgrader_kubeconfig_path": "admin.conf",
        "upgrader_kubeconfig_context": "admin@prod",
        "upgrader_ssh_user": "ops",
        "upgrader_ssh_port": 2222,
        "upgrader_ssh_identity_file": "keys/id_ed25519",
        "upgrader_ssh_known_hosts": "known_hosts",
        "upgrader_ssh_host_key_policy": "accept-new",
        "upgrader_ssh_sudo": False,
        "upgrader_ssh_sudo_password_env": "PROD_SUDO_PASSWORD",
        "upgrader_ssh_connect_timeout": 4.5,
        "upgrader_ssh_keepalive": 0,
        "upgrader_ssh_jump_host": "jump@bastion.example.com:2200",
        "upgrader_ssh_use_ssh_config": False,
        "upgrader_packages_manager": "dnf",
        "upgrader_packages_repository": "custom",
        "upgrader_packages_url_template": "https://mirror.example.com/k8s/v{minor}/rpm/",
        "upgrader_packages_release_checksums": "sums",
    }
    inv = _load(_write(tmp_path, _doc(all_vars)))
    doc = inv.to_dict()
    assert doc["cluster"] == {"name": "prod-eu"}
    assert doc["kubeconfig"] == {"path": str(tmp_path / "admin.conf"), "context": "admin@prod"}
    assert doc["ssh"] == {
        "user": "ops",
        "port": 2222,
        "identity_file": str(tmp_path / "keys" / "id_ed25519"),
        "known_hosts": str(tmp_path / "known_hosts"),
        "host_key_policy": "accept-new",
        "sudo": False,
        "sudo_password_env": "PROD_SUDO_PASSWORD",
        "connect_timeout": 4.5,
        "keepalive": 0,
        "jump_host": "jump@bastion.example.com:2200",
        "use_ssh_config": False,
    }
    assert doc["packages"] == {
        "manager": "dnf",
        "repository": "custom",
        "url_template": "https://mirror.example.com/k8s/v{minor}/rpm/",
        "release_checksums": str(tmp_path / "sums"),
    }
    # all.vars are defaults, not per-node overrides
    assert all(n["user"] is None and n["package_manager"] is None for n in doc["nodes"])
    target = inv.ssh_target("w1")
    assert (target.user, target.port, target.known_hosts) == (
        "ops",
        2222,
        doc["ssh"]["known_hosts"],
    )
    assert target.settings_form == "kubespray"
    assert inv.kubeconfig_path() == tmp_path / "admin.conf" and inv.kubeconfig_hint is None


def test_per_node_variables_in_host_and_group_vars(tmp_path: Path) -> None:
    hosts = {
        "cp1": {"ansible_host": "10.0.0.1", "upgrader_node_labels": {"zone": "a"}},
        "w1": {
            "ansible_host": "10.0.0.2",
            "upgrader_ssh_user": "admin",
            "upgrader_ssh_port": "2201",  # a string of digits, as for ansible_port
            "upgrader_ssh_identity_file": "w1.key",
            "upgrader_ssh_sudo": False,
            "upgrader_ssh_jump_host": "none",
            "upgrader_packages_manager": "yum",
        },
        "w2": {"ansible_host": "10.0.0.3"},
    }
    data = _doc({"upgrader_node_labels": {"team": "infra"}}, hosts)
    data["all"]["children"]["kube_node"]["vars"] = {"upgrader_packages_manager": "dnf"}
    inv = _load(_write(tmp_path, data))
    w1, w2, cp1 = inv.node("w1"), inv.node("w2"), inv.node("cp1")
    assert (w1.user, w1.port, w1.sudo, w1.jump_host) == ("admin", 2201, False, "none")
    assert w1.identity_file == tmp_path / "w1.key"
    assert inv.package_manager_for(w1) == "yum"  # host vars beat group vars
    assert inv.package_manager_for(w2) == "dnf"  # kube_node's group vars
    assert inv.package_manager_for(cp1) == "apt"  # the native default
    assert cp1.labels == {"zone": "a"}  # host vars beat all.vars
    assert w2.labels == {"team": "infra"}  # all.vars labels apply to every node


def test_upgrader_variables_win_over_ansible_ones_on_the_same_level(tmp_path: Path) -> None:
    hosts = {
        "cp1": {"ansible_host": "10.0.0.1", "ansible_user": "root"},
        "w1": {"ansible_host": "10.0.0.2", "ansible_user": "a", "upgrader_ssh_user": "b"},
    }
    all_vars = {
        "ansible_user": "ubuntu",
        "upgrader_ssh_user": "ops",
        "ansible_port": 22,
        "upgrader_ssh_port": 2022,
        "ansible_become": False,
    }
    inv = _load(_write(tmp_path, _doc(all_vars, hosts)))
    assert inv.to_dict()["ssh"]["user"] == "ops"  # all.vars: upgrader_ssh_user wins
    assert inv.to_dict()["ssh"]["port"] == 2022
    assert inv.ssh_target("cp1").user == "root"  # a host's ansible_user beats all.vars
    assert inv.ssh_target("w1").user == "b"  # host level: upgrader_ssh_user wins
    assert inv.ssh_target("w1").sudo is False  # ansible_become means ssh.sudo


def test_upgrader_jump_host_wins_over_the_bastion_group(tmp_path: Path) -> None:
    data = _doc({"upgrader_ssh_jump_host": "hop.example.com"})
    data["all"]["hosts"]["bastion"] = {"ansible_host": "203.0.113.7"}
    data["all"]["children"]["bastion"] = {"hosts": {"bastion": None}}
    jump = _load(_write(tmp_path, data)).ssh_target("w1").jump
    assert jump is not None and jump.host == "hop.example.com"


@pytest.mark.parametrize(
    ("all_vars", "host_vars", "expected"),
    [
        (
            {"upgrader_ssh_prot": 22},
            {},
            "all.vars.upgrader_ssh_prot: unknown upgrader_* variable "
            "(did you mean upgrader_ssh_port?)",
        ),
        (
            {},
            {"upgrader_packages_checksums": "/x"},
            "all.hosts.w1.upgrader_packages_checksums: unknown upgrader_* variable "
            "(did you mean upgrader_packages_release_checksums?)",
        ),
        (
            {},
            {"upgrader_ssh_known_hosts": "kh"},
            "all.hosts.w1.upgrader_ssh_known_hosts: a cluster-wide setting: only read from "
            "all.vars",
        ),
        (
            {"upgrader_ssh_host_key_policy": "trust-all"},
            {},
            "all.vars.upgrader_ssh_host_key_policy: 'trust-all' is not one of strict, accept-new",
        ),
        (
            {"upgrader_packages_release_checksums": "http://mirror.example.com/{binary}"},
            {},
            "all.vars.upgrader_packages_release_checksums: 'http://mirror.example.com/{binary}':"
            " checksums must come over https://",
        ),
        (
            {"upgrader_ssh_sudo": "yes"},
            {},
            "all.vars.upgrader_ssh_sudo: expected true or false, got a string ('yes')",
        ),
        (
            {},
            {"upgrader_ssh_port": 70000},
            "all.hosts.w1.upgrader_ssh_port: 70000 must be <= 65535",
        ),
        (
            {"upgrader_packages_url_template": "https://m.example.com/{minor}/"},
            {},
            "all.vars.upgrader_packages_url_template: only used with repository: custom",
        ),
        (
            {"upgrader_kubeconfig_context": "{{ kube_context }}"},
            {},
            "all.vars.upgrader_kubeconfig_context: uses Jinja templating",
        ),
        (
            {},
            {"upgrader_node_labels": {"zone": "{{ zone }}"}},
            "all.hosts.w1.upgrader_node_labels.zone: uses Jinja templating",
        ),
    ],
)
def test_bad_variables_are_one_line_errors_pointing_into_the_file(
    tmp_path: Path, all_vars: dict[str, Any], host_vars: dict[str, Any], expected: str
) -> None:
    hosts = {"cp1": {"ansible_host": "10.0.0.1"}, "w1": {"ansible_host": "10.0.0.2", **host_vars}}
    path = _write(tmp_path, _doc(all_vars, hosts))
    assert _error(path).startswith(f"{path}: {expected}")


def test_secrets_are_refused_without_echoing_them(tmp_path: Path) -> None:
    path = _write(tmp_path, _doc({"upgrader_sudo_password": "hunter2"}))
    message = _error(path)
    assert message.startswith(f"{path}: all.vars.upgrader_sudo_password: unknown upgrader_*")
    assert "upgrader_ssh_sudo_password_env" in message and "hunter2" not in message
    path = _write(tmp_path, _doc({"upgrader_ssh_sudo_password_env": "hunter2 is it"}))
    message = _error(path)
    assert "all.vars.upgrader_ssh_sudo_password_env: must name an environment variable" in message
    assert "hunter2" not in message


def test_an_unknown_variable_exits_2_before_anything_runs(tmp_path: Path) -> None:
    path = _write(tmp_path, _doc({"upgrader_ssh_usr": "ops"}))
    out = subprocess.run(
        [sys.executable, "-m", "upgrader", "plan", "-i", str(path), "--to", "v1.28.4"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "all.vars.upgrader_ssh_usr: unknown upgrader_* variable" in lines[0]
    assert "Traceback" not in out.stderr


# --------------------------------------------------------------------------- hints


def test_setting_hints_name_the_form_of_the_inventory() -> None:
    native, kubespray = SettingHints(), SettingHints("kubespray")
    key = "packages.release_checksums"
    assert native.where(key) == "packages.release_checksums in the inventory"
    assert (
        kubespray.where(key) == "upgrader_packages_release_checksums in all.vars of the inventory"
    )
    assert kubespray.where("ssh.known_hosts") == (
        "--known-hosts (or upgrader_ssh_known_hosts in all.vars of the inventory)"
    )
    assert native.where("nodes[].package_manager") == (
        "packages.manager (or the node's package_manager) in the inventory"
    )
    assert kubespray.where("nodes[].package_manager") == (
        "upgrader_packages_manager in the node's host vars (or all.vars) of the inventory"
    )


def test_the_inventory_says_its_hints_and_the_kubeconfig_hint(tmp_path: Path) -> None:
    inv = _load(_write(tmp_path, _doc({})))
    assert inv.setting_hint("ssh.sudo_password_env") == (
        "upgrader_ssh_sudo_password_env in all.vars of the inventory"
    )
    assert inv.kubeconfig_hint == (
        "--kubeconfig (or upgrader_kubeconfig_path in all.vars of the inventory)"
    )
    assert inv.with_access(kubeconfig=tmp_path / "k").kubeconfig_hint is None


def _plan(settings: SettingHints) -> Any:
    f = Facts.from_dict(json.loads((FACTS / "one-cp-two-workers.json").read_text()))
    return build_plan(
        f,
        KubeVersion.parse("v1.28.4"),
        load_playbooks(),
        load_release_data(FACTS / "releases.json"),
        PlanOptions(policy=PolicyOptions(today=date(2024, 6, 1)), settings=settings),
    )


def test_planner_fix_names_the_kubespray_variable() -> None:
    kubespray = [f for f in _plan(SettingHints("kubespray")).findings]
    fix = next(f.fix for f in kubespray if f.code == CHECKSUMS_UNAVAILABLE)
    assert fix is not None
    assert fix.startswith("set upgrader_packages_release_checksums in all.vars of the inventory")
    native = next(f.fix for f in _plan(SettingHints()).findings if f.code == CHECKSUMS_UNAVAILABLE)
    assert native is not None and native.startswith(
        "set packages.release_checksums in the inventory (a directory"
    )


def test_gathered_package_manager_mismatch_names_the_kubespray_variable() -> None:
    os_release = Section("os_release", 'ID=rocky\nID_LIKE="rhel centos fedora"\n', 0)
    native = interpret_sections("w1", "apt", {"os_release": os_release})
    kubespray = interpret_sections(
        "w1", "apt", {"os_release": os_release}, SettingHints("kubespray")
    )
    (n,) = [f for f in native.findings if f.code == "PACKAGE_MANAGER_MISMATCH"]
    (k,) = [f for f in kubespray.findings if f.code == "PACKAGE_MANAGER_MISMATCH"]
    assert n.fix == "set packages.manager (or the node's package_manager) in the inventory"
    assert k.fix == (
        "set upgrader_packages_manager in the node's host vars (or all.vars) of the inventory"
    )
