"""ssh_config precedence: Host * < inventory ssh defaults < Host <this host> < node's keys."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from upgrader.errors import ConfigError
from upgrader.inventory import Inventory, load_inventory
from upgrader.inventory.ssh_config import (
    HostConfig,
    SSHConfigFile,
    is_catch_all,
    is_generic_header,
    specific_blocks,
)
from upgrader.transport.base import SSHTarget


def inventory(
    tmp_path: Path, ssh_config: str, ssh: dict[str, Any], nodes: dict[str, dict[str, Any]]
) -> Inventory:
    """Inventory with worker nodes named after their address (w-1 at address w-1 ...)."""
    config = tmp_path / "ssh_config"
    config.write_text(ssh_config.format(home=tmp_path), encoding="utf-8")
    data = {
        "cluster": {"name": "demo"},
        "ssh": {"use_ssh_config": True, **ssh},
        "nodes": [{"name": "cp-1", "address": "cp-1", "role": "control-plane"}]
        + [{"name": n, "address": n, "role": "worker", **extra} for n, extra in nodes.items()],
    }
    path = tmp_path / "inv.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_inventory(path, ssh_config_path=config)


def jump_of(target: SSHTarget) -> tuple[str, str | None, int]:
    """Where ``target``'s ProxyJump hop goes: (host, user, port)."""
    assert target.jump is not None
    return (target.jump.host, target.jump.user, target.jump.port)


WILDCARD = """\
Host *
    User ubuntu
    Port 2222
    IdentityFile {home}/wild_key
    ProxyJump wild-bastion
    ServerAliveInterval 30
"""

INVENTORY_SSH = {"user": "inv-user", "port": 22, "identity_file": "inv_key"}


def test_host_star_loses_to_the_inventory_defaults(tmp_path: Path) -> None:
    inv = inventory(tmp_path, WILDCARD, {**INVENTORY_SSH, "jump_host": "inv-bastion"}, {"w-1": {}})
    for name in ("cp-1", "w-1"):
        target = inv.ssh_target(name)
        assert (target.host, target.user, target.port) == (name, "inv-user", 22)
        assert target.identity_file == str(tmp_path / "inv_key")
        assert target.jump is not None and target.jump.host == "inv-bastion"


def test_host_star_still_applies_where_the_inventory_says_nothing(tmp_path: Path) -> None:
    inv = inventory(tmp_path, WILDCARD, {}, {"w-1": {}})
    target = inv.ssh_target("w-1")
    assert (target.host, target.user, target.port) == ("w-1", "ubuntu", 2222)
    assert target.identity_file == str(tmp_path / "wild_key")
    # the hop gets Host * values too (its own port would come first)
    assert jump_of(target) == ("wild-bastion", "ubuntu", 2222)
    # partly: what the inventory leaves out still comes from Host *
    mixed = inventory(tmp_path, WILDCARD, {"user": "inv-user"}, {"w-1": {}}).ssh_target("w-1")
    assert (mixed.user, mixed.port, mixed.identity_file) == (
        "inv-user",
        2222,
        str(tmp_path / "wild_key"),
    )


def test_ssh_port_counts_only_when_written(tmp_path: Path) -> None:
    # port 22 is the schema default: omitted, Host * Port applies; written, it wins
    assert inventory(tmp_path, WILDCARD, {}, {}).ssh_target("cp-1").port == 2222
    assert inventory(tmp_path, WILDCARD, {"port": 22}, {}).ssh_target("cp-1").port == 22


HOST_W1 = (
    """\
Host w-1
    HostName 192.0.2.11
    User w1-user
    Port 2201
    IdentityFile {home}/w1_key
    ProxyJump w1-bastion:2022

"""
    + WILDCARD
)


def test_host_block_for_the_node_wins_over_the_inventory_defaults_for_it_only(
    tmp_path: Path,
) -> None:
    inv = inventory(
        tmp_path, HOST_W1, {**INVENTORY_SSH, "jump_host": "inv-bastion"}, {"w-1": {}, "w-2": {}}
    )
    w1 = inv.ssh_target("w-1")
    assert (w1.host, w1.user, w1.port) == ("192.0.2.11", "w1-user", 2201)
    assert w1.identity_file == str(tmp_path / "w1_key")
    assert w1.jump is not None and (w1.jump.host, w1.jump.port) == ("w1-bastion", 2022)
    # the hop's own Host lookup matches only Host *: the inventory defaults win there
    assert (w1.jump.user, w1.jump.identity_file) == ("inv-user", str(tmp_path / "inv_key"))
    w2 = inv.ssh_target("w-2")
    assert (w2.host, w2.user, w2.port) == ("w-2", "inv-user", 22)
    assert w2.identity_file == str(tmp_path / "inv_key")
    assert w2.jump is not None and w2.jump.host == "inv-bastion"


