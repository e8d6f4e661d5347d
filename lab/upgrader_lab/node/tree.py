"""Each lab node's file tree, and the simulated "binaries" installed into it.

Owns the layout of ``DIR/nodes/NAME/``: ``root/`` (the node's own layer of each
``OVERLAID`` directory, laid over the host's by the wrapper), ``node.json`` (what the node
tools need to know about their node: role, OS family, faults, delays), ``calls.jsonl``,
``faults.json``; the contents of the files a kubeadm node has (static pod manifests,
kubelet config, os-release; for rhel nodes the repository definition and the simulated
package database, Debian nodes get theirs from the real dpkg: ``upgrader_lab.debnode``);
the mtimes systemd compares for the kubelet unit; the simulated
``kubeadm``/``kubelet``/``kubectl`` scripts (one text per tool and version, so their sha256
differs per version) and ``DIR/releases/vX.Y.Z/<tool>.sha256`` matching them.

Also owns how a shim starts its tool (:func:`tool_command`: ``python -S``, no runpy) and
the tools' byte code, compiled once at ``lab up`` (:func:`precompile_tools`).

Must not: import anything beyond the standard library and ``upgrader_lab.node.repo``
(node tools import it to install packages; ``precompile_tools`` also reaches the
``upgrader`` package to compile it), import at module level what a tool call does not
need (every call is a fresh process), or decide policy.
"""

from __future__ import annotations

import contextlib
import json
import os
from _thread import get_ident
from pathlib import Path

from upgrader_lab.node import repo

# Annotations only: importing typing costs every simulated tool call several ms of
# start-up (mypy and ruff read TYPE_CHECKING by name).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

BINARIES = ("kubeadm", "kubelet", "kubectl")
# Shims on Debian nodes: the node's faults and call log, then the machine's real tool.
DEBIAN_TOOLS = ("apt-get", "apt", "apt-mark", "apt-cache", "dpkg-query", "dpkg")
RHEL_TOOLS = ("dnf", "yum", "rpm")
COMMON_TOOLS = ("systemctl", "curl", "gpg")
RUNTIME_TOOLS = {"containerd": "containerd", "cri-o": "crio", "docker": "dockerd"}
# cri-tools' crictl: every kubeadm node has it (kubeadm's package depends on cri-tools).
# Installed by install_cri_tools() until the lab's packages carry it.
CRI_TOOLS = ("crictl",)
CONTROL_PLANE_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
# Host paths a rhel node must not see (the host is Debian): masked with overlay whiteouts.
RHEL_MASKED = (
    "/usr/bin/apt",
    "/usr/bin/apt-get",
    "/usr/bin/apt-cache",
    "/usr/bin/apt-mark",
    "/usr/bin/apt-config",
    "/usr/bin/dpkg",
    "/usr/bin/dpkg-query",
    "/etc/debian_version",
)
DEFAULT_REPOSITORY = "registry.k8s.io"  # kubeadm's default imageRepository
STATE = "var/lib/upgrader-lab"  # package db, apt lists, images: relative to the node root
# The host directories a node has its own layer of: real dpkg installs into /usr/lib
# (kubelet's unit), /opt (CNI plugins); apt and dpkg write /var/cache and /var/log;
# Kubespray's binaries live in /usr/local/bin.
OVERLAID = ("etc", "usr/bin", "var/lib", "usr/lib", "opt", "var/cache", "var/log", "usr/local/bin")
# Kubespray's bin_dir (roles/kubespray_defaults/defaults/main/main.yml): its kube binaries
# and etcd live there, owned by no package.
KUBESPRAY_BIN = "/usr/local/bin"
KUBESPRAY_ETCD_CERTS = "/etc/ssl/etcd/ssl"  # etcd_cert_dir
DNF_CONF = "/etc/dnf/dnf.conf"
DNF4_VERSIONLOCK_LIST = "/etc/dnf/plugins/versionlock.list"
DNF4_VERSIONLOCK_CONF = "/etc/dnf/plugins/versionlock.conf"
DNF5_VERSIONLOCK = "/etc/dnf/versionlock.toml"

# Component versions kubeadm of each minor deploys (approximate, for realistic output).
# etcd: kubeadm's constants.SupportedEtcdVersion (3.5.x up to 1.33, 3.6.x from 1.34); the
# same table as the lab API's mirror pods (upgrader_lab.apiserver.objects imports them).
ETCD_BY_MINOR = {
    24: "3.5.6-0",
    25: "3.5.6-0",
    26: "3.5.6-0",
    27: "3.5.7-0",
    28: "3.5.9-0",
    29: "3.5.10-0",
    30: "3.5.12-0",
    31: "3.5.15-0",
    32: "3.5.16-0",
    33: "3.5.21-0",
}
COREDNS_BY_MINOR = {
    24: "v1.8.6",
    25: "v1.9.3",
    26: "v1.9.3",
    27: "v1.10.1",
    28: "v1.10.1",
    29: "v1.11.1",
    30: "v1.11.1",
    31: "v1.11.3",
    32: "v1.11.3",
    33: "v1.12.0",
}
_PAUSE = {
    24: "3.7",
    25: "3.8",
    26: "3.9",
    27: "3.9",
    28: "3.9",
    29: "3.9",
    30: "3.9",
    31: "3.10",
    32: "3.10",
    33: "3.10",
}


