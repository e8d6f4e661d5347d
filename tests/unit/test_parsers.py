"""Parsers of real node command output (samples copied from the real tools' output) and the
golden fact script."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from upgrader.core.model import PackageFact
from upgrader.core.parsers import (
    ParseError,
    Section,
    excluded,
    package_version_to_kube,
    parse_apt_cache_madison,
    parse_apt_mark_showhold,
    parse_apt_source,
    parse_container_runtime,
    parse_dnf_list,
    parse_dnf_version,
    parse_dpkg_query,
    parse_kube_binaries,
    parse_kubeadm_etcd,
    parse_kubeadm_version,
    parse_kubectl_version,
    parse_kubelet_version,
    parse_os_release,
    parse_repo_url,
    parse_rpm_query,
    parse_unit_execstart,
    parse_versionlock_list,
    parse_yum_repo,
    split_sections,
)
from upgrader.core.probes import fact_script
from upgrader.core.versions import KubeVersion

V = KubeVersion.parse

# --------------------------------------------------------------------------- versions


def test_kubeadm_version_short() -> None:
    assert parse_kubeadm_version("v1.28.4\n") == V("v1.28.4")


def test_kubeadm_version_with_warning_lines_before() -> None:
    out = (
        "W1121 10:01:02.123456   12345 version.go:104] could not fetch a Kubernetes version "
        "from the internet: unable to get URL\n"
        "v1.29.0-rc.1\n"
    )
    assert parse_kubeadm_version(out) == V("v1.29.0-rc.1")


@pytest.mark.parametrize("bad", ["", "sh: 1: kubeadm: not found\n", "1.28\n"])
def test_kubeadm_version_rejects(bad: str) -> None:
    with pytest.raises(ParseError, match="kubeadm version"):
        parse_kubeadm_version(bad)


def test_kubelet_version() -> None:
    assert parse_kubelet_version("Kubernetes v1.28.4\n") == V("v1.28.4")


KUBECTL_JSON = """{
  "clientVersion": {
    "major": "1",
    "minor": "25",
    "gitVersion": "v1.25.2",
    "gitCommit": "5835544ca568b757a8ecae5c153f317e5736700e",
    "gitTreeState": "clean",
    "buildDate": "2022-09-21T14:33:49Z",
    "goVersion": "go1.19.1",
    "compiler": "gc",
    "platform": "linux/amd64"
  },
  "kustomizeVersion": "v4.5.7"
}
"""


def test_kubectl_version_json() -> None:
    assert parse_kubectl_version(KUBECTL_JSON) == V("v1.25.2")


def test_kubectl_version_json_after_a_warning() -> None:
    assert parse_kubectl_version("W0101 warning: something\n" + KUBECTL_JSON) == V("v1.25.2")


def test_kubectl_version_short_form() -> None:
    out = "Client Version: v1.28.4\nKustomize Version: v5.0.4-0.20230601165947-6ce0bf390ce3\n"
    assert parse_kubectl_version(out) == V("v1.28.4")


def test_kubectl_version_old_struct_form() -> None:
    out = (
        "WARNING: This version information is deprecated and will be replaced with the output "
        "from kubectl version --short.  Use --output=yaml|json to get the full version.\n"
        'Client Version: version.Info{Major:"1", Minor:"26", GitVersion:"v1.26.2", '
        'GitCommit:"fc04e732bb3e7198d2fa44efa5457c7c6f8c0f5b", GitTreeState:"clean", '
        'BuildDate:"2023-02-22T13:39:03Z", GoVersion:"go1.19.6", Compiler:"gc", '
        'Platform:"linux/amd64"}\n'
        "Kustomize Version: v4.5.7\n"
    )
    assert parse_kubectl_version(out) == V("v1.26.2")


def test_kubectl_vendor_suffix_keeps_the_release() -> None:
    out = '{"clientVersion": {"gitVersion": "v1.28.3-gke.1286000"}}'
    assert parse_kubectl_version(out) == V("v1.28.3")


@pytest.mark.parametrize(
    ("pkg", "kube"),
    [
        ("1.28.4-1.1", "v1.28.4"),
        ("1.28.4-150500.1.1", "v1.28.4"),
        ("1.28.4-00", "v1.28.4"),
        ("0:1.28.4-150500.1.1", "v1.28.4"),
        ("1.30.0~rc.1-1.1", "v1.30.0-rc.1"),
        ("1.29.0", "v1.29.0"),
    ],
)
def test_package_version_to_kube(pkg: str, kube: str) -> None:
    assert package_version_to_kube(pkg) == V(kube)


@pytest.mark.parametrize("bad", ["1.28-00", "latest", "1:528.0.0~x", ""])
def test_package_version_rejects(bad: str) -> None:
    with pytest.raises(ParseError, match="package version"):
        package_version_to_kube(bad)


# --------------------------------------------------------------------------- packages


def test_dpkg_query_held_and_not_held() -> None:
    out = (
        "kubeadm 1.28.4-1.1 hold ok installed\n"
        "kubelet 1.28.4-1.1 install ok installed\n"
        "kubectl 1.28.4-1.1 hold ok installed\n"
    )
    assert parse_dpkg_query(out) == {
        "kubeadm": PackageFact("kubeadm", "1.28.4-1.1", held=True),
        "kubelet": PackageFact("kubelet", "1.28.4-1.1", held=False),
        "kubectl": PackageFact("kubectl", "1.28.4-1.1", held=True),
    }


def test_dpkg_query_partial_output_with_missing_package() -> None:
    # dpkg-query exits 1 and prints this on stderr (merged by the fact script)
    out = (
        "dpkg-query: no packages found matching kubectl\n"
        "kubeadm 1.27.8-1.1 hold ok installed\n"
        "kubelet 1.27.8-1.1 hold ok installed\n"
    )
    got = parse_dpkg_query(out)
    assert set(got) == {"kubeadm", "kubelet"}
    assert got["kubeadm"].version == "1.27.8-1.1"


def test_dpkg_query_skips_removed_and_unknown() -> None:
    out = (
        "kubeadm 1.28.4-00 deinstall ok config-files\n"
        "kubectl  unknown ok not-installed\n"
        "kubelet 1.28.4-00 install ok installed\n"
    )
    assert list(parse_dpkg_query(out)) == ["kubelet"]


def test_apt_mark_showhold() -> None:
    assert parse_apt_mark_showhold("kubeadm\nkubectl\nkubelet\n") == {
        "kubeadm",
        "kubectl",
        "kubelet",
    }
    assert parse_apt_mark_showhold("") == frozenset()
    assert parse_apt_mark_showhold("libc6:amd64\n") == {"libc6"}


def test_apt_cache_madison_pkgs_k8s_io() -> None:
    out = (
        "   kubeadm | 1.28.4-1.1 | https://pkgs.k8s.io/core:/stable:/v1.28/deb  Packages\n"
        "   kubeadm | 1.28.3-1.1 | https://pkgs.k8s.io/core:/stable:/v1.28/deb  Packages\n"
        "   kubeadm | 1.28.0-1.1 | https://pkgs.k8s.io/core:/stable:/v1.28/deb  Packages\n"
    )
    assert parse_apt_cache_madison(out) == ("1.28.4-1.1", "1.28.3-1.1", "1.28.0-1.1")


def test_apt_cache_madison_legacy_and_duplicates() -> None:
    out = (
        "   kubeadm |  1.23.4-00 | https://apt.kubernetes.io kubernetes-xenial/main "
        "amd64 Packages\n"
        "   kubeadm |  1.23.4-00 | https://apt.kubernetes.io kubernetes-xenial/main "
        "arm64 Packages\n"
        "N: Unable to locate package kubeadmx\n"
    )
    assert parse_apt_cache_madison(out) == ("1.23.4-00",)


def test_apt_cache_madison_empty() -> None:
    assert parse_apt_cache_madison("") == ()


def test_rpm_query_multi_and_not_installed() -> None:
    out = "kubeadm 1.28.4-150500.1.1\nkubelet 1.28.4-150500.1.1\npackage kubectl is not installed\n"
    assert parse_rpm_query(out) == {
        "kubeadm": PackageFact("kubeadm", "1.28.4-150500.1.1"),
        "kubelet": PackageFact("kubelet", "1.28.4-150500.1.1"),
    }


def test_rpm_query_single_package_form() -> None:
    assert parse_rpm_query("1.28.4-150500.1.1\n", package="kubeadm") == {
        "kubeadm": PackageFact("kubeadm", "1.28.4-150500.1.1")
    }
    assert parse_rpm_query("package kubeadm is not installed\n", package="kubeadm") == {}


def test_versionlock_dnf_and_yum() -> None:
    dnf = (
        "Last metadata expiration check: 0:05:24 ago on Tue 21 Nov 2023 10:00:00 AM UTC.\n"
        "kubeadm-0:1.28.4-150500.1.1.*\n"
        "cri-tools-0:1.28.0-150500.1.1.*\n"
    )
    assert parse_versionlock_list(dnf) == {"kubeadm", "cri-tools"}
    yum = (
        "Loaded plugins: fastestmirror, versionlock\n"
        "0:kubelet-1.28.4-150500.1.1.*\n"
        "versionlock list done\n"
    )
    assert parse_versionlock_list(yum) == {"kubelet"}
    assert (
        parse_versionlock_list("No such command: versionlock. Please use /usr/bin/dnf --help\n")
        == set()
    )


def test_dnf_list_showduplicates() -> None:
    out = (
        "Last metadata expiration check: 0:00:12 ago on Tue 21 Nov 2023 10:00:00 AM UTC.\n"
        "Installed Packages\n"
        "kubeadm.x86_64                 1.28.3-150500.1.1                  @kubernetes\n"
        "Available Packages\n"
        "kubeadm.aarch64                1.28.0-150500.1.1                  kubernetes\n"
        "kubeadm.x86_64                 1.28.0-150500.1.1                  kubernetes\n"
        "kubeadm.x86_64                 1.28.3-150500.1.1                  kubernetes\n"
        "kubeadm.x86_64                 1.28.4-150500.1.1                  kubernetes\n"
    )
    assert parse_dnf_list(out) == ("1.28.0-150500.1.1", "1.28.3-150500.1.1", "1.28.4-150500.1.1")
    assert parse_dnf_list("Error: No matching Packages to list\n") == ()


def test_yum_list_wrapped_rows_and_epoch() -> None:
    out = (
        "Loaded plugins: fastestmirror\n"
        "Available Packages\n"
        "kubeadm.x86_64\n"
        "                     0:1.27.8-150500.1.1                 kubernetes\n"
    )
    assert parse_dnf_list(out) == ("1.27.8-150500.1.1",)


# --------------------------------------------------------------------------- os / repos

DEBIAN_OS_RELEASE = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
"""
UBUNTU_OS_RELEASE = """PRETTY_NAME="Ubuntu 22.04.3 LTS"
NAME="Ubuntu"
VERSION_ID="22.04"
ID=ubuntu
ID_LIKE=debian
"""
ROCKY_OS_RELEASE = """NAME="Rocky Linux"
VERSION="9.3 (Blue Onyx)"
ID="rocky"
ID_LIKE="rhel centos fedora"
VERSION_ID="9.3"
PLATFORM_ID="platform:el9"
PRETTY_NAME="Rocky Linux 9.3 (Blue Onyx)"
"""
ALMA_OS_RELEASE = """NAME="AlmaLinux"
ID="almalinux"
ID_LIKE="rhel centos fedora"
VERSION_ID="8.9"
"""


