"""node_env (proxies for every node command) and packages.mirror: validation, merging,
Kubespray variables, the stdin delivery run by a real POSIX shell, redaction, the plan."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_inventory import base

from upgrader.core import nodeenv, nodelock
from upgrader.core.model import Plan, Severity
from upgrader.core.planner import IMAGE_REPOSITORY_MISMATCH, image_repository_findings
from upgrader.core.playbook import RepoConfig
from upgrader.core.render import header_lines
from upgrader.core.settings import SettingHints
from upgrader.core.versions import KubeVersion
from upgrader.errors import ConfigError, ExitCode
from upgrader.inventory import Inventory, load_inventory
from upgrader.redact import redact
from upgrader.transport.base import SSHTarget
from upgrader.transport.ssh import SSHTransport

SECRET_URL = "http://proxyuser:s3cr%40t@proxy.example:3128"
V = KubeVersion.parse("v1.29.3")


def _doc(**extra: Any) -> dict[str, Any]:
    """test_inventory's base inventory with only cp-1 and w-1, and ``extra`` keys."""
    doc = base()
    return {**doc, "nodes": doc["nodes"][:2], **extra}


def _load(tmp_path: Path, data: Any) -> Inventory:
    path = tmp_path / "inv.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_inventory(path, ssh_config_path=tmp_path / "none")


def _error(tmp_path: Path, data: Any) -> str:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, data)
    assert info.value.exit_code == ExitCode.BAD_INPUT
    message = str(info.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- inventory


def test_node_value_wins_name_by_name(tmp_path: Path) -> None:
    doc = _doc(node_env={"http_proxy": SECRET_URL, "no_proxy": "10.0.0.0/8,.svc"})
    doc["nodes"][1]["node_env"] = {"no_proxy": "localhost", "HTTPS_PROXY": "http://p2:3128"}
    inv = _load(tmp_path, doc)
    assert inv.node_env_for("cp-1") == (("http_proxy", SECRET_URL), ("no_proxy", "10.0.0.0/8,.svc"))
    assert inv.node_env_for("w-1") == (
        ("HTTPS_PROXY", "http://p2:3128"),
        ("http_proxy", SECRET_URL),
        ("no_proxy", "localhost"),
    )
    assert inv.node_env_names == ("HTTPS_PROXY", "http_proxy", "no_proxy")
    assert inv.ssh_target("w-1").env == inv.node_env_for("w-1")
    assert SECRET_URL not in repr(inv.ssh_target("w-1"))
    assert set(inv.node_env_secrets()) == {"proxyuser:s3cr%40t", "s3cr%40t"}


def test_unset_keys_keep_the_fingerprint(tmp_path: Path) -> None:
    plain = _load(tmp_path, _doc())
    assert "node_env" not in plain.to_dict()
    assert "mirror" not in plain.to_dict()["packages"]
    assert "node_env" not in plain.to_dict()["nodes"][0]
    with_env = _load(tmp_path, _doc(node_env={"http_proxy": "http://p:3128"}))
    assert with_env.fingerprint() != plain.fingerprint()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"PATH": "/tmp"}, "node_env.PATH: 'PATH' may not be set"),
        ({"LD_PRELOAD": "/x.so"}, "'LD_PRELOAD' may not be set"),
        ({"BASH_ENV": "/x"}, "'BASH_ENV' may not be set"),
        ({"IFS": "x"}, "'IFS' may not be set"),
        ({"HOME": "/x"}, "'HOME' may not be set"),
        ({"__upgrader_out": "x"}, "may not be set"),
        ({"1abc": "x"}, "is not a variable name"),
        ({"a-b": "x"}, "is not a variable name"),
        ({"http_proxy": SECRET_URL + "\nexport X=1"}, "may not contain a newline"),
        ({"http_proxy": 3128}, "node_env.http_proxy: expected a string"),
    ],
)
def test_bad_names_and_values_are_refused_without_echoing_the_value(
    tmp_path: Path, env: dict[str, Any], expected: str
) -> None:
    message = _error(tmp_path, _doc(node_env=env))
    assert expected in message
    assert "s3cr" not in message and "proxy.example" not in message


def test_a_node_level_problem_names_the_node_entry(tmp_path: Path) -> None:
    doc = _doc()
    doc["nodes"][1]["node_env"] = {"LD_LIBRARY_PATH": "/opt"}
    assert "nodes[1].node_env.LD_LIBRARY_PATH" in _error(tmp_path, doc)