def _by_minor(table: dict[int, str], version: str, newer: str) -> str:
    minor = repo.plain_key(repo.plain(version))[1]
    if minor in table:
        return table[minor]
    return newer if minor > max(table) else table[min(table)]


def etcd_version(version: str) -> str:
    return _by_minor(ETCD_BY_MINOR, version, "3.6.4-0")


def coredns_version(version: str) -> str:
    return _by_minor(COREDNS_BY_MINOR, version, "v1.12.1")


def pause_version(version: str) -> str:
    return _by_minor(_PAUSE, version, "3.10.1")


def kubeadm_images(kubeadm_version: str, kubernetes_version: str, repository: str) -> list[str]:
    """The images ``kubeadm config images list/pull`` of ``kubeadm_version`` names for
    ``kubernetes_version`` (``GetControlPlaneImages`` in ``cmd/kubeadm/app/images/images.go``):
    kube-* at the Kubernetes version; CoreDNS and pause at the *running kubeadm's* own
    constants; etcd from that kubeadm's table for the Kubernetes minor (a minor newer than
    the kubeadm falls back to its default etcd). CoreDNS lives under ``coredns/`` only in
    the default registry."""
    tag = kubernetes_version if kubernetes_version.startswith("v") else "v" + kubernetes_version
    tag = tag.replace("+", "_")
    own_minor = repo.plain_key(repo.plain(kubeadm_version))[1]
    k8s_minor = repo.plain_key(repo.plain(kubernetes_version))[1]
    etcd = etcd_version(f"1.{min(own_minor, k8s_minor)}.0")
    dns_repo = f"{repository}/coredns" if repository == DEFAULT_REPOSITORY else repository
    return [
        f"{repository}/kube-apiserver:{tag}",
        f"{repository}/kube-controller-manager:{tag}",
        f"{repository}/kube-scheduler:{tag}",
        f"{repository}/kube-proxy:{tag}",
        f"{dns_repo}/coredns:{coredns_version(kubeadm_version)}",
        f"{repository}/pause:{pause_version(kubeadm_version)}",
        f"{repository}/etcd:{etcd}",
    ]


# --------------------------------------------------------------------------- files