@pytest.mark.parametrize(
    ("text", "os_id", "family"),
    [
        (DEBIAN_OS_RELEASE, "debian", "debian"),
        (UBUNTU_OS_RELEASE, "ubuntu", "debian"),
        (ROCKY_OS_RELEASE, "rocky", "rhel"),
        (ALMA_OS_RELEASE, "almalinux", "rhel"),
        ('ID=linuxmint\nID_LIKE="ubuntu debian"\n', "linuxmint", "debian"),
        ("ID=arch\n", "arch", None),
    ],
)
def test_os_release(text: str, os_id: str, family: str | None) -> None:
    got = parse_os_release(text)
    assert (got.id, got.family) == (os_id, family)


def test_os_release_fields() -> None:
    assert parse_os_release(ROCKY_OS_RELEASE).version_id == "9.3"


def test_apt_source_pkgs_k8s_io() -> None:
    text = (
        "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] "
        "https://pkgs.k8s.io/core:/stable:/v1.28/deb/ /\n"
    )
    info = parse_apt_source(text)
    assert (info.minor, info.flavour) == ("1.28", "pkgs.k8s.io")


def test_apt_source_comments_first_active_line_and_deb822() -> None:
    text = (
        "# deb https://pkgs.k8s.io/core:/stable:/v1.27/deb/ /\n"
        "deb https://pkgs.k8s.io/core:/stable:/v1.29/deb/ /\n"
    )
    assert parse_apt_source(text).minor == "1.29"
    deb822 = (
        "Types: deb\nURIs: https://pkgs.k8s.io/core:/stable:/v1.30/deb/\nSuites: /\n"
        "Signed-By: /etc/apt/keyrings/kubernetes-apt-keyring.gpg\n"
    )
    assert parse_apt_source(deb822).minor == "1.30"