@pytest.mark.parametrize(
    ("mirror", "expected"),
    [
        ("http://mirror.example/k8s", "must start with https://"),
        ("https://u:p@mirror.example/k8s", "must not carry credentials"),
        ("https://mirror.example/$(id)", "forbidden characters"),
        ("https://mirror.example/{minor}", "not a plain https://host"),
        ("https://", "not a plain https://host"),
    ],
)
def test_bad_mirrors_are_refused(tmp_path: Path, mirror: str, expected: str) -> None:
    message = _error(tmp_path, _doc(packages={"mirror": mirror}))
    assert "packages.mirror" in message and expected in message
    assert "u:p@" not in message


def test_mirror_only_with_pkgs_k8s_io(tmp_path: Path) -> None:
    doc = _doc(
        packages={
            "repository": "custom",
            "url_template": "https://m.example/v{minor}/deb/",
            "mirror": "https://m.example",
        }
    )
    assert "packages.mirror: only used with repository: pkgs.k8s.io" in _error(tmp_path, doc)


def test_mirror_replaces_pkgs_k8s_io_in_the_repository_lines(tmp_path: Path) -> None:
    inv = _load(tmp_path, _doc(packages={"mirror": "https://mirror.example/k8s/"}))
    assert inv.repository.mirror == "https://mirror.example/k8s"
    repo = RepoConfig(mirror=inv.repository.mirror)
    assert repo.url(V, "apt") == "https://mirror.example/k8s/core:/stable:/v1.29/deb/"
    assert repo.key_url(V, "dnf") == (
        "https://mirror.example/k8s/core:/stable:/v1.29/rpm/repodata/repomd.xml.key"
    )
    with pytest.raises(ConfigError, match="without user:password@"):
        RepoConfig(mirror="https://a:b@m.example")
    with pytest.raises(ConfigError, match=r"only used with repository: pkgs\.k8s\.io"):
        RepoConfig("legacy", mirror="https://m.example")


def test_kubespray_variables(tmp_path: Path) -> None:
    data = {
        "all": {
            "vars": {
                "upgrader_node_env": {"https_proxy": SECRET_URL, "no_proxy": ".local"},
                "upgrader_packages_mirror": "https://mirror.example",
                "upgrader_images_repository": "registry.example/k8s",
            },
            "hosts": {
                "cp1": {"ansible_host": "10.0.0.5"},
                "w1": {"ansible_host": "10.0.0.6", "upgrader_node_env": {"no_proxy": "x"}},
            },
            "children": {
                "kube_control_plane": {"hosts": {"cp1": {}}},
                "kube_node": {"hosts": {"w1": {}}},
            },
        }
    }
    inv = _load(tmp_path, data)
    assert inv.repository.mirror == "https://mirror.example"
    assert inv.image_repository == "registry.example/k8s"
    assert inv.node_env_for("cp1") == (("https_proxy", SECRET_URL), ("no_proxy", ".local"))
    assert inv.node_env_for("w1") == (("no_proxy", "x"),)  # a host's value replaces, as in Ansible
    data["all"]["vars"]["upgrader_node_env"] = {"SHELL": "/bin/zsh"}
    message = _error(tmp_path, data)
    assert "upgrader_node_env" in message and "'SHELL' may not be set" in message


# --------------------------------------------------------------------------- delivery


@pytest.mark.parametrize("shell", ["dash", "bash"])
def test_a_real_shell_exports_the_values_verbatim_and_they_stay_off_argv(shell: str) -> None:
    if shutil.which(shell) is None:
        pytest.fail(f"{shell} is needed for this test")
    marker = "upgrader-env-0123abcd"
    env = (("http_proxy", "http://u:p'\"$(id)`x`;&@proxy:3128"), ("no_proxy", "a, b"))
    command = nodelock.wrap(
        'printf "%s|%s\\n" "$http_proxy" "$no_proxy"; cat; tr "\\0" " " </proc/$$/cmdline',
        path="/tmp/upgrader-test-node-env/lock",
    )
    stdin = b"a sudo password sudo did not read\n" + nodeenv.payload(env, marker) + b"extra\n"
    out = subprocess.run(
        [shell, "-c", nodeenv.prologue(marker) + command], input=stdin, capture_output=True
    )
    assert out.returncode == 0, out.stderr
    first, cmdline = out.stdout.decode().split("\n", 1)
    assert first == "http://u:p'\"$(id)`x`;&@proxy:3128|a, b"  # `cat` read nothing: /dev/null
    assert "proxy:3128" not in cmdline and marker in cmdline