def write_file(path: Path, text: str | bytes, mode: int = 0o644) -> None:
    """Write atomically (temp file in the same directory, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode() if isinstance(text, str) else text
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def node_dir(lab_dir: Path, name: str) -> Path:
    return lab_dir / "nodes" / name


def in_root(root: Path, path: str) -> Path:
    """A node path (``/etc/x``) inside a node root (``/`` in the node's own view)."""
    return root / path.lstrip("/")


# --------------------------------------------------------------------------- scripts


def binary_script(tool: str, version: str, python: str) -> str:
    """The simulated release binary of ``tool`` at ``version``: same text on every node of
    a lab, different per version (that is what the release checksums pin)."""
    return (
        "#!/bin/sh\n"
        f"# {tool} {version} linux/amd64 (upgrader lab: simulated release binary)\n"
        f"LAB_TOOL_VERSION={version}\n"
        "export LAB_TOOL_VERSION\n"
        f"exec {tool_command(python, tool)}\n"
    )


def tool_script(tool: str, python: str) -> str:
    return (
        "#!/bin/sh\n"
        f"# {tool} (upgrader lab: simulated node tool)\n"
        f"exec {tool_command(python, tool)}\n"
    )


# How a shim starts its simulated tool: ``-S`` skips ``site`` (the .pth files, an editable
# install's finder: about a third of a bare start-up) and ``-c`` skips runpy. The wrapper's
# PYTHONPATH (``run_on_node``) names where upgrader and upgrader_lab live; a tool needing a
# third-party package runs ``site`` itself first (:func:`site_packages`).
_TOOL_MAIN = "from upgrader_lab.node.__main__ import main; main()"


def tool_command(python: str, tool: str) -> str:
    """The shell command line (``"$@"`` last) that runs simulated ``tool`` with ``python``."""
    return f"'{python}' -S -c '{_TOOL_MAIN}' {tool} \"$@\""


def precompile_tools() -> None:
    """Byte-compile the simulated tools' modules (and the packages above them) once, at
    ``lab up``: the tools run as the node's login user, who may not write a checkout's
    ``__pycache__``, and would otherwise compile each module again on every call (tens of
    ms of CPU per call). A directory we cannot write is left as it is."""
    import compileall

    import upgrader

    here = Path(__file__).resolve().parent
    with contextlib.suppress(OSError):
        compileall.compile_dir(str(here), maxlevels=0, quiet=2)
        for init in (here.parent / "__init__.py", Path(upgrader.__file__).resolve()):
            compileall.compile_file(str(init), quiet=2)


def site_packages() -> None:
    """Make third-party packages importable in a tool started with ``-S``."""
    import sys

    if sys.flags.no_site:
        import site

        site.main()


SUDO_SCRIPT = """#!/bin/sh
# sudo (upgrader lab: the login user is the node's root already; options are accepted
# and the command runs as is)
shell=
while [ $# -gt 0 ]; do
  case $1 in
    -u|-g|-p|-C|-h|-U|-r|-t|-T|-D) shift 2 ;;
    -i|-s) shell=1; shift ;;
    --) shift; break ;;
    -*) shift ;;
    *) break ;;
  esac
done
if [ $# -eq 0 ]; then echo "usage: sudo [-n] [-u user] command" >&2; exit 1; fi
if [ -n "$shell" ]; then exec /bin/sh -c "$*"; fi
exec "$@"
"""


def binary_version(path: Path) -> str | None:
    """The version a simulated binary says it is (its ``LAB_TOOL_VERSION`` line)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(512).decode("utf-8", "replace")
    except OSError:
        return None
    for line in head.splitlines():
        if line.startswith("LAB_TOOL_VERSION="):
            return line.split("=", 1)[1].strip()
    return None


def install_binary(
    root: Path, tool: str, version: str, python: str, bindir: str = "/usr/bin"
) -> None:
    write_file(in_root(root, f"{bindir}/{tool}"), binary_script(tool, version, python), 0o755)


def install_cri_tools(root: Path, python: str) -> None:
    """``/usr/bin/crictl``: the one place the lab installs cri-tools' binary (the payload
    of a cri-tools package is :func:`tool_script` ``("crictl", python)``)."""
    for tool in CRI_TOOLS:
        write_file(in_root(root, f"/usr/bin/{tool}"), tool_script(tool, python), 0o755)


KUBELET_UNIT_FILES = (
    "/usr/lib/systemd/system/kubelet.service",
    "/usr/lib/systemd/system/kubelet.service.d",
)


def kubelet_unit_mtimes(root: Path) -> dict[str, float]:
    """mtime of the kubelet unit and each drop-in (what systemd compares to decide that a
    unit changed on disk since the last daemon-reload)."""
    unit, dropins = (in_root(root, p) for p in KUBELET_UNIT_FILES)
    out: dict[str, float] = {}
    for f in [unit, *(sorted(dropins.glob("*.conf")) if dropins.is_dir() else [])]:
        with contextlib.suppress(OSError):
            out[f.name] = f.stat().st_mtime
    return out


def write_release_checksums(lab_dir: Path, versions: list[str], python: str) -> None:
    """``DIR/releases/vX.Y.Z/<tool>.sha256``: the hex digest only, like dl.k8s.io's."""
    import hashlib  # building the lab only: not in every tool call's imports

    for plain in versions:
        version = f"v{plain}"
        out = lab_dir / "releases" / version
        out.mkdir(parents=True, exist_ok=True)
        for tool in BINARIES:
            digest = hashlib.sha256(binary_script(tool, version, python).encode()).hexdigest()
            (out / f"{tool}.sha256").write_text(digest)


# --------------------------------------------------------------------------- texts