def test_apt_source_legacy() -> None:
    info = parse_apt_source("deb https://apt.kubernetes.io/ kubernetes-xenial main\n")
    assert (info.minor, info.flavour) == (None, "legacy")
    info = parse_apt_source(
        "deb [signed-by=/etc/apt/keyrings/kubernetes-archive-keyring.gpg] "
        "https://packages.cloud.google.com/apt kubernetes-xenial main\n"
    )
    assert (info.minor, info.flavour) == (None, "legacy")


YUM_REPO = """[kubernetes]
name=Kubernetes
baseurl=https://pkgs.k8s.io/core:/stable:/v1.28/rpm/
enabled=1
gpgcheck=1
gpgkey=https://pkgs.k8s.io/core:/stable:/v1.28/rpm/repodata/repomd.xml.key
exclude=kubelet kubeadm kubectl cri-tools kubernetes-cni
"""


def test_yum_repo_pkgs_k8s_io_with_excludes() -> None:
    info = parse_yum_repo(YUM_REPO)
    assert (info.minor, info.flavour) == ("1.28", "pkgs.k8s.io")
    assert info.excludes == ("kubelet", "kubeadm", "kubectl", "cri-tools", "kubernetes-cni")
    assert excluded("kubeadm", info.excludes)
    assert not excluded("containerd", info.excludes)


