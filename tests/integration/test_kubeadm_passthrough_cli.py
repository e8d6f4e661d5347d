"""The kubeadm pass-through flags at the real CLI's edge (``plan --facts``, no node is
reached): bad input is one line and exit 2, an UpgradeConfiguration for a target below
1.31 is the blocker KUBEADM_CONFIG_UNSUPPORTED (exit 3), and the plan shows the flags in
the kubeadm commands and the copy step."""

from __future__ import annotations

from pathlib import Path

import pytest
from brief_text import unfold
from cli_run import cli, one_line_error

FACTS = Path(__file__).parents[1] / "data/facts/one-cp-two-workers.json"
BASE = ("plan", "--facts", str(FACTS), "--to", "v1.28.4")


def test_a_cluster_configuration_is_refused_in_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text("apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\n")
    one_line_error(cli(*BASE, "--kubeadm-config", str(cfg)), str(cfg), "ClusterConfiguration")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--etcd-upgrade", "maybe"), ("--etcd-upgrade", "'maybe'")),
        (("--ignore-preflight-errors", "Swap;id"), ("--ignore-preflight-errors", "Swap;id")),
    ],
)
def test_bad_flag_values_are_one_line(args: tuple[str, ...], words: tuple[str, ...]) -> None:
    one_line_error(cli(*BASE, *args), *words)


def test_a_patch_file_kubeadm_would_not_read_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "patches"
    d.mkdir()
    (d / "kube-apiserver.yml").write_text("a: b\n")
    one_line_error(cli(*BASE, "--patches", str(d)), "kube-apiserver.yml", "extension .yml")


def test_an_upgrade_configuration_below_131_is_a_blocker(tmp_path: Path) -> None:
    cfg = tmp_path / "upgrade.yaml"
    cfg.write_text("apiVersion: kubeadm.k8s.io/v1beta4\nkind: UpgradeConfiguration\n")
    r = cli(*BASE, "--kubeadm-config", str(cfg))
    assert r.returncode == 3, r.stdout + r.stderr
    assert "KUBEADM_CONFIG_UNSUPPORTED" in r.stdout and str(cfg) in r.stdout


def test_the_plan_shows_the_flags_and_the_copy_step(tmp_path: Path) -> None:
    d = tmp_path / "patches"
    d.mkdir()
    (d / "kube-scheduler+merge.yaml").write_text("a: b\n")
    r = cli(
        *BASE,
        "--patches",
        str(d),
        "--ignore-preflight-errors",
        "CoreDNSUnsupportedPlugins",
        "--etcd-upgrade",
        "false",
        "--certificate-renewal",
        "false",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    out = unfold(r.stdout)
    assert (
        "$ kubeadm upgrade apply v1.28.4 -y --ignore-preflight-errors CoreDNSUnsupportedPlugins "
        "--patches /etc/kubernetes/upgrader/patches --etcd-upgrade=false "
        "--certificate-renewal=false\n"
    ) in out
    assert (
        "$ kubeadm upgrade plan v1.28.4 --ignore-preflight-errors CoreDNSUnsupportedPlugins\n"
        in out
    )
    assert "kubeadm-files on cp-1:" in out
    assert "    $ kubeadm upgrade node\n" in out  # the workers': unchanged
