"""Inventory loading: native and Kubespray files, one-line errors, ssh_config merge."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from refusal import refusal

from upgrader.errors import ConfigError
from upgrader.inventory import (
    ClusterSpec,
    Inventory,
    InventoryDocument,
    KubeconfigSpec,
    NodeSpec,
    PackagesSpec,
    SSHDefaults,
    inventory_from_data,
    load_inventory,
)
from upgrader.transport.base import SSHTarget

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "inventories"


def base() -> dict[str, Any]:
    return {
        "cluster": {"name": "demo"},
        "ssh": {"user": "root", "use_ssh_config": False},
        "nodes": [
            {"name": "cp-1", "address": "10.0.0.5", "role": "control-plane"},
            {"name": "w-1", "address": "10.0.0.6", "role": "worker"},
            {"name": "w-2", "address": "10.0.0.7", "role": "worker"},
            {"name": "w-3", "address": "10.0.0.8", "role": "worker"},
        ],
    }


def write(tmp_path: Path, data: Any, name: str = "inv.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def load(path: Path, ssh_config: Path | None = None) -> Inventory:
    absent = path.parent / "no-ssh-config"
    return load_inventory(path, ssh_config_path=ssh_config or absent)


def error_of(path: Path, ssh_config: Path | None = None) -> str:
    return refusal(load, path, ssh_config)


# --------------------------------------------------------------------------- good files


def test_example_file_loads() -> None:
    inv = load(REPO / "inventory.example.yaml")
    assert inv.cluster_name == "demo"
    assert [n.name for n in inv.control_planes] == ["cp-1", "cp-2", "cp-3"]
    assert [n.name for n in inv.workers] == ["worker-1", "worker-2"]
    assert inv.package_manager_for("worker-2") == "dnf"
    assert inv.package_manager_for(inv.node("cp-1")) == "apt"
    assert inv.kubeconfig_path() == REPO / "kubeconfig"
    target = inv.ssh_target("worker-2")
    assert (target.host, target.port, target.user) == ("worker-2.example.internal", 2222, "admin")
    assert target.identity_file == str(Path("~/.ssh/worker_admin").expanduser())


def test_native_fixture_api() -> None:
    inv = load(DATA / "native.yaml")
    assert inv.source_format == "native"
    assert inv.source_path == (DATA / "native.yaml").resolve()
    assert inv.cluster_name == "lab"
    assert all(isinstance(n, NodeSpec) for n in inv.nodes)
    assert isinstance(inv.nodes, tuple)
    assert inv.first_control_plane.name == "cp-1"
    assert [n.name for n in inv.workers] == ["w-1", "w-2"]
    assert inv.node("w-2").address == "::1"
    assert inv.kubeconfig_path() == DATA / "kubeconfig"
    assert inv.kubeconfig_context == "kubernetes-admin@lab"
    assert inv.repository.flavour == "pkgs.k8s.io"
    assert inv.repository.url_template is None
    assert inv.package_manager_for("w-2") == "dnf"
    target = inv.ssh_target(inv.node("w-1"))
    assert target == SSHTarget(
        node="w-1",
        host="127.0.0.4",
        port=2222,
        user="admin",
        identity_file=str(DATA / "id_ed25519"),
        known_hosts=str(DATA / "known_hosts"),
        host_key_policy="strict",
        sudo=True,
        connect_timeout=5.0,
    )
    assert inv.ssh_target("w-2").port == 2200


def test_unknown_node_name_is_a_config_error(tmp_path: Path) -> None:
    inv = load(write(tmp_path, base()))
    with pytest.raises(ConfigError, match=r"inv\.yaml: nodes: no node named 'w-9'"):
        inv.node("w-9")
    with pytest.raises(ConfigError):
        inv.ssh_target("w-9")


def test_relative_paths_resolve_against_the_inventory_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    data = base()
    data["ssh"].update(identity_file="keys/id", known_hosts="~/kh")
    data["kubeconfig"] = {"path": "../admin.conf"}
    data["packages"] = {"release_checksums": "sums"}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    inv = load(write(sub, data))
    assert inv.ssh_target("cp-1").identity_file == str(sub / "keys" / "id")
    assert inv.ssh_target("cp-1").known_hosts == str(tmp_path / "home" / "kh")
    assert inv.kubeconfig_path() == sub / ".." / "admin.conf"
    assert inv.release_checksums == str(sub / "sums")


def test_custom_repository_and_checksum_url(tmp_path: Path) -> None:
    data = base()
    template = "https://mirror.example.com/k8s/core:/stable:/v{minor}/deb/"
    data["packages"] = {
        "manager": "apt",
        "repository": "custom",
        "url_template": template,
        "release_checksums": "https://mirror.example.com/{version}/bin/linux/{arch}/{binary}.sha256",
    }
    inv = load(write(tmp_path, data))
    assert inv.repository.flavour == "custom"
    assert inv.repository.url_template == template
    assert inv.repository.url_for("1.29") == (
        "https://mirror.example.com/k8s/core:/stable:/v1.29/deb/"
    )
    assert inv.release_checksums is not None
    assert inv.release_checksums.startswith("https://")


def test_ipv6_and_hostname_addresses(tmp_path: Path) -> None:
    data = base()
    data["nodes"][1]["address"] = "[2001:db8:0::1]"
    data["nodes"][2]["address"] = "w-2.example.internal"
    inv = load(write(tmp_path, data))
    assert inv.node("w-1").address == "2001:db8::1"
    assert inv.node("w-2").address == "w-2.example.internal"


def test_same_address_on_different_ports_is_fine(tmp_path: Path) -> None:
    data = base()
    data["nodes"][1].update(address="10.0.0.5", port=2201)
    inv = load(write(tmp_path, data))
    assert [inv.ssh_target(n).port for n in ("cp-1", "w-1")] == [22, 2201]


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(
        "cluster: {name: demo}\n"
        "ssh: {use_ssh_config: false}\n"
        "x-node: &n {role: worker, port: 2200}\n"
        "nodes:\n"
        "  - {name: cp-1, address: 10.0.0.1, role: control-plane}\n"
        "  - {<<: *n, name: w-1, address: 10.0.0.2, port: 2201}\n",
        encoding="utf-8",
    )
    # the anchor's carrier key is unknown: that, not a duplicate, is the error
    assert error_of(path) == f"{path}: x-node: unknown key"
    path.write_text(
        "cluster: {name: demo}\n"
        "ssh: {use_ssh_config: false}\n"
        "nodes:\n"
        "  - &n {name: cp-1, address: 10.0.0.1, role: control-plane}\n"
        "  - {<<: *n, name: w-1, address: 10.0.0.2, role: worker}\n",
        encoding="utf-8",
    )
    inv = load(path)
    assert inv.node("w-1").role == "worker"


# --------------------------------------------------------------------------- error lines


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    cur: Any = data
    for part in parents:
        cur = cur[int(part)] if part.isdigit() else cur.setdefault(part, {})
    if last.isdigit():
        cur[int(last)] = value
    else:
        cur[last] = value


ERROR_CASES = [
    (
        "nodes.2.role",
        "master",
        "nodes[2].role: 'master' is not one of control-plane, worker",
    ),
    ("ssh.prot", 22, "ssh.prot: unknown key"),
    ("nodes.3.name", "w-1", "nodes[3].name: duplicate node name 'w-1' (also nodes[1])"),
    (
        "nodes.2.address",
        "10.0.0.5",
        "nodes[2].address: duplicate address 10.0.0.5:22 (also nodes[0])",
    ),
    (
        "nodes.0.name",
        "Node_1",
        "nodes[0].name: 'Node_1' is not a DNS-1123 subdomain "
        "(a valid Kubernetes node name: lowercase letters, digits, '-' and '.')",
    ),
    ("nodes.0.role", "worker", "nodes: no control-plane node"),
    (
        "nodes.1.address",
        "10.0.0.6; reboot",
        "nodes[1].address: '10.0.0.6; reboot' is not an IPv4 address, IPv6 address or hostname",
    ),
    (
        "nodes.1.address",
        "bad host",
        "nodes[1].address: 'bad host' is not an IPv4 address, IPv6 address or hostname",
    ),
    (
        "nodes.1.address",
        "10.0.0.256",
        "nodes[1].address: '10.0.0.256' is not an IPv4 address, IPv6 address or hostname",
    ),
    (
        "nodes.1.address",
        "$(id)",
        "nodes[1].address: '$(id)' is not an IPv4 address, IPv6 address or hostname",
    ),
    (
        "nodes.1.address",
        "-oProxyCommand=id",
        "nodes[1].address: '-oProxyCommand=id' is not an IPv4 address, IPv6 address or hostname",
    ),
    ("nodes.1.user", "-lroot", "nodes[1].user: '-lroot' is not a valid user name"),
    ("nodes.1.user", "root;id", "nodes[1].user: 'root;id' is not a valid user name"),
    ("nodes.1.port", 70000, "nodes[1].port: 70000 must be <= 65535"),
    ("ssh.port", "22", "ssh.port: expected an integer, got a string ('22')"),
    ("ssh.sudo", "maybe", "ssh.sudo: expected true or false, got a string ('maybe')"),
    (
        "ssh.host_key_policy",
        "yolo",
        "ssh.host_key_policy: 'yolo' is not one of strict, accept-new",
    ),
    ("ssh.connect_timeout", 0, "ssh.connect_timeout: 0 must be > 0"),
    (
        "ssh.jump_host",
        "bastion@jump:http",
        "ssh.jump_host: 'bastion@jump:http': port 'http' is not a number from 1 to 65535",
    ),
    (
        "packages.manager",
        "zypper",
        "packages.manager: 'zypper' is not one of apt, dnf, yum, dnf5",
    ),
    (
        "packages.repository",
        "custom",
        "packages.url_template: required when repository is custom",
    ),
    (
        "packages.url_template",
        "https://mirror.example.com/v{minor}/deb/",
        "packages.url_template: only used with repository: custom (repository is pkgs.k8s.io)",
    ),
    (
        "packages.release_checksums",
        "http://mirror.example.com/{version}",
        "packages.release_checksums: 'http://mirror.example.com/{version}': "
        "checksums must come over https://",
    ),
    ("nodes.1.labels", {"zone": 1}, "nodes[1].labels.zone: expected a string, got 1"),
    (
        "nodes.1.labels",
        {"bad key": "x"},
        "nodes[1].labels['bad key']: label key 'bad key' is not valid (letters, digits, '-._/')",
    ),
    ("nodes", [], "nodes: must not be empty"),
    ("nodes", "cp-1", "nodes: expected a list, got a string ('cp-1')"),
    ("ssh", ["root"], "ssh: expected a mapping, got a list"),
    (
        "cluster.name",
        "my cluster",
        "cluster.name: 'my cluster' is not a valid cluster name "
        "(letters, digits, '-', '_' and '.')",
    ),
    (
        "ssh.sudo_password",
        "hunter2",
        "ssh.sudo_password: unknown key "
        "(secrets never go in the inventory: name an environment variable instead)",
    ),
]


@pytest.mark.parametrize(("field", "value", "expected"), ERROR_CASES, ids=lambda x: str(x)[:30])
def test_error_is_one_line_naming_file_and_field(
    tmp_path: Path, field: str, value: Any, expected: str
) -> None:
    data = base()
    _set(data, field, value)
    path = write(tmp_path, data)
    assert error_of(path) == f"{path}: {expected}"


def test_ipv6_duplicate_address_is_bracketed(tmp_path: Path) -> None:
    data = base()
    data["nodes"][0]["address"] = "::1"
    data["nodes"][3]["address"] = "0:0::1"
    path = write(tmp_path, data)
    assert error_of(path) == f"{path}: nodes[3].address: duplicate address [::1]:22 (also nodes[0])"


def test_missing_required_keys(tmp_path: Path) -> None:
    data = base()
    del data["nodes"][1]["name"]
    path = write(tmp_path, data)
    assert error_of(path) == f"{path}: nodes[1].name: missing required key"
    data = base()
    del data["cluster"]
    path = write(tmp_path, data)
    assert error_of(path) == f"{path}: cluster: missing required key"


def test_url_template_needs_minor(tmp_path: Path) -> None:
    data = base()
    data["packages"] = {"repository": "custom", "url_template": "https://m.example.com/deb/"}
    path = write(tmp_path, data)
    assert error_of(path) == (
        f"{path}: packages.url_template: 'https://m.example.com/deb/' must contain {{minor}} "
        "and no other placeholder"
    )


def test_secret_like_values_are_not_echoed(tmp_path: Path) -> None:
    data = base()
    data["ssh"]["sudo_password_env"] = "s3cr3t pa$$"
    path = write(tmp_path, data)
    message = error_of(path)
    assert message.startswith(f"{path}: ssh.sudo_password_env: must name an environment variable")
    assert "s3cr3t" not in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "file is empty"),
        ("   \n# only a comment\n", "file is empty"),
        ("---\n", "file is empty"),
        ("- a\n- b\n", "top level must be a mapping, got a list"),
        ("just text\n", "top level must be a mapping, got a string"),
        ("cluster: {name: demo\n", "line 2, column 1: not valid YAML: "),
        ("a: 1\nb: [\n", "not valid YAML"),
        ("cluster: {name: a}\ncluster: {name: b}\n", "line 2, column 1: duplicate key 'cluster'"),
        ("x: !!python/object:os.system {}\n", "not valid YAML"),
    ],
)
def test_file_level_errors(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(content, encoding="utf-8")
    message = error_of(path)
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert error_of(missing) == f"{missing}: cannot read: No such file or directory"
    assert error_of(tmp_path) == f"{tmp_path}: cannot read: is a directory"
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert error_of(binary) == f"{binary}: cannot read: not UTF-8 text"


def test_error_names_the_file_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = base()
    data["ssh"]["prot"] = 1
    write(tmp_path, data)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_inventory("inv.yaml", ssh_config_path=tmp_path / "absent")
    assert str(info.value) == "inv.yaml: ssh.prot: unknown key"


# --------------------------------------------------------------------------- kubeconfig


def test_kubeconfig_env_and_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = base()
    inv = load(write(tmp_path, data))
    first, second = tmp_path / "a.conf", tmp_path / "b.conf"
    monkeypatch.setenv("KUBECONFIG", f"{os.pathsep}{first}{os.pathsep}{second}")
    assert inv.kubeconfig_path() == first
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert inv.kubeconfig_path() == tmp_path / "home" / ".kube" / "config"
    data["kubeconfig"] = {"path": "admin.conf", "context": "ctx"}
    monkeypatch.setenv("KUBECONFIG", str(first))
    explicit = load(write(tmp_path, data))
    assert explicit.kubeconfig_path() == tmp_path / "admin.conf"
    assert explicit.kubeconfig_context == "ctx"


# --------------------------------------------------------------------------- ssh


SSH_CONFIG = """\
Host cp-alias
    HostName 192.0.2.10
    User sshcfg-user
    Port 2022
    IdentityFile {home}/.ssh/id_sshcfg
    ProxyJump hopper@bastion.example.com:2200