def test_yum_repo_legacy_and_glob_exclude() -> None:
    text = (
        "[kubernetes]\nname=Kubernetes\n"
        "baseurl=https://packages.cloud.google.com/yum/repos/kubernetes-el7-x86_64\n"
        "enabled=1\ngpgcheck=1\nexclude=kube*\n"
    )
    info = parse_yum_repo(text)
    assert (info.minor, info.flavour) == (None, "legacy")
    assert excluded("kubelet", info.excludes)


def test_yum_repo_commented_exclude() -> None:
    text = YUM_REPO.replace("exclude=", "#exclude=")
    assert parse_yum_repo(text).excludes == ()


def test_repo_url_mirror() -> None:
    info = parse_repo_url("https://mirror.example.org/k8s/v1.31/deb/")
    assert (info.minor, info.flavour) == ("1.31", "mirror")
    info = parse_repo_url("https://pkgs.k8s.io/core:/prerelease:/v1.32/rpm/")
    assert (info.minor, info.flavour) == ("1.32", "pkgs.k8s.io")


# --------------------------------------------------------------------------- runtime


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (
            "runtime=containerd\ncontainerd github.com/containerd/containerd v1.7.2 "
            "0cae528dd6cb557f7201036e9f43420650207b58\n",
            "containerd://1.7.2",
        ),
        (
            "runtime=containerd\ncontainerd containerd.io 1.6.21 "
            "3dce8eb055cbb6872793272b4f20ed16117344f8\n",
            "containerd://1.6.21",
        ),
        ("runtime=crio\ncrio version 1.28.1\nVersion:        1.28.1\n", "cri-o://1.28.1"),
        ("runtime=crio\nVersion:        1.29.1\nGitCommit:      78e179ba\n", "cri-o://1.29.1"),
        ("runtime=dockerd\nDocker version 24.0.7, build 311b9ff\n", "docker://24.0.7"),
    ],
)
def test_container_runtime(text: str, want: str) -> None:
    assert parse_container_runtime(text) == want