def test_the_nodes_own_keys_win_over_everything(tmp_path: Path) -> None:
    own = {
        "user": "own-user",
        "port": 2200,
        "identity_file": "own_key",
        "jump_host": "own@own-bastion:2300",
    }
    inv = inventory(tmp_path, HOST_W1, INVENTORY_SSH, {"w-1": own, "w-2": own})
    for name in ("w-1", "w-2"):
        target = inv.ssh_target(name)
        assert (target.user, target.port) == ("own-user", 2200)
        assert target.identity_file == str(tmp_path / "own_key")
        assert jump_of(target) == ("own-bastion", "own", 2300)
    assert inv.ssh_target("w-1").host == "192.0.2.11"  # HostName: nothing in the inventory


def test_a_value_a_hosts_block_repeats_from_host_star_is_the_hosts(tmp_path: Path) -> None:
    config = "Host w-1\n    User ubuntu\n\nHost *\n    User ubuntu\n"
    inv = inventory(tmp_path, config, {"user": "inv-user"}, {"w-1": {}, "w-2": {}})
    assert inv.ssh_target("w-1").user == "ubuntu"
    assert inv.ssh_target("w-2").user == "inv-user"


def test_host_star_first_is_ssh_value_and_still_generic(tmp_path: Path) -> None:
    # ssh keeps the first value: Host * before Host w-1 hides w-1's User from ssh too
    config = "Host *\n    User ubuntu\n\nHost w-1\n    User w1-user\n    Port 2201\n"
    says_nothing = inventory(tmp_path, config, {}, {"w-1": {}}).ssh_target("w-1")
    assert (says_nothing.user, says_nothing.port) == ("ubuntu", 2201)
    says_user = inventory(tmp_path, config, {"user": "inv-user"}, {"w-1": {}}).ssh_target("w-1")
    assert (says_user.user, says_user.port) == ("inv-user", 2201)


def test_generic_blocks_in_other_spellings(tmp_path: Path) -> None:
    config = (
        "User top-user\n"  # before any Host: every host
        "\n"
        "Host *.corp w-3\n"  # a pattern that names some hosts: specific
        "    Port 2203\n"
        "\n"
        "Host * !w-2\n"
        "    IdentityFile {home}/keys/%h\n"  # token expansion does not make it specific
        "\n"
        "Host ?*\n"
        "    Port 2222\n"
    )
    inv = inventory(tmp_path, config, INVENTORY_SSH, {"w-1": {}, "w-2": {}, "w-3": {}})
    for name in ("w-1", "w-2"):
        target = inv.ssh_target(name)
        assert (target.user, target.port) == ("inv-user", 22)
        assert target.identity_file == str(tmp_path / "inv_key")
    assert inv.ssh_target("w-3").port == 2203
    plain = inventory(tmp_path, config, {}, {"w-1": {}, "w-2": {}})
    w1 = plain.ssh_target("w-1")
    assert (w1.user, w1.port) == ("top-user", 2222)
    assert w1.identity_file == str(tmp_path / "keys" / "w-1")
    assert plain.ssh_target("w-2").identity_file is None  # Host * !w-2 excludes it


def test_host_star_hostname_template_still_applies(tmp_path: Path) -> None:
    config = "Host w-1\n    HostName 192.0.2.11\n\nHost *\n    HostName %h.example.internal\n"
    inv = inventory(tmp_path, config, {}, {"w-1": {}, "w-2": {}})
    assert inv.ssh_target("w-1").host == "192.0.2.11"
    assert inv.ssh_target("w-2").host == "w-2.example.internal"


