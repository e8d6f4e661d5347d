"""The lab's version helpers (``lab/upgrader_lab/node/repo.py``) and kubeadm's image list
(``lab/upgrader_lab/node/tree.py``) against their upstream sources: pkgs.k8s.io spells a
pre-release package version with ``~`` (``1.29.0~rc.1-1.1``; Debian policy 5.6.12 and rpm
sort ``~`` before anything, so it precedes the release), and kubeadm's
``GetControlPlaneImages`` (``cmd/kubeadm/app/images/images.go``) names CoreDNS and pause
by the running kubeadm's constants."""

from __future__ import annotations

import pytest

from upgrader_lab.node import repo, tree


def test_pre_release_package_versions_use_a_tilde_and_round_trip() -> None:
    assert repo.deb_version("v1.29.0-rc.1") == "1.29.0~rc.1-1.1"
    assert repo.rpm_version("1.29.0-alpha.2") == "1.29.0~alpha.2-150500.1.1"
    assert repo.deb_version("v1.28.4") == "1.28.4-1.1"
    assert repo.upstream_of("1.29.0~rc.1-1.1") == "1.29.0-rc.1"
    assert repo.upstream_of("1.28.4-150500.1.1") == "1.28.4"
    assert repo.minor_of("v1.29.0-beta.0") == "1.29"


def test_versions_sort_as_semver_and_packages_as_dpkg() -> None:
    plain = ["1.29.0", "1.29.0-rc.1", "1.29.0-alpha.2", "1.28.15", "1.29.0-beta.0", "1.29.1"]
    assert sorted(plain, key=repo.sort_key) == [
        "1.28.15",
        "1.29.0-alpha.2",
        "1.29.0-beta.0",
        "1.29.0-rc.1",
        "1.29.0",
        "1.29.1",
    ]
    pkgs = ["1.29.0-1.1", "1.29.0~rc.1-1.1", "1.28.15-1.1", "1.29.0~alpha.2-1.1"]
    assert sorted(pkgs, key=repo.pkg_sort_key) == [
        "1.28.15-1.1",
        "1.29.0~alpha.2-1.1",
        "1.29.0~rc.1-1.1",
        "1.29.0-1.1",
    ]
    with pytest.raises(ValueError, match="not a version"):
        repo.sort_key("1.29")


def test_the_repository_offers_the_given_pre_releases_in_order() -> None:
    r = repo.build_repository(prereleases=["v1.29.0-rc.1", "1.29.0-alpha.1"], release_data=None)
    assert r["1.29"][:3] == ["1.29.0-alpha.1", "1.29.0-rc.1", "1.29.0"]
    gone = repo.build_repository(missing=["1.29.0-rc.1"], prereleases=["1.29.0-rc.1"])
    assert "1.29.0-rc.1" not in gone["1.29"]


def test_kubeadm_image_list_is_the_running_kubeadms() -> None:
    old = tree.kubeadm_images("v1.28.4", "v1.29.2", "registry.k8s.io")
    new = tree.kubeadm_images("v1.29.2", "v1.29.2", "registry.k8s.io")
    assert "registry.k8s.io/coredns/coredns:v1.10.1" in old  # kubeadm 1.28's constant
    assert "registry.k8s.io/coredns/coredns:v1.11.1" in new
    assert "registry.k8s.io/etcd:3.5.9-0" in old and "registry.k8s.io/etcd:3.5.10-0" in new
    assert old[0] == new[0] == "registry.k8s.io/kube-apiserver:v1.29.2"
    mirror = tree.kubeadm_images("v1.29.2", "v1.29.2", "mirror.example.test/k8s")
    assert "mirror.example.test/k8s/coredns:v1.11.1" in mirror  # no coredns/ sub-path
