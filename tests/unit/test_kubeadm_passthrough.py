"""kubeadm pass-through (issue 14 item 3): the inputs' rules (patch file names, the
UpgradeConfiguration), reading them from this machine, the flags and the copy step the
planner puts into control-plane visits, the finding for a hop below 1.31, and the copy
step's command and check run for real by sh (in a directory of the test)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from test_planner import TODAY, facts, releases

from upgrader.core import kubeadm_passthrough as kp
from upgrader.core.model import Severity
from upgrader.core.planner import PlanOptions, build_plan
from upgrader.core.playbook import load_playbooks
from upgrader.core.policy import PolicyOptions
from upgrader.core.versions import KubeVersion
from upgrader.errors import ConfigError
from upgrader.kubeadm_files import load_passthrough

UPGRADE_CONFIG = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: UpgradeConfiguration\n"


@pytest.mark.parametrize(
    "name",
    [
        "kube-apiserver.yaml",
        "kube-apiserver0+merge.yaml",
        "etcd+json.json",
        "kube-controller-manager_x+strategic.yaml",
        "kube-scheduler.json",
        "kubeletconfiguration+strategic.yaml",
        "corednsdeployment.yaml",
    ],
)
def test_patch_names_kubeadm_reads(name: str) -> None:
    assert kp.check_patch_name(name) is None


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("kube-proxy.yaml", "unknown target"),
        ("kube-apiserver.yml", "extension .yml"),
        ("etcd+xml.yaml", "patch type 'xml'"),
        ("etcd", "not named"),
        ("etcd;rm -rf.yaml", "not named"),
    ],
)
def test_patch_names_kubeadm_would_not_read(name: str, problem: str) -> None:
    found = kp.check_patch_name(name)
    assert found is not None and problem in found


def test_only_an_upgrade_configuration_is_accepted() -> None:
    kp.check_upgrade_config(UPGRADE_CONFIG, "f")
    with pytest.raises(ConfigError, match="f: kind 'ClusterConfiguration'"):
        kp.check_upgrade_config(
            "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\n", "f"
        )
    with pytest.raises(ConfigError, match=r"apiVersion 'kubeadm\.k8s\.io/v1beta3'"):
        kp.check_upgrade_config(
            "apiVersion: kubeadm.k8s.io/v1beta3\nkind: UpgradeConfiguration\n", "f"
        )
    with pytest.raises(ConfigError, match="f: not YAML"):
        kp.check_upgrade_config("a: [", "f")


def test_reading_the_inputs(tmp_path: Path) -> None:
    d = tmp_path / "p"
    d.mkdir()
    (d / "kube-apiserver.yaml").write_text("x: 1\n")
    got = load_passthrough(d, None, "Swap, all", True, False)
    assert got.patches == (("kube-apiserver.yaml", b"x: 1\n"),)
    assert got.ignore_preflight_errors == ("Swap", "all")
    assert got.upgrade_flags() == (
        "--ignore-preflight-errors Swap,all",
        f"--patches {kp.REMOTE_PATCHES}",
        "--certificate-renewal=false",
    )
    assert got.plan_flags() == ("--ignore-preflight-errors Swap,all",)
    (d / "notes.txt").write_text("")
    with pytest.raises(ConfigError, match=r"^--patches .*notes.txt: unknown target"):
        load_passthrough(d)
    (d / "notes.txt").unlink()
    (d / "etcd.yaml").symlink_to(d / "kube-apiserver.yaml")
    with pytest.raises(ConfigError, match=r"etcd\.yaml: not a regular file"):
        load_passthrough(d)
    with pytest.raises(ConfigError, match=r"--patches .*missing: not a directory"):
        load_passthrough(tmp_path / "missing")
    with pytest.raises(ConfigError, match="--ignore-preflight-errors: 'a;b'"):
        load_passthrough(None, None, "a;b")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(UPGRADE_CONFIG)
    with pytest.raises(ConfigError, match="set etcdUpgrade/certificateRenewal"):
        load_passthrough(None, cfg, None, False, True)
    assert load_passthrough(None, cfg).config == UPGRADE_CONFIG.encode()


def _plan(target: str, passthrough: kp.KubeadmPassthrough, f: str = "three-cp-dnf.json"):  # type: ignore[no-untyped-def]
    return build_plan(
        facts(f),
        KubeVersion.parse(target),
        load_playbooks(),
        releases(),
        PlanOptions(policy=PolicyOptions(today=TODAY), kubeadm=passthrough),
    )


def test_the_flags_and_the_copy_step_go_to_control_plane_visits_only() -> None:
    passthrough = kp.KubeadmPassthrough(
        patches=(("kube-apiserver.yaml", b"a: b\n"),),
        ignore_preflight_errors=("CoreDNSUnsupportedPlugins",),
        etcd_upgrade=False,
    )
    p = _plan("v1.28.4", passthrough)
    assert not p.blockers
    flags = (
        " --ignore-preflight-errors CoreDNSUnsupportedPlugins"
        f" --patches {kp.REMOTE_PATCHES} --etcd-upgrade=false"
    )
    seen = set()
    for e in p.entries:
        names = [s.name for s in e.steps]
        commands = {s.name: s.command for s in e.steps}
        if e.phase == "first-control-plane":
            assert names.index("kubeadm-files") == names.index("kubeadm-upgrade-plan") - 1
            assert commands["kubeadm-upgrade-apply"] == f"kubeadm upgrade apply v1.28.4 -y{flags}"
            assert commands["kubeadm-upgrade-plan"] == (
                "kubeadm upgrade plan v1.28.4 --ignore-preflight-errors CoreDNSUnsupportedPlugins"
            )
        elif e.phase == "control-plane":
            assert names.index("kubeadm-files") == names.index("kubeadm-upgrade-node") - 1
            assert commands["kubeadm-upgrade-node"] == f"kubeadm upgrade node{flags}"
        else:
            assert "kubeadm-files" not in names
            for c in commands.values():
                assert "--patches" not in (c or "")
        seen.add(e.phase)
    assert {"first-control-plane", "control-plane", "worker"} <= seen


def test_an_upgrade_configuration_below_131_is_a_blocker() -> None:
    p = _plan(
        "v1.28.4",
        kp.KubeadmPassthrough(config=UPGRADE_CONFIG.encode(), config_source="up.yaml"),
        "one-cp-two-workers.json",
    )
    found = [f for f in p.findings if f.code == "KUBEADM_CONFIG_UNSUPPORTED"]
    assert len(found) == 1 and found[0].severity == Severity.BLOCKER
    assert "up.yaml" in found[0].message and "1.28" in found[0].message
    apply = next(s for e in p.entries for s in e.steps if s.name == "kubeadm-upgrade-apply")
    assert apply.command == f"kubeadm upgrade apply v1.28.4 -y --config {kp.REMOTE_CONFIG}"


def test_no_passthrough_leaves_the_commands_as_they_were() -> None:
    p = _plan("v1.28.4", kp.KubeadmPassthrough(), "one-cp-two-workers.json")
    steps = {s.name: s.command for e in p.entries for s in e.steps}
    assert "kubeadm-files" not in steps
    assert steps["kubeadm-upgrade-apply"] == "kubeadm upgrade apply v1.28.4 -y"
    assert steps["kubeadm-upgrade-plan"] == "kubeadm upgrade plan v1.28.4"


def _run(command: str, root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", command.replace(kp.REMOTE_DIR, str(root / "upgrader"))],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_copy_step_writes_the_files_and_its_check_holds_only_then(tmp_path: Path) -> None:
    tricky = b"it's $(not run) `x`\n\x00\xff"
    step = kp.KubeadmPassthrough(
        patches=(("etcd.yaml", b"a: 1\n"), ("kube-apiserver+json.json", tricky)),
        config=UPGRADE_CONFIG.encode(),
    ).copy_step(KubeVersion.parse("v1.31.1"), "cp-1", "first-control-plane")
    assert step.command and step.check
    assert _run(step.check, tmp_path).returncode != 0  # not done yet
    r = _run(step.command, tmp_path)
    assert r.returncode == 0, r.stderr
    root = tmp_path / "upgrader"
    assert (root / "patches" / "kube-apiserver+json.json").read_bytes() == tricky
    assert (root / "upgrade-config.yaml").read_text() == UPGRADE_CONFIG
    assert oct(root.stat().st_mode & 0o777) == "0o700"
    assert oct((root / "patches" / "etcd.yaml").stat().st_mode & 0o777) == "0o600"
    assert _run(step.check, tmp_path).returncode == 0
    (root / "patches" / "etcd.yaml").write_text("changed\n")
    assert _run(step.check, tmp_path).returncode != 0
    assert _run(step.command, tmp_path).returncode == 0  # run again: back to the operator's
    (root / "patches" / "kube-scheduler.yaml").write_text("stray\n")
    assert _run(step.check, tmp_path).returncode != 0  # a file the operator did not give
    assert "Copy 2 patch files" in step.description and json.dumps(step.to_dict())


def test_the_inventory_kubeadm_section(tmp_path: Path) -> None:
    from test_inventory import base, load, write

    plain = load(write(tmp_path, base(), "a.yaml"))
    explicit = base() | {"kubeadm": {"etcd_upgrade": True, "ignore_preflight_errors": []}}
    # an absent or all-default section leaves the fingerprint of an older inventory as it was
    assert load(write(tmp_path, explicit, "b.yaml")).fingerprint() == plain.fingerprint()
    d = tmp_path / "patches"
    d.mkdir()
    data = base() | {
        "kubeadm": {
            "patches": "patches",
            "ignore_preflight_errors": ["Swap"],
            "etcd_upgrade": False,
        }
    }
    inv = load(write(tmp_path, data, "c.yaml"))
    assert inv.fingerprint() != plain.fingerprint()
    assert inv.kubeadm.patches == d and inv.kubeadm.ignore_preflight_errors == ("Swap",)
    assert inv.kubeadm.etcd_upgrade is False
    bad = base() | {"kubeadm": {"ignore_preflight_errors": ["Swap;id"]}}
    with pytest.raises(ConfigError, match=r"kubeadm\.ignore_preflight_errors"):
        load(write(tmp_path, bad, "d.yaml"))
    # the CLI takes the section when no flag is given, and a flag wins over its key
    from upgrader.cli_options import KubeadmFlags

    (d / "etcd.yaml").write_text("a: 1\n")
    got = KubeadmFlags().passthrough(inv)
    assert got.patches == (("etcd.yaml", b"a: 1\n"),) and got.ignore_preflight_errors == ("Swap",)
    assert got.etcd_upgrade is False
    assert (
        KubeadmFlags(ignore_preflight_errors="all", etcd_upgrade="true")
        .passthrough(inv)
        .etcd_upgrade
        is True
    )
    (d / "notes.md").write_text("")
    with pytest.raises(ConfigError, match=r"^kubeadm\.patches in the inventory .*notes\.md"):
        KubeadmFlags().passthrough(inv)


def test_the_kubespray_upgrader_kubeadm_variables(tmp_path: Path) -> None:
    from test_kubespray_vars import _doc, _load, _write

    (tmp_path / "patches").mkdir()
    all_vars = {
        "upgrader_kubeadm_patches": "patches",
        "upgrader_kubeadm_ignore_preflight_errors": "Swap, CoreDNSUnsupportedPlugins",
        "upgrader_kubeadm_etcd_upgrade": False,
        "upgrader_kubeadm_certificate_renewal": False,
    }
    inv = _load(_write(tmp_path, _doc(all_vars)))
    assert inv.kubeadm.patches == tmp_path / "patches"
    assert inv.kubeadm.ignore_preflight_errors == ("Swap", "CoreDNSUnsupportedPlugins")
    assert (inv.kubeadm.etcd_upgrade, inv.kubeadm.certificate_renewal) == (False, False)


@pytest.mark.parametrize(
    ("argv", "version", "refused"),
    [
        ("upgrade apply v1.31.1 -y --config /c.yaml", "v1.31.1", None),
        ("upgrade apply v1.30.2 -y --config /c.yaml", "v1.30.2", "[yes]"),
        ("upgrade apply v1.31.1 -y --config /c.yaml --patches /p", "v1.31.1", "[patches]"),
        ("upgrade apply v1.31.1 --config /c.yaml --force --etcd-upgrade=false", "v1.31.1",
         "[etcd-upgrade force]"),
        ("upgrade apply v1.29.2 -y --config /c.yaml --patches /p", "v1.29.2", None),
        ("upgrade apply v1.31.1 -y --config /c.yaml --ignore-preflight-errors all", "v1.31.1",
         None),
    ],
)  # fmt: skip
def test_the_lab_kubeadm_refuses_config_beside_other_flags(
    argv: str, version: str, refused: str | None
) -> None:
    """kubeadm upgrade apply from 1.30 (validation.ValidateMixedArguments; --yes from 1.31):
    the reason upgrader refuses --kubeadm-config with --patches and moves the override
    flags into the UpgradeConfiguration."""
    from upgrader_lab.node import args as argparse_
    from upgrader_lab.node import kubeadm as lab_kubeadm

    p = argparse_.parse(
        argv.split(), lab_kubeadm._GLOBAL_VALUE, lab_kubeadm._GLOBAL_BOOL, lab_kubeadm._ALIASES
    )
    if refused is None:
        lab_kubeadm._check_mixed_arguments(p, lab_kubeadm.Ver.parse(version))
    else:
        with pytest.raises(lab_kubeadm.Fatal, match=re.escape(refused)):
            lab_kubeadm._check_mixed_arguments(p, lab_kubeadm.Ver.parse(version))


def test_config_with_patches_is_refused_and_overrides_move_into_the_config(
    tmp_path: Path,
) -> None:
    d = tmp_path / "p"
    d.mkdir()
    (d / "etcd.yaml").write_text("a: 1\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(UPGRADE_CONFIG + "apply:\n  forceUpgrade: true\n")
    with pytest.raises(ConfigError, match="kubeadm refuses --config beside --patches"):
        load_passthrough(d, cfg)
    assert kp.apply_settings(cfg.read_bytes()) == {"forceUpgrade": True}
    assert kp.apply_settings(UPGRADE_CONFIG.encode()) == {}


def test_an_override_kubeadm_needs_must_be_in_the_config() -> None:
    from test_planner import set_node

    f = set_node(facts("one-cp-two-workers.json"), "w-1", kubelet=KubeVersion.parse("v1.25.16"))

    def run(config: str) -> tuple[list[str], str | None]:
        p = build_plan(
            f,
            KubeVersion.parse("v1.28.4"),
            load_playbooks(),
            releases(),
            PlanOptions(
                policy=PolicyOptions(today=TODAY, force=True),
                kubeadm=kp.KubeadmPassthrough(config=config.encode(), config_source="u.yaml"),
            ),
        )
        msgs = [x.message for x in p.findings if x.code == "KUBEADM_CONFIG_UNSUPPORTED"]
        apply = next(s for e in p.entries for s in e.steps if s.name == "kubeadm-upgrade-apply")
        return msgs, apply.command

    msgs, command = run(UPGRADE_CONFIG)
    assert any("needs --force, which kubeadm refuses beside --config (u.yaml)" in m for m in msgs)
    assert command == f"kubeadm upgrade apply v1.28.4 -y --config {kp.REMOTE_CONFIG}"
    msgs, command = run(UPGRADE_CONFIG + "apply:\n  forceUpgrade: true\n")
    assert not any("needs --force" in m for m in msgs)  # only the below-1.31 one stays
    assert command == f"kubeadm upgrade apply v1.28.4 -y --config {kp.REMOTE_CONFIG}"