# --------------------------------------------------------------------------- sections


def test_split_sections_truncated_output() -> None:
    out = "noise\n@@upgrader:a\nx\n\n@@upgrader:rc=0\n@@upgrader:b\npartial"
    got = split_sections(out)
    assert got["a"] == Section("a", "x\n", 0)
    assert got["b"] == Section("b", "partial", None)
    assert split_sections("") == {}


def test_fact_probes_unknown_manager() -> None:
    with pytest.raises(ValueError, match="unknown package manager 'zypper'"):
        fact_script("zypper")


GOLDEN_APT = r"""export LC_ALL=C
export PATH="$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
exec 4>&1
echo '@@upgrader:os_release'
_rc=$( { { { cat /etc/os-release; } </dev/null 2>&1 3>&- 4>&-; echo "$?" >&3; } | head -c 262145 >&4; } 3>&1 )
printf '\n@@upgrader:rc=%s\n' "$_rc"
echo '@@upgrader:kubeadm'
_rc=$( { { { kubeadm version -o short; } </dev/null 2>&1 3>&- 4>&-; echo "$?" >&3; } | head -c 262145 >&4; } 3>&1 )
printf '\n@@upgrader:rc=%s\n' "$_rc"
echo '@@upgrader:kubelet'
_rc=$( { { { kubelet --version; } </dev/null 2>&1 3>&- 4>&-; echo "$?" >&3; } | head -c 262145 >&4; } 3>&1 )
printf '\n@@upgrader:rc=%s\n' "$_rc"
echo '@@upgrader:kubectl'
_rc=$( { { { kubectl version --client -o json; } </dev/null 2>&1 3>&- 4>&-; echo "$?" >&3; } | head -c 262145 >&4; } 3>&1 )
printf '\n@@upgrader:rc=%s\n' "$_rc"
echo '@@upgrader:packages'
_rc=$( { { { dpkg-query -W -f='${Package} ${Version} ${Status}\n' kubeadm kubelet kubectl cri-tools kubernetes-cni; } </dev/null 2>&1 3>&- 4>&-; echo "$?" >&3; } | head -c 262145 >&4; } 3>&1 )
printf '\n@@upgrader:rc=%s\n' "$_rc"
echo '@@upgrader:holds'
_rc=$( { { { apt-mark showhold; } </dev/null 2>&1 3>&- 4>&-; echo "$?" >&3; } | head -c 262145 >&4; } 3>&1 )
printf '\n@@upgrader:rc=%s\n' "$_rc"
echo '@@upgrader:repo'
_rc=$( { { { cat /etc/apt/sources.list.d/kubernetes.list; } </dev/null 2>&1 3>&- 4>&-; echo "$?" >&3; } | head -c 262145 >&4; } 3>&1 )
printf '\n@@upgrader:rc=%s\n' "$_rc"
echo '@@upgrader:repo_versions'
_rc=$( { { { apt-cache madison kubeadm; } </dev/null 2>&1 3>&- 4>&-; echo "$?" >&3; } | head -c 262145 >&4; } 3>&1 )
printf '\n@@upgrader:rc=%s\n' "$_rc"
echo '@@upgrader:kubelet_config'
_rc=$( { { { cat /var/lib/kubelet/config.yaml; } </dev/null 2>&1 3>&- 4>&-; echo "$?" >&3; } | head -c 262145 >&4; } 3>&1 )
printf '\n@@upgrader:rc=%s\n' "$_rc"
echo '@@upgrader:runtime'
_rc=$( { { { ( for rt in containerd crio dockerd; do
  if command -v "$rt" >/dev/null 2>&1; then echo "runtime=$rt"; "$rt" --version; exit; fi
done; exit 127 ); } </dev/null 2>&1 3>&- 4>&-; echo "$?" >&3; } | head -c 262145 >&4; } 3>&1 )
printf '\n@@upgrader:rc=%s\n' "$_rc"
echo '@@upgrader:kubelet_flags'
_rc=$( { { { for f in /var/lib/kubelet/kubeadm-flags.env /etc/default/kubelet /etc/sysconfig/kubelet; do
  if [ -r "$f" ]; then cat "$f"; fi
done; true; } </dev/null 2>&1 3>&- 4>&-; echo "$?" >&3; } | head -c 262145 >&4; } 3>&1 )
printf '\n@@upgrader:rc=%s\n' "$_rc"
echo '@@upgrader:docker_daemon'
_rc=$( { { { cat /etc/docker/daemon.json; } </dev/null 2>&1 3>&- 4>&-; echo "$?" >&3; } | head -c 262145 >&4; } 3>&1 )
printf '\n@@upgrader:rc=%s\n' "$_rc"
echo '@@upgrader:dockerd'
_rc=$( { { { for p in /proc/[0-9]*; do
  { read -r c < "$p/comm"; } 2>/dev/null || continue
  [ "$c" = dockerd ] || continue
  tr '\000' ' ' < "$p/cmdline" 2>/dev/null; echo
done; true; } </dev/null 2>&1 3>&- 4>&-; echo "$?" >&3; } | head -c 262145 >&4; } 3>&1 )
printf '\n@@upgrader:rc=%s\n' "$_rc"
echo '@@upgrader:certs'
_rc=$( { { { for f in /etc/kubernetes/pki/*.crt /etc/kubernetes/pki/etcd/*.crt; do
  [ -f "$f" ] || continue
  printf '%s ' "$f"; openssl x509 -noout -enddate -in "$f" 2>&1 | head -n 1
done; true; } </dev/null 2>&1 3>&- 4>&-; echo "$?" >&3; } | head -c 262145 >&4; } 3>&1 )
printf '\n@@upgrader:rc=%s\n' "$_rc"
echo '@@upgrader:node_lock'
_rc=$( { { { command -v flock && if [ -e /run/upgrader ] || [ -L /run/upgrader ]; then [ ! -L /run/upgrader ] && [ -n "$(find /run/upgrader -prune -type d -user 0 ! -perm -020 ! -perm -002 -print 2>/dev/null)" ]; else test -d /run; fi; } </dev/null 2>&1 3>&- 4>&-; echo "$?" >&3; } | head -c 262145 >&4; } 3>&1 )
printf '\n@@upgrader:rc=%s\n' "$_rc"
echo '@@upgrader:cgroup'
_rc=$( { { { stat -fc %T /sys/fs/cgroup/; } </dev/null 2>&1 3>&- 4>&-; echo "$?" >&3; } | head -c 262145 >&4; } 3>&1 )
printf '\n@@upgrader:rc=%s\n' "$_rc"
echo '@@upgrader:kube_binaries'
_rc=$( { { { owned=$(set --; for b in kubeadm kubelet kubectl; do
  p=$(command -v "$b" 2>/dev/null) && set -- "$@" "$p"; done
  [ "$#" -gt 0 ] && command -v dpkg-query >/dev/null 2>&1 && dpkg-query -S "$@" 2>/dev/null)
for b in kubeadm kubelet kubectl; do
  p=$(command -v "$b" 2>/dev/null) || { echo "$b - -"; continue; }
  o=
  if command -v dpkg-query >/dev/null 2>&1; then
    o=$(printf '%s\n' "$owned" | P=": $p" awk 'substr($0, length($0) - length(ENVIRON["P"]) + 1) == ENVIRON["P"] {print; exit}' | cut -d: -f1)
  elif command -v rpm >/dev/null 2>&1; then
    o=$(rpm -qf --qf '%{NAME}\n' "$p" 2>/dev/null) || o=
  fi
  echo "$b $p ${o:--}"
done; true; } </dev/null 2>&1 3>&- 4>&-; echo "$?" >&3; } | head -c 262145 >&4; } 3>&1 )
printf '\n@@upgrader:rc=%s\n' "$_rc"
echo '@@upgrader:kubelet_unit'
_rc=$( { { { for d in /etc/systemd/system /usr/lib/systemd/system /lib/systemd/system; do
  if [ -r "$d/kubelet.service" ]; then cat "$d/kubelet.service"; break; fi
done
for f in /etc/systemd/system/kubelet.service.d/*.conf \
    /usr/lib/systemd/system/kubelet.service.d/*.conf; do
  if [ -r "$f" ]; then cat "$f"; fi
done; true; } </dev/null 2>&1 3>&- 4>&-; echo "$?" >&3; } | head -c 262145 >&4; } 3>&1 )
printf '\n@@upgrader:rc=%s\n' "$_rc"
echo '@@upgrader:crictl'
_rc=$( { { { crictl --version; } </dev/null 2>&1 3>&- 4>&-; echo "$?" >&3; } | head -c 262145 >&4; } 3>&1 )
printf '\n@@upgrader:rc=%s\n' "$_rc"
"""  # noqa: E501 - the fact script as upgrader sends it