def test_payload_refuses_what_the_schema_refuses() -> None:
    with pytest.raises(ValueError, match="may not be set"):
        nodeenv.payload((("PATH", "/x"),), "m")
    with pytest.raises(ValueError, match="newline"):
        nodeenv.payload((("a", "x\ny"),), "m")


class _Probe(SSHTransport):
    def _is_remote_root(self) -> bool:
        return False

    def _check_sudo(self, stdin: bytes | None) -> None:
        return None


def test_the_transport_sends_values_on_stdin_only(monkeypatch: pytest.MonkeyPatch) -> None:
    env = (("http_proxy", SECRET_URL),)
    t = _Probe(SSHTarget("w-1", "10.0.0.6", env=env))
    line, stdin = t._prepare("kubeadm version", sudo=True)
    assert line.startswith("sudo -n -- sh -c ") and "s3cr" not in line
    assert stdin is not None and f"http_proxy\n{SECRET_URL}\n".encode() in stdin
    monkeypatch.setenv("PW_FOR_TEST", "pw")
    t = _Probe(SSHTarget("w-1", "10.0.0.6", env=env, sudo_password_env="PW_FOR_TEST"))
    line, stdin = t._prepare("true", sudo=True)
    assert line.startswith("sudo -S -p '' -- sh -c ") and "exec </dev/null; true" not in line
    assert stdin is not None and stdin.startswith(b"pw\nupgrader-env-")
    plain = _Probe(SSHTarget("w-1", "10.0.0.6"))
    assert plain._prepare("true", sudo=True) == ("sudo -n -- sh -c true", None)


# --------------------------------------------------------------------------- redaction


def test_redaction_of_url_credentials() -> None:
    assert redact(f"proxy {SECRET_URL} refused") == "proxy http://***@proxy.example:3128 refused"
    assert nodeenv.shown("u:pw@p:3128,http://a:b@q") == "***@p:3128,http://***@q"
    assert nodeenv.credentials((("no_proxy", "admin@example"),)) == ()


# --------------------------------------------------------------------------- plan


def test_plan_header_shows_names_and_mirror_never_values() -> None:
    plan = Plan(
        current=V,
        target=KubeVersion.parse("v1.30.1"),
        hops=(KubeVersion.parse("v1.30.1"),),
        entries=(),
        findings=(),
        node_env=("http_proxy", "no_proxy"),
        package_mirror="https://mirror.example/k8s",
    )
    lines = header_lines(plan)
    assert "Node environment: http_proxy, no_proxy (values redacted)" in lines
    assert "Package mirror: https://mirror.example/k8s (stands for https://pkgs.k8s.io)" in lines
    data = plan.to_dict()
    assert data["node_env"] == ["http_proxy", "no_proxy"]
    assert data["package_mirror"] == "https://mirror.example/k8s"
    bare = Plan(V, V, (), (), ())
    assert "node_env" not in bare.to_dict() and "package_mirror" not in bare.to_dict()


# --------------------------------------------------------------------------- images.repository


@pytest.mark.parametrize(
    "value", ["https://reg.example/k8s", "Reg.example/k8s", "reg.example/k8s/", "reg/k8s:v1"]
)
def test_bad_image_repositories_are_refused(tmp_path: Path, value: str) -> None:
    message = _error(tmp_path, _doc(images={"repository": value}))
    assert "images.repository" in message and "is not an image repository" in message


def test_image_repository_against_the_cluster(tmp_path: Path) -> None:
    inv = _load(tmp_path, _doc(images={"repository": "registry.example:5000/k8s"}))
    assert inv.image_repository == "registry.example:5000/k8s"
    assert "images" not in _load(tmp_path, _doc()).to_dict()
    hints = SettingHints()
    assert image_repository_findings(None, None, hints) == []
    assert image_repository_findings(None, "registry.k8s.io", hints) == []
    same = "registry.example:5000/k8s"
    assert image_repository_findings(same, same, hints) == []
    (f,) = image_repository_findings(None, same, hints)
    assert f.code == IMAGE_REPOSITORY_MISMATCH and f.severity == Severity.BLOCKER
    assert "imageRepository registry.k8s.io (unset: kubeadm's default)" in f.message
    assert f.fix is not None and "kubeadm-config" in f.fix
    (k,) = image_repository_findings("old.example/k8s", same, SettingHints("kubespray"))
    assert "upgrader_images_repository in all.vars of the inventory says" in k.message