def _etcd_manifest(
    version: str, address: str, node: str, repository: str = DEFAULT_REPOSITORY
) -> str:
    """``/etc/kubernetes/manifests/etcd.yaml`` as kubeadm writes it
    (``cmd/kubeadm/app/phases/etcd/local.go`` GetEtcdPodSpec/getEtcdCommand): hostPath
    volumes ``etcd-data`` (the data dir) and ``etcd-certs`` (``/etc/kubernetes/pki/etcd``),
    the image ``registry.k8s.io/etcd:<SupportedEtcdVersion of the minor>``."""
    name = node or "node"
    flags = [
        f"--advertise-client-urls=https://{address}:2379",
        "--cert-file=/etc/kubernetes/pki/etcd/server.crt",
        "--client-cert-auth=true",
        "--data-dir=/var/lib/etcd",
        "--experimental-initial-corrupt-check=true",
        "--experimental-watch-progress-notify-interval=5s",
        f"--initial-advertise-peer-urls=https://{address}:2380",
        f"--initial-cluster={name}=https://{address}:2380",
        "--key-file=/etc/kubernetes/pki/etcd/server.key",
        f"--listen-client-urls=https://127.0.0.1:2379,https://{address}:2379",
        "--listen-metrics-urls=http://127.0.0.1:2381",
        f"--listen-peer-urls=https://{address}:2380",
        f"--name={name}",
        "--peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt",
        "--peer-client-cert-auth=true",
        "--peer-key-file=/etc/kubernetes/pki/etcd/peer.key",
        "--peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
        "--snapshot-count=10000",
        "--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
    ]
    probe = [
        "      failureThreshold: {n}",
        "      httpGet:",
        "        host: 127.0.0.1",
        "        path: /{path}",
        "        port: 2381",
        "        scheme: HTTP",
        "      initialDelaySeconds: 10",
        "      periodSeconds: 10",
        "      timeoutSeconds: 15",
    ]
    lines = [
        "apiVersion: v1",
        "kind: Pod",
        "metadata:",
        "  annotations:",
        f"    kubeadm.kubernetes.io/etcd.advertise-client-urls: https://{address}:2379",
        "  creationTimestamp: null",
        "  labels:",
        "    component: etcd",
        "    tier: control-plane",
        "  name: etcd",
        "  namespace: kube-system",
        "spec:",
        "  containers:",
        "  - command:",
        "    - etcd",
        *[f"    - {f}" for f in flags],
        f"    image: {repository}/etcd:{etcd_version(version)}",
        "    imagePullPolicy: IfNotPresent",
        "    livenessProbe:",
        *[x.format(n=8, path="livez") for x in probe],
        "    name: etcd",
        "    readinessProbe:",
        *[x.format(n=3, path="readyz") for x in probe],
        "    resources:",
        "      requests:",
        "        cpu: 100m",
        "        memory: 100Mi",
        "    startupProbe:",
        *[x.format(n=24, path="readyz") for x in probe],
        "    volumeMounts:",
        "    - mountPath: /var/lib/etcd",
        "      name: etcd-data",
        "    - mountPath: /etc/kubernetes/pki/etcd",
        "      name: etcd-certs",
        "  hostNetwork: true",
        "  priority: 2000001000",
        "  priorityClassName: system-node-critical",
        "  securityContext:",
        "    seccompProfile:",
        "      type: RuntimeDefault",
        "  volumes:",
        "  - hostPath:",
        "      path: /etc/kubernetes/pki/etcd",
        "      type: DirectoryOrCreate",
        "    name: etcd-certs",
        "  - hostPath:",
        "      path: /var/lib/etcd",
        "      type: DirectoryOrCreate",
        "    name: etcd-data",
        "status: {}",
    ]
    return "\n".join(lines) + "\n"


def manifest_text(
    component: str,
    version: str,
    address: str,
    node: str = "",
    repository: str = DEFAULT_REPOSITORY,
) -> str:
    if component == "etcd":
        return _etcd_manifest(version, address, node, repository)
    image = f"{repository}/{component}:{version}"
    if component == "kube-apiserver":
        command = [
            "kube-apiserver",
            f"--advertise-address={address}",
            "--anonymous-auth=false",
            "--authorization-mode=Node,RBAC",
            "--client-ca-file=/etc/kubernetes/pki/ca.crt",
            "--etcd-servers=https://127.0.0.1:2379",
            "--secure-port=6443",
        ]
    else:
        command = [
            component,
            f"--authentication-kubeconfig=/etc/kubernetes/{component.split('-', 1)[1]}.conf",
            "--bind-address=127.0.0.1",
            "--leader-elect=true",
        ]
    lines = [
        "apiVersion: v1",
        "kind: Pod",
        "metadata:",
        "  labels:",
        f"    component: {component}",
        "    tier: control-plane",
        f"  name: {component}",
        "  namespace: kube-system",
        "spec:",
        "  containers:",
        "  - command:",
        *[f"    - {c}" for c in command],
        f"    image: {image}",
        "    imagePullPolicy: IfNotPresent",
        f"    name: {component}",
        "  hostNetwork: true",
        "  priorityClassName: system-node-critical",
        "status: {}",
    ]
    return "\n".join(lines) + "\n"


KUBELET_MARKER = "# kubeadm kubelet-config for Kubernetes "


def kubelet_config_text(version: str, cfg: dict[str, Any]) -> str:
    anon = "true" if cfg.get("anonymous_auth") else "false"
    return (
        f"{KUBELET_MARKER}{version} (upgrader lab marker)\n"
        "apiVersion: kubelet.config.k8s.io/v1beta1\n"
        "authentication:\n"
        "  anonymous:\n"
        f"    enabled: {anon}\n"
        "  webhook:\n"
        "    cacheTTL: 0s\n"
        "    enabled: true\n"
        "  x509:\n"
        "    clientCAFile: /etc/kubernetes/pki/ca.crt\n"
        "authorization:\n"
        f"  mode: {cfg.get('authorization_mode', 'Webhook')}\n"
        "  webhook:\n"
        "    cacheAuthorizedTTL: 0s\n"
        "    cacheUnauthorizedTTL: 0s\n"
        "cgroupDriver: systemd\n"
        "clusterDNS:\n"
        "- 10.96.0.10\n"
        "clusterDomain: cluster.local\n"
        "kind: KubeletConfiguration\n"
        f"readOnlyPort: {int(cfg.get('read_only_port', 0))}\n"
        "rotateCertificates: true\n"
        "staticPodPath: /etc/kubernetes/manifests\n"
    )