def test_fact_script_golden_apt() -> None:
    assert fact_script("apt") == GOLDEN_APT


def test_fact_script_golden_dnf_differs_only_in_package_probes() -> None:
    dnf = fact_script("dnf")
    assert "{ rpm -q --qf '%{NAME} %{VERSION}-%{RELEASE}\\n' kubeadm kubelet kubectl; }" in dnf
    assert "{ dnf -q versionlock list; }" in dnf
    assert "{ cat /etc/yum.repos.d/kubernetes.repo; }" in dnf
    # dnf4 takes --disableexcludes, dnf5 (Fedora 41+, kubernetes/website#52027) the setopt
    assert (
        "{ if dnf --version 2>/dev/null | grep -q '^dnf5 '; then "
        "dnf list --showduplicates kubeadm --setopt=disable_excludes=kubernetes; "
        "else dnf list --showduplicates kubeadm --disableexcludes=kubernetes; fi; }"
    ) in dnf
    assert "{ dnf --version; }" in dnf
    assert "dpkg-query -W" not in dnf and "apt-" not in dnf
    assert fact_script("dnf5") == dnf
    assert "{ yum -q versionlock list; }" in fact_script("yum")


# --------------------------------------------------------------------------- dnf5, binaries


def test_dnf_version_tells_dnf4_from_dnf5() -> None:
    """dnf4 prints its bare version first (dnf/cli/cli.py), dnf5 "dnf5 version 5.x"
    (dnf5/main.cpp); yum 3 a bare 3.x."""
    assert parse_dnf_version("4.14.0\n  Installed: dnf-0:4.14.0-9.el9.noarch at Tue\n") == 4
    assert parse_dnf_version("dnf5 version 5.2.8.1\ndnf5 plugin API version 2.0\n") == 5
    assert parse_dnf_version("3.4.3\n  Installed: rpm-4.11.3-45.el7.x86_64\n") == 3
    assert parse_dnf_version("sh: dnf: not found\n") is None


