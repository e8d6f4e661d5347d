"""The fact probes as data: one table of what the fact script asks a node.

Owns :data:`PROBES`, one :class:`Probe` per section of the fact script, in script order:
its name, its command per package manager (a manager without one does not run it), its
parser per package manager, the tool whose absence it reports (``TOOL_MISSING``) and
whether that tool is required; and what is derived from the table: :func:`fact_probes`
(the ``(section, command)`` pairs a node runs) and :func:`fact_script` (the one POSIX
script that runs them in one SSH round trip, framed by
:func:`upgrader.core.parsers.frame_script`).

Must not: run commands, touch files or the network, judge what a probe printed (the
gatherer interprets sections through this table, the checks judge raw text), or import
paramiko, kubernetes, typer or rich.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from upgrader.core import nodelock, parsers
from upgrader.core.parsers import PACKAGE_MANAGERS

_RPM_MANAGERS = ("dnf", "yum", "dnf5")


@dataclass(frozen=True)
class Parse:
    """How a section is read: ``fn`` over its output, ``label`` naming the tool (or file)
    in a finding about it; ``needs_ok``: read only what a probe that exited 0 printed
    (``versionlock list`` without the plugin prints an error)."""

    label: str
    fn: Callable[[str], Any]
    needs_ok: bool = False


@dataclass(frozen=True)
class Probe:
    """One section of the fact script."""

    name: str
    commands: Mapping[str, str]  # package manager -> command
    parsers: Mapping[str, Parse] = field(default_factory=dict)  # package manager -> parser
    tools: Mapping[str, str] = field(default_factory=dict)  # package manager -> tool name
    required: bool = False  # a missing tool blocks the node's upgrade (else it warns)

    def command(self, package_manager: str) -> str | None:
        return self.commands.get(package_manager)

    def parser(self, package_manager: str) -> Parse | None:
        return self.parsers.get(package_manager)

    def tool(self, package_manager: str) -> str | None:
        return self.tools.get(package_manager)


def _every(value: Any) -> dict[str, Any]:
    return dict.fromkeys(PACKAGE_MANAGERS, value)


def _apt_rpm(apt: Any, rpm: Any) -> dict[str, Any]:
    return {"apt": apt, **dict.fromkeys(_RPM_MANAGERS, rpm)}


def _per_manager(apt: Any, dnf: Any, yum: Any) -> dict[str, Any]:
    return {"apt": apt, "dnf": dnf, "yum": yum, "dnf5": dnf}


_RUNTIME_PROBE = (
    "for rt in containerd crio dockerd; do\n"
    '  if command -v "$rt" >/dev/null 2>&1; then echo "runtime=$rt"; "$rt" --version; exit; fi\n'
    "done; exit 127"
)

# The kubelet's flag files (kubeadm's, then the distribution's extra args), whichever exist.
_KUBELET_FLAGS_PROBE = (
    "for f in /var/lib/kubelet/kubeadm-flags.env /etc/default/kubelet /etc/sysconfig/kubelet; do\n"
    '  if [ -r "$f" ]; then cat "$f"; fi\n'
    "done; true"
)
# Each running dockerd's command line, one per line (builtins only: no fork per process).
_DOCKERD_PROBE = (
    "for p in /proc/[0-9]*; do\n"
    '  { read -r c < "$p/comm"; } 2>/dev/null || continue\n'
    '  [ "$c" = dockerd ] || continue\n'
    "  tr '\\000' ' ' < \"$p/cmdline\" 2>/dev/null; echo\n"
    "done; true"
)
# "<path> notAfter=<date>" per certificate kubeadm keeps (readable without root).
_CERTS_PROBE = (
    "for f in /etc/kubernetes/pki/*.crt /etc/kubernetes/pki/etcd/*.crt; do\n"
    '  [ -f "$f" ] || continue\n'
    '  printf \'%s \' "$f"; openssl x509 -noout -enddate -in "$f" 2>&1 | head -n 1\n'
    "done; true"
)

# Each kube binary on PATH and the package owning that file: `NAME PATH OWNER`, `-` for
# none. dpkg-query -S prints `kubeadm: /usr/bin/kubeadm` per match; it reads every
# package's file list before it matches, so the three paths go to one call (a third of
# the CPU of three; the positional parameters are the command substitution's own), and
# each binary takes the first line that ends in its path. rpm -qf exits 1 on a file no
# package owns ("file ... is not owned by any package").
_KUBE_BINARIES_PROBE = (
    "owned=$(set --; for b in kubeadm kubelet kubectl; do\n"
    '  p=$(command -v "$b" 2>/dev/null) && set -- "$@" "$p"; done\n'
    '  [ "$#" -gt 0 ] && command -v dpkg-query >/dev/null 2>&1 && '
    'dpkg-query -S "$@" 2>/dev/null)\n'
    "for b in kubeadm kubelet kubectl; do\n"
    '  p=$(command -v "$b" 2>/dev/null) || { echo "$b - -"; continue; }\n'
    "  o=\n"
    "  if command -v dpkg-query >/dev/null 2>&1; then\n"
    '    o=$(printf \'%s\\n\' "$owned" | P=": $p" awk '
    '\'substr($0, length($0) - length(ENVIRON["P"]) + 1) == ENVIRON["P"] '
    "{print; exit}' | cut -d: -f1)\n"
    "  elif command -v rpm >/dev/null 2>&1; then\n"
    "    o=$(rpm -qf --qf '%{NAME}\\n' \"$p\" 2>/dev/null) || o=\n"
    "  fi\n"
    '  echo "$b $p ${o:--}"\n'
    "done; true"
)
# The kubelet unit and its drop-ins, in systemd's precedence (/etc over /usr/lib and /lib).
_KUBELET_UNIT_PROBE = (
    "for d in /etc/systemd/system /usr/lib/systemd/system /lib/systemd/system; do\n"
    '  if [ -r "$d/kubelet.service" ]; then cat "$d/kubelet.service"; break; fi\n'
    "done\n"
    "for f in /etc/systemd/system/kubelet.service.d/*.conf \\\n"
    "    /usr/lib/systemd/system/kubelet.service.d/*.conf; do\n"
    '  if [ -r "$f" ]; then cat "$f"; fi\n'
    "done; true"
)
_DPKG_QUERY = (
    "dpkg-query -W -f='${Package} ${Version} ${Status}\\n' kubeadm kubelet kubectl "
    "cri-tools kubernetes-cni"
)
# dnf5 (Fedora 41+, also behind the `dnf` and `yum` names) rejects --disableexcludes
# ("Unknown argument"); it takes --setopt=disable_excludes= (kubernetes/website#52027).
_DNF_LIST = (
    "if dnf --version 2>/dev/null | grep -q '^dnf5 '; then "
    "dnf list --showduplicates kubeadm --setopt=disable_excludes=kubernetes; "
    "else dnf list --showduplicates kubeadm --disableexcludes=kubernetes; fi"
)
_RPM_QUERY = "rpm -q --qf '%{NAME} %{VERSION}-%{RELEASE}\\n' kubeadm kubelet kubectl"
APT_REPO_FILE = "/etc/apt/sources.list.d/kubernetes.list"
RPM_REPO_FILE = "/etc/yum.repos.d/kubernetes.repo"


def _binary(name: str, command: str, fn: Callable[[str], Any]) -> Probe:
    """A kube binary's version probe: the tool is the binary, and it is required unless
    it is kubectl."""
    return Probe(
        name,
        _every(command),
        _every(Parse(name, fn)),
        tools=_every(name),
        required=name != "kubectl",
    )


def _raw(name: str, command: str) -> Probe:
    """A probe whose output is kept as text (or judged by the checks), on every node."""
    return Probe(name, _every(command))


# (File probes use `cat` so a simulated node can map paths; every probe's stdin is
# /dev/null.) The order is the script's.
PROBES: tuple[Probe, ...] = (
    Probe(
        "os_release",
        _every("cat /etc/os-release"),
        _every(Parse("os-release", parsers.parse_os_release)),
    ),
    _binary("kubeadm", "kubeadm version -o short", parsers.parse_kubeadm_version),
    _binary("kubelet", "kubelet --version", parsers.parse_kubelet_version),
    _binary("kubectl", "kubectl version --client -o json", parsers.parse_kubectl_version),
    Probe(
        "dnf_version",
        {"dnf": "dnf --version", "yum": "yum --version", "dnf5": "dnf --version"},
        dict.fromkeys(_RPM_MANAGERS, Parse("dnf --version", parsers.parse_dnf_version)),
    ),
    Probe(
        "packages",
        _apt_rpm(_DPKG_QUERY, _RPM_QUERY),
        _apt_rpm(
            Parse("dpkg-query", parsers.parse_dpkg_query),
            Parse("rpm -q", parsers.parse_rpm_query),
        ),
        tools=_apt_rpm("dpkg-query", "rpm"),
        required=True,
    ),
    Probe(
        "holds",
        _per_manager("apt-mark showhold", "dnf -q versionlock list", "yum -q versionlock list"),
        _apt_rpm(
            Parse("apt-mark showhold", parsers.parse_apt_mark_showhold),
            Parse("versionlock list", parsers.parse_versionlock_list, needs_ok=True),
        ),
        tools={
            "apt": "apt-mark",
            "dnf": "dnf versionlock",
            "yum": "yum versionlock",
            "dnf5": "dnf5 versionlock",
        },
    ),
    Probe(
        "repo",
        _apt_rpm(f"cat {APT_REPO_FILE}", f"cat {RPM_REPO_FILE}"),
        _apt_rpm(
            Parse(APT_REPO_FILE, parsers.parse_apt_source),
            Parse(RPM_REPO_FILE, parsers.parse_yum_repo),
        ),
    ),
    Probe(
        "repo_versions",
        _per_manager("apt-cache madison kubeadm", _DNF_LIST, _DNF_LIST.replace("dnf ", "yum ")),
        _apt_rpm(
            Parse("apt-cache madison", parsers.parse_apt_cache_madison),
            Parse("dnf list", parsers.parse_dnf_list),
        ),
        tools={"apt": "apt-cache", "dnf": "dnf", "yum": "yum", "dnf5": "dnf5"},
        required=True,
    ),
    _raw("kubelet_config", "cat /var/lib/kubelet/config.yaml"),
    Probe(
        "runtime",
        _every(f"( {_RUNTIME_PROBE} )"),
        _every(Parse("container runtime", parsers.parse_container_runtime)),
    ),
    # for the preflight checks (upgrader.core.checks): raw text, judged there
    _raw("kubelet_flags", _KUBELET_FLAGS_PROBE),
    _raw("docker_daemon", "cat /etc/docker/daemon.json"),
    _raw("dockerd", _DOCKERD_PROBE),
    _raw("certs", _CERTS_PROBE),
    _raw("node_lock", nodelock.PROBE),
    Probe(
        "cgroup",
        _every("stat -fc %T /sys/fs/cgroup/"),
        _every(Parse("cgroup", parsers.parse_cgroup_fs)),
    ),
    Probe(
        "kube_binaries",
        _every(_KUBE_BINARIES_PROBE),
        _every(Parse("kube binaries", parsers.parse_kube_binaries)),
    ),
    Probe(
        "kubelet_unit",
        _every(_KUBELET_UNIT_PROBE),
        _every(Parse("kubelet unit", parsers.parse_unit_execstart)),
    ),
    # cri-tools: how upgrader reaches the etcd static pod (upgrader.core.etcd)
    _raw("crictl", "crictl --version"),
)
PROBE: Mapping[str, Probe] = {p.name: p for p in PROBES}


def fact_probes(package_manager: str) -> tuple[tuple[str, str], ...]:
    """The (section name, command) pairs :func:`fact_script` runs, in order."""
    if package_manager not in PACKAGE_MANAGERS:
        raise ValueError(
            f"unknown package manager {package_manager!r}; expected one of "
            f"{', '.join(PACKAGE_MANAGERS)}"
        )
    return tuple(
        (p.name, command) for p in PROBES if (command := p.command(package_manager)) is not None
    )


def fact_script(package_manager: str) -> str:
    """One POSIX shell script that runs every probe of the table for this package manager
    (see :func:`upgrader.core.parsers.frame_script`)."""
    return parsers.frame_script(fact_probes(package_manager))