def set_kubelet_marker(text: str, version: str) -> str:
    lines = text.splitlines(keepends=True)
    marker = f"{KUBELET_MARKER}{version} (upgrader lab marker)\n"
    if lines and lines[0].startswith(KUBELET_MARKER):
        lines[0] = marker
    else:
        lines.insert(0, marker)
    return "".join(lines)


OS_RELEASE = {
    "debian": (
        'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n'
        'NAME="Debian GNU/Linux"\n'
        'VERSION_ID="12"\n'
        'VERSION="12 (bookworm)"\n'
        "VERSION_CODENAME=bookworm\n"
        "ID=debian\n"
        'HOME_URL="https://www.debian.org/"\n'
    ),
    "fedora": (
        'NAME="Fedora Linux"\n'
        'VERSION="41 (Server Edition)"\n'
        "RELEASE_TYPE=stable\n"
        "ID=fedora\n"
        "VERSION_ID=41\n"
        'PLATFORM_ID="platform:f41"\n'
        'PRETTY_NAME="Fedora Linux 41 (Server Edition)"\n'
        'CPE_NAME="cpe:/o:fedoraproject:fedora:41"\n'
        'HOME_URL="https://fedoraproject.org/"\n'
        'VARIANT="Server Edition"\n'
        "VARIANT_ID=server\n"
    ),
    "rhel": (
        'NAME="Rocky Linux"\n'
        'VERSION="9.3 (Blue Onyx)"\n'
        'ID="rocky"\n'
        'ID_LIKE="rhel centos fedora"\n'
        'VERSION_ID="9.3"\n'
        'PLATFORM_ID="platform:el9"\n'
        'PRETTY_NAME="Rocky Linux 9.3 (Blue Onyx)"\n'
        'HOME_URL="https://rockylinux.org/"\n'
    ),
}


REDHAT_RELEASE = {
    "rhel": "Rocky Linux release 9.3 (Blue Onyx)\n",
    "fedora": "Fedora release 41 (Forty One)\n",
}
# /etc/dnf/dnf.conf as Rocky 9 (dnf4) and Fedora 41 (dnf5) ship it: keepcache unset, so 0.
DNF_CONF_TEXT = {
    "rhel": (
        "[main]\n"
        "gpgcheck=1\n"
        "installonly_limit=3\n"
        "clean_requirements_on_remove=True\n"
        "best=True\n"
        "skip_if_unavailable=False\n"
    ),
    "fedora": "# see `man dnf.conf` for defaults and possible options\n\n[main]\n",
}
# python3-dnf-plugin-versionlock (dnf-plugins-core: plugins/versionlock.py, etc/dnf/plugins)
DNF4_VERSIONLOCK_CONF_TEXT = "[main]\nenabled = 1\nlocklist = /etc/dnf/plugins/versionlock.list\n"


def dnf4_versionlock_text(locked: dict[str, str]) -> str:
    """versionlock.list entries as ``dnf versionlock add`` writes them (pkgtup2spec)."""
    lines = [f"\n# Added lock on Mon Jan  8 10:00:00 2024\n{n}-0:{v}.*" for n, v in locked.items()]
    return "".join(line + "\n" for line in lines)


def dnf5_versionlock_text(locked: dict[str, str]) -> str:
    """``/etc/dnf/versionlock.toml`` (dnf5: libdnf5/rpm/versionlock_config.cpp)."""
    out = 'version = "1.0"\n'
    for name, version in locked.items():
        out += (
            "\n[[packages]]\n"
            f'name = "{name}"\n'
            "comment = \"Added by 'versionlock add' command on 2024-01-08 10:00:00\"\n"
            "[[packages.conditions]]\n"
            'key = "evr"\n'
            'comparator = "="\n'
            f'value = "{version}"\n'
        )
    return out