def test_dnf5_versionlock_list_and_listing() -> None:
    """dnf5 versionlock list prints VersionlockPackage::to_string (libdnf5
    rpm/versionlock_config.cpp); dnf5 list titles its sections in lower case."""
    text = (
        "# Added by 'versionlock add' command on 2024-01-08 10:00:00\n"
        "Package name: kubeadm\n"
        "evr = 1.27.8-150500.1.1\n"
        "\n"
        "Package name: kubelet\n"
        "evr = 1.27.8-150500.1.1\n"
    )
    assert parse_versionlock_list(text) == {"kubeadm", "kubelet"}
    # dnf4's `versionlock exclude` entries (!name) are not locks
    assert parse_versionlock_list("!kubectl-0:1.27.8-150500.1.1.*\n") == frozenset()
    listing = (
        "Installed packages\n"
        "kubeadm.x86_64   1.27.8-150500.1.1   kubernetes\n"
        "\n"
        "Available packages\n"
        "kubeadm.x86_64   1.27.9-150500.1.1   kubernetes\n"
        "kubeadm.x86_64   1.28.0-150500.1.1   kubernetes\n"
    )
    assert parse_dnf_list(listing) == ("1.27.9-150500.1.1", "1.28.0-150500.1.1")


def test_kube_binaries_and_the_kubelet_units_execstart() -> None:
    """Kubespray: bin_dir /usr/local/bin, ExecStart={{ bin_dir }}/kubelet (roles/kubernetes/
    node/templates/kubelet.service.j2); kubeadm's drop-in resets ExecStart= first."""
    found = parse_kube_binaries(
        "kubeadm /usr/local/bin/kubeadm -\nkubelet /usr/bin/kubelet kubelet\nkubectl - -\n"
    )
    assert {n: (b.path, b.owner) for n, b in found.items()} == {
        "kubeadm": ("/usr/local/bin/kubeadm", None),
        "kubelet": ("/usr/bin/kubelet", "kubelet"),
    }
    kubespray = "[Service]\nExecStart=/usr/local/bin/kubelet \\\n\t\t$KUBE_LOGTOSTDERR \\\n"
    assert parse_unit_execstart(kubespray) == "/usr/local/bin/kubelet"
    kubeadm = (
        "[Service]\nExecStart=/usr/bin/kubelet\n"
        "[Service]\nExecStart=\nExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS\n"
    )
    assert parse_unit_execstart(kubeadm) == "/usr/bin/kubelet"
    assert parse_unit_execstart("") is None