def test_match_blocks(tmp_path: Path) -> None:
    config = (
        "Match host w-1,w-9\n"
        "    User match-user\n"
        "\n"
        "Match originalhost w-2 !host w-3\n"
        "    Port 2202\n"
        "\n"
        "Match !host w-1\n"
        "    IdentityFile {home}/not_w1_key\n"
        "\n"
        "Match all\n"
        "    User all-user\n"
        "    Port 2222\n"
    )
    inv = inventory(tmp_path, config, INVENTORY_SSH, {"w-1": {}, "w-2": {}})
    w1, w2 = inv.ssh_target("w-1"), inv.ssh_target("w-2")
    assert (w1.user, w1.port, w1.identity_file) == ("match-user", 22, str(tmp_path / "inv_key"))
    assert (w2.user, w2.port, w2.identity_file) == ("inv-user", 2202, str(tmp_path / "inv_key"))
    plain = inventory(tmp_path, config, {}, {"w-2": {}}).ssh_target("w-2")
    assert (plain.user, plain.port) == ("all-user", 2202)
    assert plain.identity_file == str(tmp_path / "not_w1_key")


def test_bad_values_still_fail_in_one_line_naming_file_and_host(tmp_path: Path) -> None:
    config = tmp_path / "bad"
    for text in ("Host *\n    Port twenty\n", "Match all\n    Port twenty\n"):
        config.write_text(text, encoding="utf-8")
        ssh_config = SSHConfigFile.load(config)
        assert ssh_config is not None
        with pytest.raises(ConfigError) as info:
            ssh_config.layers("w-1")
        expected = f"{config}: Host w-1: Port 'twenty' is not a number from 1 to 65535"
        assert str(info.value) == expected
    config.write_text("Match host\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad: not a valid ssh_config: Missing parameter"):
        SSHConfigFile.load(config)


def test_layers_split_the_lookup(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(HOST_W1.format(home=tmp_path), encoding="utf-8")
    ssh_config = SSHConfigFile.load(config)
    assert ssh_config is not None
    w2 = ssh_config.layers("w-2")
    assert w2.specific == HostConfig()
    assert w2.generic == HostConfig(
        user="ubuntu",
        port=2222,
        identity_file=str(tmp_path / "wild_key"),
        proxy_jump="wild-bastion",
    )
    w1 = ssh_config.layers("w-1")
    assert w1.generic == HostConfig()
    assert w1.specific == HostConfig(
        hostname="192.0.2.11",
        user="w1-user",
        port=2201,
        identity_file=str(tmp_path / "w1_key"),
        proxy_jump="w1-bastion:2022",
    )


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("*", True),
        ("**", True),
        ("?*", True),
        ("*?", True),
        ("?", False),
        ("??*", False),
        ("!*", False),
        ("w-*", False),
        ("*.corp", False),
        ("", False),
    ],
)
def test_is_catch_all(pattern: str, expected: bool) -> None:
    assert is_catch_all(pattern) is expected


@pytest.mark.parametrize(
    ("keyword", "value", "expected"),
    [
        ("host", "*", True),
        ("host", "* !bastion", True),
        ("host", '"*"', True),
        ("host", "w-1", False),
        ("host", "w-* *.corp", False),
        ("match", "all", True),
        ("match", "canonical all", True),
        ("match", "user ops", True),
        ("match", "localuser ops exec true", True),
        ("match", "!host w-1", True),
        ("match", "host *", True),
        ("match", "host w-1,*", True),
        ("match", "host w-*", False),
        ("match", "user ops originalhost w-1", False),
        ("match", "final host w-1", False),
    ],
)
def test_is_generic_header(keyword: str, value: str, expected: bool) -> None:
    assert is_generic_header(keyword, value) is expected


def test_specific_blocks_keeps_only_host_naming_blocks() -> None:
    text = (
        "User top\n"
        "Host *\n  User a\n"
        "host=w-1\n  User b\n"
        "Match all\n  User c\n"
        "  MATCH host w-2\n  User d"  # no final newline
    )
    assert specific_blocks(text) == "host=w-1\n  User b\n  MATCH host w-2\n  User d\n"


# --------------------------------------------------------------------------- Include


Home = Callable[[dict[str, str]], Path]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    """Makes tmp_path the home directory; the function it gives writes ``files`` under
    ~/.ssh and returns ~/.ssh/config."""
    monkeypatch.setenv("HOME", str(tmp_path))
    ssh = tmp_path / ".ssh"

    def write(files: dict[str, str]) -> Path:
        for name, text in files.items():
            (ssh / name).parent.mkdir(parents=True, exist_ok=True)
            (ssh / name).write_text(text, encoding="utf-8")
        return ssh / "config"

    return write