Host bastion.example.com
    HostName 198.51.100.1
    IdentityFile {home}/.ssh/id_bastion

Host w-alias
    HostName w.example.internal
"""


def _ssh_inventory(tmp_path: Path) -> tuple[Path, Path]:
    home = tmp_path / "home"
    config = tmp_path / "ssh_config"
    config.write_text(SSH_CONFIG.format(home=home), encoding="utf-8")
    data = base()
    data["ssh"] = {
        "user": "default-user",
        "port": 22,
        "identity_file": "default_key",
        "known_hosts": "known_hosts",
        "host_key_policy": "accept-new",
        "sudo_password_env": "SUDO_PW",
        "connect_timeout": 7,
        "jump_host": "inv-jump@203.0.113.5:2222",
    }
    data["nodes"][0]["address"] = "cp-alias"
    data["nodes"][1].update(
        address="cp-alias", port=2201, user="node-user", identity_file="node_key", sudo=False
    )
    data["nodes"][2]["address"] = "w-alias"
    return write(tmp_path, data), config


def test_ssh_config_is_honoured(tmp_path: Path) -> None:
    path, config = _ssh_inventory(tmp_path)
    inv = load(path, ssh_config=config)
    home = tmp_path / "home"
    cp = inv.ssh_target("cp-1")
    # a Host block naming the address beats the inventory defaults (Host * would not)
    assert (cp.host, cp.port, cp.user) == ("192.0.2.10", 2022, "sshcfg-user")
    assert cp.identity_file == str(home / ".ssh" / "id_sshcfg")
    # settings ssh_config does not cover come from the inventory
    assert cp.known_hosts == str(tmp_path / "known_hosts")
    assert cp.host_key_policy == "accept-new"
    assert cp.sudo_password_env == "SUDO_PW"
    assert cp.connect_timeout == 7.0
    # ProxyJump beats the inventory's jump_host; the hop is itself looked up in ssh_config
    assert cp.jump == SSHTarget(
        node="jump bastion.example.com",
        host="198.51.100.1",
        port=2200,
        user="hopper",
        identity_file=str(home / ".ssh" / "id_bastion"),
        known_hosts=str(tmp_path / "known_hosts"),
        host_key_policy="accept-new",
        sudo=False,
        connect_timeout=7.0,
    )


def test_ssh_target_precedence_node_beats_ssh_config_beats_defaults(tmp_path: Path) -> None:
    path, config = _ssh_inventory(tmp_path)
    inv = load(path, ssh_config=config)
    node = inv.ssh_target("w-1")  # same alias as cp-1, with its own overrides
    assert node.host == "192.0.2.10"
    assert (node.port, node.user) == (2201, "node-user")
    assert node.identity_file == str(tmp_path / "node_key")
    assert node.sudo is False
    w2 = inv.ssh_target("w-2")  # alias with HostName only: the rest from the defaults
    assert (w2.host, w2.port, w2.user) == ("w.example.internal", 22, "default-user")
    assert w2.identity_file == str(tmp_path / "default_key")
    assert w2.sudo is True
    assert w2.jump is not None
    assert (w2.jump.host, w2.jump.port, w2.jump.user) == ("203.0.113.5", 2222, "inv-jump")
    plain = inv.ssh_target("w-3")  # not in ssh_config at all
    assert (plain.host, plain.port, plain.user) == ("10.0.0.8", 22, "default-user")


def test_use_ssh_config_false_ignores_it(tmp_path: Path) -> None:
    path, config = _ssh_inventory(tmp_path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["ssh"]["use_ssh_config"] = False
    inv = load(write(tmp_path, data), ssh_config=config)
    cp = inv.ssh_target("cp-1")
    assert (cp.host, cp.port, cp.user) == ("cp-alias", 22, "default-user")
    assert cp.jump is not None and cp.jump.host == "203.0.113.5"


def test_missing_ssh_config_is_fine_and_bad_one_is_named(tmp_path: Path) -> None:
    data = base()
    data["ssh"]["use_ssh_config"] = True
    path = write(tmp_path, data)
    assert load(path, ssh_config=tmp_path / "absent").ssh_target("cp-1").host == "10.0.0.5"
    bad = tmp_path / "ssh_config"
    bad.write_text("Host 10.0.0.5\n    Port twenty\n", encoding="utf-8")
    message = error_of(path, ssh_config=bad)
    assert message == f"{bad}: Host 10.0.0.5: Port 'twenty' is not a number from 1 to 65535"
    bad.write_text("Host 10.0.0.5\n    HostName evil;reboot\n", encoding="utf-8")
    assert error_of(path, ssh_config=bad).startswith(f"{bad}: Host 10.0.0.5: 'evil;reboot' is not")


def test_jump_host_forms(tmp_path: Path) -> None:
    data = base()
    data["ssh"]["jump_host"] = "first.example.com,ops@[2001:db8::7]:2022"
    data["nodes"][1]["jump_host"] = "none"
    data["nodes"][2]["jump_host"] = "solo.example.com"
    inv = load(write(tmp_path, data))
    chain = inv.ssh_target("cp-1").jump
    assert chain is not None
    assert (chain.host, chain.port, chain.user) == ("2001:db8::7", 2022, "ops")
    assert chain.jump is not None
    assert (chain.jump.host, chain.jump.port, chain.jump.user) == ("first.example.com", 22, "root")
    assert chain.jump.jump is None
    assert inv.ssh_target("w-1").jump is None
    solo = inv.ssh_target("w-2").jump
    assert solo is not None and (solo.host, solo.jump) == ("solo.example.com", None)


# --------------------------------------------------------------------------- kubespray


def test_kubespray_inventory_layout() -> None:
    inv = load(DATA / "kubespray-inventory.yaml")
    assert inv.source_format == "kubespray"
    assert inv.cluster_name == "kubespray-inventory"  # no cluster_name var: the file stem
    # node2 is in kube_control_plane and kube_node: a control-plane node
    assert [n.name for n in inv.control_planes] == ["node1", "node2"]
    assert [n.name for n in inv.workers] == ["node3", "node4", "node5", "node6"]
    assert inv.first_control_plane.name == "node1"
    assert "bastion" not in {n.name for n in inv.nodes}
    node4 = inv.ssh_target("node4")
    assert (node4.host, node4.port, node4.user) == ("95.54.0.15", 2222, "ubuntu")
    assert node4.identity_file == str(DATA / "keys" / "id_ed25519")
    assert inv.ssh_target("node5").user == "admin"
    assert node4.jump is not None
    assert (node4.jump.host, node4.jump.user, node4.jump.port) == ("203.0.113.7", "jumper", 22)
    # all.vars became the defaults; only real per-host differences are node overrides
    assert inv.to_dict()["ssh"]["user"] == "ubuntu"
    assert inv.node("node1").user is None
    assert inv.node("node5").user == "admin"


def test_kubespray_hosts_under_groups_with_old_names() -> None:
    inv = load(DATA / "kubespray-hosts.yaml")
    assert inv.cluster_name == "prod.local"
    assert [n.name for n in inv.control_planes] == ["master-1", "master-2"]
    assert [n.name for n in inv.workers] == ["worker-1", "worker-2"]
    m1, m2 = inv.ssh_target("master-1"), inv.ssh_target("master-2")
    assert (m1.host, m1.port) == ("192.168.10.11", 22)  # ansible_ssh_host alias
    assert m1.user == "ubuntu"  # master-1 is in kube-node too, whose vars are deeper
    assert m2.user == "kube"  # k8s-cluster group vars
    w1 = inv.ssh_target("worker-1")
    assert (w1.host, w1.port, w1.user) == ("192.168.10.21", 2201, "ubuntu")
    w2 = inv.ssh_target("worker-2")
    assert w2.identity_file == str(Path("~/.ssh/worker2").expanduser())
    assert w2.jump is None


def _kubespray(hosts: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "all": {
            "hosts": hosts,
            "children": {
                "kube_control_plane": {"hosts": {"node1": None}},
                "kube_node": {"hosts": {h: None for h in hosts if h != "node1"}},
                **extra,
            },
        }
    }


@pytest.mark.parametrize(
    ("hosts", "extra", "expected"),
    [
        (
            {"node1": {"ansible_host": "10.0.0.1"}, "Node_2": {"ansible_host": "10.0.0.2"}},
            {},
            "all.hosts.Node_2: 'Node_2' is not a DNS-1123 subdomain",
        ),
        (
            {"node1": {"ansible_host": "10.0.0.1"}, "node2": {"ansible_host": "10.0.0.1"}},
            {},
            "all.hosts.node2.ansible_host: duplicate address 10.0.0.1:22 (also all.hosts.node1)",
        ),
        (
            {"node1": {"ansible_host": "10.0.0.1"}, "node2": {"ansible_port": "ssh"}},
            {},
            "all.hosts.node2.ansible_port: expected an integer, got a string ('ssh')",
        ),
        (
            {"node1": {"ansible_host": "{{ lookup('env', 'IP') }}"}},
            {},
            "all.hosts.node1.ansible_host: uses Jinja templating",
        ),
        (
            {"node1": None},
            {"etcd": {"hostz": {}}},
            "all.children.etcd.hostz: unknown key (expected hosts, vars, children)",
        ),
        (
            {"node1": ["10.0.0.1"]},
            {},
            "all.hosts.node1: expected a mapping of variables, got list",
        ),
    ],
)
def test_kubespray_errors_point_into_the_kubespray_file(
    tmp_path: Path, hosts: dict[str, Any], extra: dict[str, Any], expected: str
) -> None:
    path = write(tmp_path, _kubespray(hosts, **extra), "hosts.yaml")
    message = error_of(path)
    assert message.startswith(f"{path}: {expected}")


def test_kubespray_without_control_plane(tmp_path: Path) -> None:
    data: dict[str, Any] = {
        "all": {"hosts": {"n1": None}, "children": {"kube_node": {"hosts": {"n1": None}}}}
    }
    path = write(tmp_path, data, "hosts.yaml")
    assert error_of(path) == f"{path}: all.children: no kube_control_plane (or kube-master) group"
    data["all"]["children"]["kube_control_plane"] = {"hosts": {}}
    path = write(tmp_path, data, "hosts.yaml")
    assert error_of(path) == f"{path}: all.children.kube_control_plane: no hosts in this group"


def test_kubespray_override_hostname_names_the_node(tmp_path: Path) -> None:
    hosts = {
        "node1": {"ansible_host": "10.0.0.1", "kube_override_hostname": "cp-a.example.internal"},
        "node2": {"ansible_host": "10.0.0.2"},
    }
    inv = load(write(tmp_path, _kubespray(hosts), "prod.yaml"))
    assert inv.cluster_name == "prod"
    assert [n.name for n in inv.nodes] == ["cp-a.example.internal", "node2"]
    assert inv.ssh_target("cp-a.example.internal").host == "10.0.0.1"


def test_ssh_config_proxyjump_none_disables_the_inventory_jump(tmp_path: Path) -> None:
    data = base()
    data["ssh"].update(use_ssh_config=True, jump_host="bastion.example.com")
    config = tmp_path / "ssh_config"
    config.write_text("Host 10.0.0.6\n    ProxyJump none\n", encoding="utf-8")
    inv = load(write(tmp_path, data), ssh_config=config)
    assert inv.ssh_target("w-1").jump is None
    cp_jump = inv.ssh_target("cp-1").jump
    assert cp_jump is not None and cp_jump.host == "bastion.example.com"


# --------------------------------------------------------------------------- fingerprint


def test_fingerprint_is_stable_across_key_order_and_explicit_defaults(tmp_path: Path) -> None:
    a = load(write(tmp_path, base(), "a.yaml"))
    reordered = {k: v for k, v in reversed(list(base().items()))}
    reordered["nodes"] = [dict(reversed(list(n.items()))) for n in reordered["nodes"]]
    reordered["ssh"] = {"use_ssh_config": False, "user": "root", "port": 22, "sudo": True}
    reordered["packages"] = {"manager": "apt"}
    b = load(write(tmp_path, reordered, "b.yaml"))
    assert a.fingerprint() == b.fingerprint()
    assert len(a.fingerprint()) == 64
    changed = base()
    changed["nodes"][1]["port"] = 2200
    assert load(write(tmp_path, changed, "c.yaml")).fingerprint() != a.fingerprint()


def test_to_dict_round_trips(tmp_path: Path) -> None:
    inv = load(DATA / "kubespray-hosts.yaml")
    again = inventory_from_data(inv.to_dict(), tmp_path / "copy.yaml")
    assert again.fingerprint() == inv.fingerprint()
    assert again.ssh_target("worker-1") == inv.ssh_target("worker-1")


# --------------------------------------------------------------------------- property


def _mappings(data: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every mapping of the document whose keys we define (labels hold free-form keys)."""
    found: list[tuple[str | int, ...]] = []
    if isinstance(data, dict):
        found.append(path)
        for key, value in data.items():
            if key != "labels":
                found += _mappings(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += _mappings(value, (*path, index))
    return found


def _full_base() -> dict[str, Any]:
    data = base()
    data["kubeconfig"] = {"path": "kc", "context": "ctx"}
    data["packages"] = {"manager": "apt", "repository": "pkgs.k8s.io"}
    data["nodes"][1]["labels"] = {"zone": "a"}
    return data


def _allowed_keys(spot: tuple[str | int, ...]) -> set[str]:
    """The keys our schema defines for the mapping at ``spot``."""
    if not spot:
        model: type[BaseModel] = InventoryDocument
    elif spot[0] == "nodes":
        model = NodeSpec
    else:
        submodels: dict[str, type[BaseModel]] = {
            "cluster": ClusterSpec,
            "kubeconfig": KubeconfigSpec,
            "ssh": SSHDefaults,
            "packages": PackagesSpec,
        }
        model = submodels[str(spot[0])]
    return set(model.model_fields)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    where=st.integers(min_value=0, max_value=100),
    key=st.one_of(
        st.text(min_size=1, max_size=20),
        st.sampled_from(["prot", "nodes", "name", "ssh", "roles", "Port", "sudo_password"]),
    ),
    value=st.one_of(st.none(), st.integers(), st.text(max_size=5), st.booleans()),
)
def test_any_unknown_key_anywhere_is_refused_naming_it(where: int, key: str, value: Any) -> None:
    data = _full_base()
    spots = _mappings(data)
    spot = spots[where % len(spots)]
    assume(key not in _allowed_keys(spot))
    mutated = copy.deepcopy(data)
    holder: Any = mutated
    for part in spot:
        holder = holder[part]
    holder[key] = value
    # validation only: no file is read
    message = refusal(inventory_from_data, mutated, Path("inv.yaml"))
    assert message.startswith("inv.yaml: ")
    assert "unknown key" in message
    assert key in message or repr(key) in message