# Kubespray's kubelet unit (roles/kubernetes/node/templates/kubelet.service.j2, rendered
# with container_manager=containerd, bin_dir=/usr/local/bin, kube_config_dir=/etc/kubernetes)
KUBESPRAY_KUBELET_UNIT = """[Unit]
Description=Kubernetes Kubelet Server
Documentation=https://github.com/GoogleCloudPlatform/kubernetes
After=containerd.service
Wants=containerd.service

[Service]
EnvironmentFile=-/etc/kubernetes/kubelet.env
ExecStart=/usr/local/bin/kubelet \\
\t\t$KUBE_LOGTOSTDERR \\
\t\t$KUBE_LOG_LEVEL \\
\t\t$KUBELET_API_SERVER \\
\t\t$KUBELET_ADDRESS \\
\t\t$KUBELET_PORT \\
\t\t$KUBELET_HOSTNAME \\
\t\t$KUBELET_ARGS \\
\t\t$DOCKER_SOCKET \\
\t\t$KUBELET_NETWORK_PLUGIN \\
\t\t$KUBELET_VOLUME_PLUGIN \\
\t\t$KUBELET_CLOUDPROVIDER
Restart=always
RestartSec=10s

[Install]
WantedBy=multi-user.target
"""
# roles/etcd/templates/etcd-host.service.j2
KUBESPRAY_ETCD_UNIT = """[Unit]
Description=etcd
After=network.target

[Service]
Type=notify
User=root
EnvironmentFile=/etc/etcd.env
ExecStart=/usr/local/bin/etcd
NotifyAccess=all
Restart=always
RestartSec=10s
LimitNOFILE=40000

[Install]
WantedBy=multi-user.target
"""


def build_kubespray(root: Path, node: dict[str, Any], python: str) -> None:
    """What Kubespray leaves on a node besides the binaries: the kubelet unit and env file,
    and on etcd (control-plane) nodes etcd as a host service with its certificates."""
    name = node["name"]
    write_file(in_root(root, "/etc/systemd/system/kubelet.service"), KUBESPRAY_KUBELET_UNIT)
    write_file(
        in_root(root, "/etc/kubernetes/kubelet.env"),
        f'KUBELET_HOSTNAME="--hostname-override={name}"\n'
        'KUBELET_ARGS="--config=/etc/kubernetes/kubelet-config.yaml '
        '--kubeconfig=/etc/kubernetes/kubelet.conf"\n',
    )
    if node["role"] != "control-plane":
        return
    etcd = etcd_version(node["control_plane"]).split("-", 1)[0]
    write_file(in_root(root, "/etc/systemd/system/etcd.service"), KUBESPRAY_ETCD_UNIT)
    certs = KUBESPRAY_ETCD_CERTS
    write_file(
        in_root(root, "/etc/etcd.env"),
        f"ETCD_DATA_DIR=/var/lib/etcd\n"
        f"ETCD_ADVERTISE_CLIENT_URLS=https://{node['address']}:2379\n"
        f"ETCD_TRUSTED_CA_FILE={certs}/ca.pem\n"
        f"ETCD_CERT_FILE={certs}/member-{name}.pem\n"
        f"ETCD_KEY_FILE={certs}/member-{name}-key.pem\n"
        f"ETCDCTL_CACERT={certs}/ca.pem\n"
        f"ETCDCTL_CERT={certs}/admin-{name}.pem\n"
        f"ETCDCTL_KEY={certs}/admin-{name}-key.pem\n",
        0o640,
    )
    for base in ("ca", f"admin-{name}", f"member-{name}", f"node-{name}"):
        write_file(in_root(root, f"{certs}/{base}.pem"), fake_pem(f"{base}.crt", name))
        key = "ca-key" if base == "ca" else f"{base}-key"
        write_file(in_root(root, f"{certs}/{key}.pem"), fake_pem(f"{key}.key", name), 0o600)
    write_file(
        in_root(root, f"{KUBESPRAY_BIN}/etcd"),
        "#!/bin/sh\n# etcd (upgrader lab: Kubespray's host etcd binary)\n"
        'case "$1" in --version) '
        f'printf "etcd Version: {etcd}\\nGit SHA: 0\\nGo Version: go1.21\\n'
        'Go OS/Arch: linux/amd64\\n"; exit 0 ;; esac\n'
        'echo "etcd: the lab runs no etcd server" >&2; exit 1\n',
        0o755,
    )
    # Kubespray installs etcdctl on the host beside etcd (the lab's answers: version only)
    write_file(
        in_root(root, f"{KUBESPRAY_BIN}/etcdctl"),
        "#!/bin/sh\n# etcdctl (upgrader lab: Kubespray's host etcdctl)\n"
        'case "$1" in version|--version) '
        f'printf "etcdctl version: {etcd.split("-")[0]}\\nAPI version: 3.5\\n"; exit 0 ;; esac\n'
        'echo "Error: the lab runs no etcd server" >&2; exit 1\n',
        0o755,
    )
    (in_root(root, "/var/lib/etcd/member")).mkdir(parents=True, exist_ok=True)


# --------------------------------------------------------------------------- node build