# --------------------------------------------------------------------------- kubeadm-config


def test_kubeadm_etcd_local_and_external() -> None:
    assert parse_kubeadm_etcd("kind: ClusterConfiguration\nkubernetesVersion: v1.28.4\n") == ()
    assert parse_kubeadm_etcd("etcd:\n  local:\n    dataDir: /var/lib/etcd\n") == ()
    text = (
        "etcd:\n  external:\n    endpoints:\n    - https://10.0.0.5:2379\n"
        "    - https://10.0.0.6:2379\n    caFile: /etc/kubernetes/pki/etcd/ca.crt\n"
    )
    assert parse_kubeadm_etcd(text) == ("https://10.0.0.5:2379", "https://10.0.0.6:2379")


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("parser", "text", "names"),
    [
        (parse_kubelet_version, "kubelet: command not found\n", r"Kubernetes v1\.28\.4"),
        (parse_kubectl_version, "error: unknown flag: --client\n", "kubectl version"),
        (parse_dpkg_query, "kubeadm\n", "dpkg-query"),
        (
            parse_apt_mark_showhold,
            "E: Could not open lock file /var/lib/dpkg/lock-frontend\n",
            "apt-mark",
        ),
        (parse_apt_cache_madison, "Segmentation fault\n", "madison"),
        (parse_rpm_query, "error: rpmdb: BDB0113 Thread/process failed\n", "rpm -q"),
        (
            parse_os_release,
            "cat: /etc/os-release: No such file or directory\n",
            "os-release: no ID",
        ),
        (
            parse_apt_source,
            "cat: /etc/apt/sources.list.d/kubernetes.list: No such file\n",
            "apt source",
        ),
        (parse_apt_source, "deb https://example.com/debian bookworm main\n", r"no '/v1\.N/deb/'"),
        (
            parse_yum_repo,
            "cat: /etc/yum.repos.d/kubernetes.repo: No such file or directory\n",
            "yum repo",
        ),
        (parse_container_runtime, "", "container runtime"),
        (parse_kubeadm_etcd, "etcd:\n  external: {}\n", "no endpoints"),
        (parse_kubeadm_etcd, "etcd: [\n", "not YAML"),
    ],
)
def test_a_parser_refuses_what_its_command_did_not_print(
    parser: Callable[[str], object], text: str, names: str
) -> None:
    with pytest.raises(ParseError, match=names):
        parser(text)