def _load(config: Path) -> SSHConfigFile:
    loaded = SSHConfigFile.load(config)
    assert loaded is not None
    return loaded


def test_include_glob_relative_to_dot_ssh_in_lexical_order(home: Home) -> None:
    config = home(
        {
            "config": "Include config.d/*.conf\nPort 2022\n",
            "config.d/20-b.conf": "Host w-1\n  User bob\n  HostName 10.0.0.2\n",
            "config.d/10-a.conf": "Host w-1\n  User alice\n",
            "config.d/ignored.txt": "Host w-1\n  Port 9\n",
        },
    )
    ssh = _load(config)
    w1 = ssh.layers("w-1")
    assert (w1.specific.user, w1.specific.hostname) == ("alice", "10.0.0.2")
    # the main file's line after the Include is still for every host (not inside Host w-1)
    assert w1.generic.port == 2022 and ssh.layers("w-2").generic.port == 2022
    assert ssh.layers("w-2").specific == HostConfig()


def test_include_inside_a_host_block_applies_only_to_that_host(tmp_path: Path, home: Home) -> None:
    config = home(
        {
            "config": "Host w-1\n  Include ~/.ssh/inner\n  IdentityFile ~/k1\n"
            "Host w-9\n  Include inner\n",
            "inner": "User carol\nHost *\n  Port 2201\nHost w-2\n  User dave\n",
        },
    )
    ssh = _load(config)
    w1 = ssh.layers("w-1")
    assert (w1.specific.user, w1.specific.port) == ("carol", 2201)
    assert w1.specific.identity_file == str(tmp_path / "k1")  # Host w-1 re-opened after it
    # w-2: the inner file's "Host w-2" is only reached through Host w-1 / w-9: never for w-2
    assert ssh.layers("w-2").specific == HostConfig() and ssh.layers("w-2").generic == HostConfig()
    assert ssh.layers("w-9").specific.port == 2201


def test_include_inside_match_and_nested_includes(home: Home) -> None:
    config = home(
        {
            "config": "Match originalhost w-*\n  Include a\n",
            "a": "Include b\nHost w-3\n  Port 2203\n",
            "b": "User nested\n",
        },
    )
    ssh = _load(config)
    assert ssh.layers("w-3").specific == HostConfig(user="nested", port=2203)
    assert ssh.layers("cp-1").specific == HostConfig()


def test_include_of_host_star_at_top_level_stays_generic(tmp_path: Path, home: Home) -> None:
    config = home({"config": "Include star\n", "star": WILDCARD})
    ssh_config = config
    data = {
        "cluster": {"name": "demo"},
        "ssh": {"use_ssh_config": True, "user": "inv-user"},
        "nodes": [{"name": "cp-1", "address": "cp-1", "role": "control-plane"}],
    }
    path = tmp_path / "inv.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    target = load_inventory(path, ssh_config_path=ssh_config).ssh_target("cp-1")
    assert (target.user, target.port) == ("inv-user", 2222)  # Host * loses, fills the gaps


def test_include_matching_nothing_is_skipped_as_ssh_does(home: Home) -> None:
    config = home({"config": "Include nothing/*\nHost w-1\n  Port 7\n"})
    assert _load(config).layers("w-1").specific.port == 7


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"config": "Include loop\n", "loop": "Include loop\n"}, "nested more than 16 levels"),
        ({"config": "Include %h.conf\n"}, r"line 1: Include '%h.conf': %-tokens"),
        ({"config": "Host x\n  Include ${HOME}/x\n"}, r"line 2: Include .*not supported"),
        ({"config": "Include 'unclosed\n"}, "config line 1: Include"),
    ],
)
def test_include_errors_are_one_line(home: Home, files: dict[str, str], message: str) -> None:
    config = home(files)
    with pytest.raises(ConfigError, match=message) as exc:
        SSHConfigFile.load(config)
    assert "\n" not in str(exc.value)


def test_included_file_writable_by_others_is_refused(tmp_path: Path, home: Home) -> None:
    config = home({"config": "Include other\n", "other": "User x\n"})
    (tmp_path / ".ssh" / "other").chmod(0o666)
    with pytest.raises(ConfigError, match=r"config line 1: Include .*other: bad owner or perm"):
        SSHConfigFile.load(config)