# What kubeadm leaves under /etc/kubernetes/pki on a control-plane node (placeholders: the
# lab's node tools only check that the files a command names exist).
CONTROL_PLANE_PKI = (
    "ca.crt",
    "ca.key",
    "apiserver.crt",
    "apiserver.key",
    "apiserver-etcd-client.crt",
    "apiserver-etcd-client.key",
    "apiserver-kubelet-client.crt",
    "apiserver-kubelet-client.key",
    "front-proxy-ca.crt",
    "front-proxy-ca.key",
    "front-proxy-client.crt",
    "front-proxy-client.key",
    "sa.key",
    "sa.pub",
    "etcd/ca.crt",
    "etcd/ca.key",
    "etcd/server.crt",
    "etcd/server.key",
    "etcd/peer.crt",
    "etcd/peer.key",
    "etcd/healthcheck-client.crt",
    "etcd/healthcheck-client.key",
)


def fake_pem(name: str, node: str) -> str:
    """A PEM-shaped placeholder (not a usable certificate or key)."""
    kind = (
        "CERTIFICATE"
        if name.endswith(".crt")
        else "PUBLIC KEY"
        if name.endswith(".pub")
        else ("PRIVATE KEY")
    )
    import base64  # rare: not in every tool call's imports

    body = base64.b64encode(f"upgrader lab placeholder {name} of {node}".encode()).decode()
    return f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----\n"


def node_info(node: dict[str, Any], spec: dict[str, Any], lab_dir: Path) -> dict[str, Any]:
    """``DIR/nodes/NAME/node.json``: the slice of spec.json this node's tools need."""
    faults = [
        {"index": i, **f}
        for i, f in enumerate(spec.get("faults") or [])
        if isinstance(f, dict) and f.get("node") == node["name"]
    ]
    return {
        "lab_dir": str(lab_dir),
        "name": node["name"],
        "role": node["role"],
        "os_family": node["os_family"],
        "flavor": node.get("flavor") or node["os_family"],
        "address": node["address"],
        "cluster_name": spec.get("cluster_name", "lab"),
        "runtime": node.get("runtime"),
        "cgroup": node.get("cgroup", "v2"),
        "delays": spec.get("delays") or {},
        "faults": faults,
    }


def build_node(lab_dir: Path, node: dict[str, Any], spec: dict[str, Any], python: str) -> None:
    """Create ``DIR/nodes/NAME`` for one resolved node (first start of a lab only)."""
    ndir = node_dir(lab_dir, node["name"])
    root = ndir / "root"
    for sub in OVERLAID:
        (root / sub).mkdir(parents=True, exist_ok=True)
    (ndir / "work").mkdir(exist_ok=True)
    write_file(ndir / "node.json", json.dumps(node_info(node, spec, lab_dir), indent=1) + "\n")
    (ndir / "calls.jsonl").touch()
    write_file(ndir / "faults.json", "{}\n")
    # read by the wrapper's node-ns script, which mounts /sys/fs/cgroup to match
    write_file(ndir / f"cgroup-{node.get('cgroup', 'v2')}", "")

    family = node["os_family"]
    flavor = node.get("flavor") or family
    write_file(in_root(root, "/etc/hostname"), node["name"] + "\n")
    write_file(
        in_root(root, "/etc/os-release"), OS_RELEASE["fedora" if flavor == "fedora" else family]
    )
    write_file(
        in_root(root, "/etc/upgrader-lab/node.json"),
        json.dumps({"lab_dir": str(lab_dir), "name": node["name"]}) + "\n",
    )
    if family == "rhel":
        write_file(in_root(root, "/etc/redhat-release"), REDHAT_RELEASE[flavor])

    # binaries and tools (Debian nodes get kubeadm, kubelet, kubectl and crictl from real
    # .deb packages: upgrader_lab.debnode; their DEBIAN_TOOLS are shims over the real tools;
    # Kubespray nodes have the binaries in /usr/local/bin and no kube packages)
    if family == "rhel" or flavor == "kubespray":
        bindir = KUBESPRAY_BIN if flavor == "kubespray" else "/usr/bin"
        for tool in BINARIES:
            install_binary(root, tool, node[tool], python, bindir)
    tools = COMMON_TOOLS + (RHEL_TOOLS if family == "rhel" else DEBIAN_TOOLS)
    runtime = str(node.get("runtime") or "").split("://", 1)[0]
    if runtime in RUNTIME_TOOLS:
        tools += (RUNTIME_TOOLS[runtime],)
    for tool in tools:
        write_file(in_root(root, f"/usr/bin/{tool}"), tool_script(tool, python), 0o755)
    write_file(in_root(root, "/usr/bin/sudo"), SUDO_SCRIPT, 0o755)
    if family == "rhel" or flavor == "kubespray":
        install_cri_tools(root, python)

    # package repository definition and package database (rhel: simulated; Debian: the
    # real dpkg database and sources list, written by upgrader_lab.debnode)
    if family == "rhel":
        _build_rpm_state(root, node, flavor)
    if flavor == "kubespray":
        build_kubespray(root, node, python)

    _build_kube_files(root, node, spec, flavor)


def _build_rpm_state(root: Path, node: dict[str, Any], flavor: str) -> None:
    """An rpm node's repository file, dnf configuration, versionlock and package database."""
    family = node["os_family"]
    minor = node["repo_minor"]
    held = set(node.get("held") or [])
    write_file(in_root(root, repo.YUM_REPO), repo.yum_repo_text(minor))
    write_file(in_root(root, DNF_CONF), DNF_CONF_TEXT[flavor])
    locked = {t: repo.package_version(node[t], family) for t in BINARIES if t in held}
    if flavor == "fedora":
        if locked:
            write_file(in_root(root, DNF5_VERSIONLOCK), dnf5_versionlock_text(locked))
    elif node.get("versionlock"):
        write_file(in_root(root, DNF4_VERSIONLOCK_CONF), DNF4_VERSIONLOCK_CONF_TEXT)
        write_file(in_root(root, DNF4_VERSIONLOCK_LIST), dnf4_versionlock_text(locked))
    packages = {
        tool: {"version": repo.package_version(node[tool], family), "held": False}
        for tool in BINARIES
    }  # an rpm node's holds are its versionlock entries
    write_file(
        in_root(root, f"/{STATE}/packages.json"),
        json.dumps({"packages": packages, "unit_changed": False}, indent=1) + "\n",
    )


def _build_kube_files(root: Path, node: dict[str, Any], spec: dict[str, Any], flavor: str) -> None:
    """The kubelet's and kubeadm's files (config, flags, PKI, static pod manifests) and the
    images the node's container runtime holds."""
    is_cp = node["role"] == "control-plane"
    cluster_version = spec["version"]
    write_file(
        in_root(root, "/var/lib/kubelet/config.yaml"),
        kubelet_config_text(cluster_version, node.get("kubelet_config") or {}),
    )
    write_file(
        in_root(root, "/var/lib/kubelet/kubeadm-flags.env"),
        'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///var/run/containerd/'
        f"containerd.sock --pod-infra-container-image=registry.k8s.io/pause:"
        f'{pause_version(node["kubelet"])}"\n',
    )
    (in_root(root, "/etc/kubernetes/manifests")).mkdir(parents=True, exist_ok=True)
    for name in CONTROL_PLANE_PKI if is_cp else ("ca.crt",):
        write_file(
            in_root(root, f"/etc/kubernetes/pki/{name}"),
            fake_pem(name, node["name"]),
            0o600 if name.endswith(".key") else 0o644,
        )
    if is_cp:
        cp_version = node["control_plane"]
        # Kubespray runs etcd as a host service (etcd_deployment_type: host), not a static pod
        local_etcd = spec.get("etcd", "local") != "external" and flavor != "kubespray"
        for component in (*CONTROL_PLANE_COMPONENTS, *(["etcd"] if local_etcd else [])):
            write_file(
                in_root(root, f"/etc/kubernetes/manifests/{component}.yaml"),
                manifest_text(
                    component,
                    cp_version,
                    node["address"],
                    node["name"],
                    str(spec.get("image_repository") or DEFAULT_REPOSITORY),
                ),
                0o600,
            )
        if local_etcd:
            # kubeadm: data dir 0700 (etcd refuses a looser one)
            (in_root(root, "/var/lib/etcd/member")).mkdir(parents=True, exist_ok=True)
            os.chmod(in_root(root, "/var/lib/etcd"), 0o700)
    # The images the node's container runtime holds (what kubeadm pulled when the node was
    # set up): ``/var/lib/upgrader-lab/images.json``, a sorted JSON list of image
    # references, appended to by ``kubeadm config images pull`` and read by crictl.
    registry = str(spec.get("image_repository") or DEFAULT_REPOSITORY)
    if is_cp:
        images = kubeadm_images(node["kubeadm"], node["control_plane"], registry)
    else:
        images = [
            f"{registry}/kube-proxy:{node['kubelet']}",
            f"{registry}/pause:{pause_version(node['kubelet'])}",
        ]
    write_file(in_root(root, f"/{STATE}/images.json"), json.dumps(sorted(images), indent=1) + "\n")


def install_kubeconfig(lab_dir: Path, node: dict[str, Any], kubeconfig: str) -> None:
    """The lab's kubeconfig as the node's ``admin.conf`` (control planes) and
    ``kubelet.conf`` (every node): kubeadm on the node reads the cluster through it."""
    root = node_dir(lab_dir, node["name"]) / "root"
    write_file(in_root(root, "/etc/kubernetes/kubelet.conf"), kubeconfig, 0o600)
    if node["role"] == "control-plane":
        write_file(in_root(root, "/etc/kubernetes/admin.conf"), kubeconfig, 0o600)
