"""Pure parsers of real node command output, and the framing of the one fact script.

Owns: the framing of the fact script a node runs in one SSH round trip
(:func:`frame_script`; each probe's output cut on the node after :data:`FACT_SECTION_CAP`
bytes; which probes it runs is the table in :mod:`upgrader.core.probes`), the splitting of
its output into sections (:func:`split_sections`, marking a section past the cap), and one
parser per probe (``kubeadm version -o short``, ``kubelet --version``, ``kubectl version``,
``dpkg-query``, ``apt-mark showhold``, ``apt-cache madison``, ``rpm -q``, ``dnf list``,
versionlock, ``/etc/os-release``, apt sources / yum repo files, container runtime
``--version``, ``stat -fc %T /sys/fs/cgroup/`` for the cgroup version). Each parser
returns values or raises :class:`ParseError` with a message that quotes the offending text.

Must not: run commands, touch files or the network, or import paramiko, kubernetes,
typer or rich. Formats are copied from the real tools, never from our own simulations.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

import yaml

from upgrader.core.model import PackageFact
from upgrader.core.versions import KubeVersion, VersionError

KUBE_PACKAGES = ("kubeadm", "kubelet", "kubectl")
PACKAGE_MANAGERS = ("apt", "dnf", "yum", "dnf5")


class ParseError(ValueError):
    """Output that does not have the shape the real tool prints."""


def _snippet(text: str, limit: int = 80) -> str:
    one = " ".join(text.split())
    return repr(one if len(one) <= limit else one[: limit - 3] + "...")


# --------------------------------------------------------------------------- versions

_LEADING_VERSION = re.compile(r"^v?(\d+\.\d+\.\d+)(?:[-+~][0-9A-Za-z.+~-]*)?$")


def _version_token(token: str, what: str) -> KubeVersion:
    """A version token as Kubernetes binaries print it. Vendor suffixes that are not a
    Kubernetes pre-release (``v1.28.3-gke.100``, ``v1.32.4-dispatcher``) keep only
    ``MAJOR.MINOR.PATCH``; ``-rc.1`` and ``+build`` are kept as :class:`KubeVersion` does."""
    try:
        return KubeVersion.parse(token)
    except VersionError:
        m = _LEADING_VERSION.match(token.strip())
        if not m:
            raise ParseError(f"{what}: no version in {_snippet(token)}") from None
        return KubeVersion.parse(m.group(1))


def parse_kubeadm_version(text: str) -> KubeVersion:
    """``kubeadm version -o short`` -> ``v1.28.4``. Warning lines around it are ignored."""
    for line in reversed(text.splitlines()):
        token = line.strip()
        if token and _LEADING_VERSION.match(token):
            return _version_token(token, "kubeadm version")
    raise ParseError(f"kubeadm version: expected a line like 'v1.28.4', got {_snippet(text)}")


def parse_kubelet_version(text: str) -> KubeVersion:
    """``kubelet --version`` -> ``Kubernetes v1.28.4``."""
    for line in text.splitlines():
        m = re.match(r"^\s*Kubernetes\s+(\S+)\s*$", line)
        if m:
            return _version_token(m.group(1), "kubelet version")
    raise ParseError(
        f"kubelet version: expected a line like 'Kubernetes v1.28.4', got {_snippet(text)}"
    )


def parse_kubectl_version(text: str) -> KubeVersion:
    """``kubectl version --client`` in any of its shapes: ``-o json`` (possibly after
    warning lines), ``Client Version: v1.28.4`` (``--short``, the default since 1.28) or
    the old ``Client Version: version.Info{..., GitVersion:"v1.23.2", ...}``."""
    start = text.find("{")
    if start != -1:
        try:
            doc, _ = json.JSONDecoder().raw_decode(text[start:])
        except json.JSONDecodeError:
            doc = None
        if isinstance(doc, dict):
            client = doc.get("clientVersion")
            if isinstance(client, dict) and isinstance(client.get("gitVersion"), str):
                return _version_token(client["gitVersion"], "kubectl version")
    for line in text.splitlines():
        m = re.match(r"^\s*Client Version:\s*(.*)$", line)
        if not m:
            continue
        rest = m.group(1).strip()
        git = re.search(r'GitVersion:"([^"]+)"', rest)
        return _version_token(git.group(1) if git else rest, "kubectl version")
    raise ParseError(
        "kubectl version: expected JSON with clientVersion.gitVersion or a "
        f"'Client Version:' line, got {_snippet(text)}"
    )


_PKG_VERSION = re.compile(
    r"^(?:\d+:)?(?P<base>\d+\.\d+\.\d+)(?:[~-](?P<pre>(?:alpha|beta|rc)\.\d+))?"
    r"(?:-(?P<rev>[0-9A-Za-z.+~]+))?$"
)


def package_version_to_kube(pkgver: str) -> KubeVersion:
    """A package version to the Kubernetes version it ships: ``1.28.4-1.1`` (pkgs.k8s.io
    deb), ``1.28.4-150500.1.1`` (pkgs.k8s.io rpm), ``1.28.4-00`` (legacy deb), with an
    optional epoch (``0:``) and a ``~rc.1``-style pre-release."""
    m = _PKG_VERSION.match(pkgver.strip())
    if not m:
        raise ParseError(
            f"package version {pkgver!r}: expected MAJOR.MINOR.PATCH-REVISION (e.g. 1.28.4-1.1)"
        )
    text = m.group("base") + (f"-{m.group('pre')}" if m.group("pre") else "")
    return KubeVersion.parse(text)


# --------------------------------------------------------------------------- packages


def parse_dpkg_query(text: str) -> dict[str, PackageFact]:
    """``dpkg-query -W -f='${Package} ${Version} ${Status}\\n' kubeadm kubelet kubectl``.

    Only packages whose status is ``installed`` are returned; ``held`` is true when the
    selection is ``hold``. ``dpkg-query: no packages found matching X`` lines (stderr,
    exit 1) and removed packages (``deinstall ok config-files``) are skipped.
    """
    out: dict[str, PackageFact] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("dpkg-query:"):
            continue
        parts = line.split(" ")
        if len(parts) < 5:
            raise ParseError(
                f"dpkg-query: expected 'PACKAGE VERSION WANT ERROR STATUS', got {_snippet(line)}"
            )
        name, version = parts[0], parts[1]
        want, status = parts[-3], parts[-1]
        if status != "installed" or not version:
            continue
        out[name] = PackageFact(name=name, version=version, held=want == "hold")
    return out


def parse_apt_mark_showhold(text: str) -> frozenset[str]:
    """``apt-mark showhold`` -> the held package names (one per line)."""
    names = set()
    for line in text.splitlines():
        token = line.strip()
        if not token:
            continue
        if not re.fullmatch(r"[a-z0-9][a-z0-9+.\-]*(?::[a-z0-9]+)?", token):
            raise ParseError(f"apt-mark showhold: not a package name: {_snippet(token)}")
        names.add(token.split(":")[0])
    return frozenset(names)


def parse_apt_cache_madison(text: str, package: str = "kubeadm") -> tuple[str, ...]:
    """``apt-cache madison kubeadm`` -> package versions in the order apt lists them
    (newest first), each once. Lines look like
    ``   kubeadm | 1.28.4-1.1 | https://pkgs.k8s.io/core:/stable:/v1.28/deb  Packages``.
    No output (the repository has no such package) is an empty tuple."""
    versions: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        cols = [c.strip() for c in line.split("|")]
        if len(cols) < 3 or not cols[1]:
            if line.startswith(("N:", "W:", "E:")):
                continue  # apt notices ("N: Unable to locate package kubeadm")
            raise ParseError(
                f"apt-cache madison: expected 'NAME | VERSION | SOURCE', got {_snippet(line)}"
            )
        if cols[0] == package and cols[1] not in versions:
            versions.append(cols[1])
    return tuple(versions)


def parse_rpm_query(text: str, package: str | None = None) -> dict[str, PackageFact]:
    """``rpm -q --qf '%{NAME} %{VERSION}-%{RELEASE}\\n' kubeadm kubelet kubectl``; with
    ``package`` given, also the single-package form ``rpm -q --qf '%{VERSION}-%{RELEASE}\\n'
    kubeadm`` (``1.28.4-150500.1.1``). ``package X is not installed`` lines are skipped."""
    out: dict[str, PackageFact] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or re.fullmatch(r"package \S+ is not installed", line):
            continue
        parts = line.split()
        if len(parts) == 2 and re.match(r"^\d", parts[1]):
            name, version = parts
        elif len(parts) == 1 and package is not None and re.match(r"^\d", parts[0]):
            name, version = package, parts[0]
        else:
            raise ParseError(f"rpm -q: expected 'NAME VERSION-RELEASE', got {_snippet(line)}")
        out[name] = PackageFact(name=name, version=version, held=False)
    return out


def parse_versionlock_list(text: str) -> frozenset[str]:
    """``dnf versionlock list`` (``kubeadm-0:1.28.4-150500.1.1.*``), ``yum versionlock
    list`` (``0:kubeadm-1.28.4-150500.1.1.*``) or dnf5's (``Package name: kubeadm`` then
    ``evr = 1.28.4-150500.1.1``; dnf5 ``VersionlockPackage::to_string``) -> the locked
    package names. Header, comment and notice lines (``Last metadata expiration check``,
    ``Loaded plugins``) are skipped; a missing plugin (``No such command: versionlock``)
    yields nothing; ``!name`` lines (dnf4 ``versionlock exclude``) are not locks."""
    names = set()
    for line in text.splitlines():
        token = line.strip()
        if token.startswith("#"):
            continue
        m = re.fullmatch(r"Package name:\s*([A-Za-z0-9_.+\-]+)(?:\s+#.*)?", token)
        if m:
            names.add(m.group(1))
            continue
        m = re.fullmatch(r"(?:\d+:)?([A-Za-z0-9_.+\-]+?)-(?:\d+:)?\d[^\s]*", token)
        if m:
            names.add(m.group(1))
    return frozenset(names)


def parse_dnf_list(text: str, package: str = "kubeadm") -> tuple[str, ...]:
    """``dnf list --showduplicates kubeadm --disableexcludes=kubernetes`` (or ``yum list``,
    or dnf5's ``--setopt=disable_excludes=kubernetes`` listing with ``Available packages``)
    -> the ``VERSION-RELEASE`` strings under ``Available Packages``, in listed order, each
    once. Rows look like ``kubeadm.x86_64   1.28.4-150500.1.1   kubernetes``; an epoch
    (``0:``) is dropped. ``Error: No matching Packages to list`` yields nothing."""
    versions: list[str] = []
    section = None
    pending: str | None = None  # yum wraps a long name onto its own line
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.lower() in ("installed packages", "available packages"):
            # dnf4/yum: "Available Packages"; dnf5 (dnf5/commands/list): "Available packages"
            section = stripped.lower()
            pending = None
            continue
        if section != "available packages" or not stripped:
            continue
        parts = stripped.split()
        if pending is not None:
            parts = [pending, *parts]
            pending = None
        if len(parts) == 1 and parts[0].startswith(package + "."):
            pending = parts[0]
            continue
        if len(parts) < 2 or parts[0].rsplit(".", 1)[0] != package:
            continue
        version = re.sub(r"^\d+:", "", parts[1])
        if version not in versions:
            versions.append(version)
    return tuple(versions)


def parse_dnf_version(text: str) -> int | None:
    """``dnf --version`` -> 5 for dnf5 (``dnf5 version 5.2.8.1``, dnf5/main.cpp), 4 for
    dnf4 (a bare ``4.14.0`` first line, dnf/cli/cli.py), 3 for yum 3 (``3.4.3``), ``None``
    when neither shape is there."""
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        m = re.match(r"^dnf5 version (\d+)\.", s)
        if m:
            return 5
        m = re.fullmatch(r"(\d+)\.\d+\.\d+(?:\.\d+)?", s)
        if m:
            return int(m.group(1))
    return None


@dataclass(frozen=True)
class KubeBinary:
    """Where ``command -v`` finds a kube binary and which package owns that file
    (``None``: no package does)."""

    name: str
    path: str
    owner: str | None


def parse_kube_binaries(text: str) -> dict[str, KubeBinary]:
    """The ``kube_binaries`` probe: ``NAME PATH OWNER`` lines (``OWNER`` ``-`` when
    ``dpkg-query -S`` / ``rpm -qf`` say no package owns the file; ``PATH`` ``-`` when the
    binary is not on PATH) -> found binaries by name."""
    out: dict[str, KubeBinary] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3 or parts[0] not in KUBE_PACKAGES or parts[1] == "-":
            continue
        out[parts[0]] = KubeBinary(parts[0], parts[1], None if parts[2] == "-" else parts[2])
    return out


def parse_unit_execstart(text: str) -> str | None:
    """The kubelet unit files' ``ExecStart=`` lines (unit, then drop-ins, in systemd's
    order) -> the program the last non-empty one runs (a drop-in's ``ExecStart=`` alone
    resets the list; kubeadm's 10-kubeadm.conf does that)."""
    program: str | None = None
    for line in text.splitlines():
        s = line.strip()
        if not s.startswith("ExecStart="):
            continue
        value = s[len("ExecStart=") :].strip().lstrip("-@+!:")
        program = value.split()[0] if value else None
    return program


# --------------------------------------------------------------------------- OS


@dataclass(frozen=True)
class OsRelease:
    id: str
    id_like: tuple[str, ...]
    version_id: str | None
    pretty_name: str | None
    family: str | None  # "debian" | "rhel" | None (unsupported)


_DEBIAN_IDS = {"debian", "ubuntu"}
_RHEL_IDS = {"rhel", "centos", "rocky", "almalinux", "alma", "fedora", "ol"}


def parse_os_release(text: str) -> OsRelease:
    """``/etc/os-release`` -> ID, ID_LIKE, VERSION_ID and the family: debian/ubuntu (or
    ``ID_LIKE`` debian) -> ``debian``; rhel/centos/rocky/alma/fedora -> ``rhel``."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        fields[key.strip()] = value
    os_id = fields.get("ID", "").lower()
    if not os_id:
        raise ParseError(f"os-release: no ID= line in {_snippet(text)}")
    like = tuple(fields.get("ID_LIKE", "").lower().split())
    family = None
    for candidate in (os_id, *like):
        if candidate in _DEBIAN_IDS:
            family = "debian"
            break
        if candidate in _RHEL_IDS:
            family = "rhel"
            break
    return OsRelease(
        id=os_id,
        id_like=like,
        version_id=fields.get("VERSION_ID"),
        pretty_name=fields.get("PRETTY_NAME"),
        family=family,
    )


# --------------------------------------------------------------------------- repositories


@dataclass(frozen=True)
class RepoInfo:
    """The Kubernetes package repository a node points at.

    ``flavour`` is ``pkgs.k8s.io`` (one repository per minor), ``legacy``
    (apt.kubernetes.io / packages.cloud.google.com, frozen since 2023) or ``mirror`` (any
    other URL with a ``/v1.N/`` component). ``minor`` is ``"1.28"`` or ``None`` (legacy).
    """

    url: str
    minor: str | None
    flavour: str
    excludes: tuple[str, ...] = ()


_LEGACY_HOSTS = ("apt.kubernetes.io", "packages.cloud.google.com")
_MINOR_IN_URL = re.compile(r"/v(\d+\.\d+)/(?:deb|rpm)(?:/|$)")


def parse_repo_url(url: str) -> RepoInfo:
    """One repository URL -> :class:`RepoInfo`."""
    host_m = re.match(r"^[a-z][a-z0-9+.-]*://([^/\s]+)", url)
    if not host_m:
        raise ParseError(f"repository URL {url!r}: not an http(s) URL")
    host = host_m.group(1).lower()
    if any(host == h or host.endswith("." + h) for h in _LEGACY_HOSTS):
        return RepoInfo(url=url, minor=None, flavour="legacy")
    m = _MINOR_IN_URL.search(url)
    if not m:
        raise ParseError(
            f"repository URL {url!r}: no '/v1.N/deb/' or '/v1.N/rpm/' part naming the minor"
        )
    flavour = "pkgs.k8s.io" if host == "pkgs.k8s.io" else "mirror"
    return RepoInfo(url=url, minor=m.group(1), flavour=flavour)


def parse_apt_source(text: str) -> RepoInfo:
    """The Kubernetes apt source: a one-line entry
    (``deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg]
    https://pkgs.k8s.io/core:/stable:/v1.28/deb/ /``) or a deb822 ``URIs:`` field.
    Comment lines are ignored; the first active entry wins."""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("deb ") or line.startswith("deb\t"):
            rest = line[3:].strip()
            if rest.startswith("["):
                end = rest.find("]")
                if end == -1:
                    raise ParseError(f"apt source: unclosed '[' in {_snippet(line)}")
                rest = rest[end + 1 :].strip()
            if not rest:
                raise ParseError(f"apt source: no URL in {_snippet(line)}")
            return parse_repo_url(rest.split()[0])
        m = re.match(r"^URIs:\s*(\S+)", line, re.IGNORECASE)
        if m:
            return parse_repo_url(m.group(1))
    raise ParseError(f"apt source: no active 'deb' line or 'URIs:' field in {_snippet(text)}")


def parse_yum_repo(text: str) -> RepoInfo:
    """A yum/dnf ``.repo`` file: the first section's ``baseurl=`` and its ``exclude=``
    list (the packages dnf will not touch without ``--disableexcludes``)."""
    url: str | None = None
    excludes: tuple[str, ...] = ()
    enabled = True
    seen_section = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            if url is not None and enabled:
                break
            seen_section = True
            url, excludes, enabled = None, (), True
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "baseurl" and value:
            url = value.split()[0]
        elif key in ("exclude", "excludepkgs"):
            excludes = tuple(x for x in re.split(r"[\s,]+", value) if x)
        elif key == "enabled":
            enabled = value not in ("0", "false", "no")
    if url is None or not seen_section:
        raise ParseError(f"yum repo: no [section] with a baseurl= in {_snippet(text)}")
    info = parse_repo_url(url)
    return RepoInfo(url=info.url, minor=info.minor, flavour=info.flavour, excludes=excludes)


def excluded(package: str, excludes: tuple[str, ...]) -> bool:
    """Whether a yum ``exclude=`` list (with ``kube*``-style globs) covers ``package``."""
    for pattern in excludes:
        if pattern.endswith("*") and package.startswith(pattern[:-1]):
            return True
        if pattern == package:
            return True
    return False


# --------------------------------------------------------------------------- kubeadm-config


def parse_kubeadm_etcd(text: str) -> tuple[str, ...]:
    """kubeadm-config's ClusterConfiguration YAML -> ``etcd.external.endpoints`` (``()``
    when etcd is local: kubeadm's default, ``etcd.local`` or no ``etcd`` key)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ParseError(f"ClusterConfiguration is not YAML: {' '.join(str(e).split())}") from None
    etcd = doc.get("etcd") if isinstance(doc, dict) else None
    external = etcd.get("external") if isinstance(etcd, dict) else None
    if external is None:
        return ()
    endpoints = external.get("endpoints") if isinstance(external, dict) else None
    if not isinstance(endpoints, list) or not endpoints:
        raise ParseError("ClusterConfiguration etcd.external has no endpoints list")
    return tuple(str(e) for e in endpoints)


# --------------------------------------------------------------------------- runtime


def parse_container_runtime(text: str) -> str:
    """The runtime probe's output -> the form the Node API uses (``containerd://1.7.2``,
    ``cri-o://1.28.1``, ``docker://24.0.7``). The probe prints ``runtime=<binary>`` and
    then that binary's ``--version``: ``containerd github.com/containerd/containerd v1.7.2
    0cae528d``, ``crio version 1.28.1`` or a ``Version:  1.29.1`` table, ``Docker version
    24.0.7, build 311b9ff``. Without the marker line the binary is guessed from the text."""
    binary: str | None = None
    for line in text.splitlines():
        s = line.strip()
        marker = re.fullmatch(r"runtime=(\S+)", s)
        if marker:
            binary = marker.group(1)
            continue
        m = re.match(r"^containerd\s+\S+\s+v?(\d+\.\d+\.\d+\S*)", s)
        if m:
            return f"containerd://{m.group(1)}"
        m = re.match(r"^crio version\s+v?(\d+\.\d+\.\d+\S*)", s)
        if m:
            return f"cri-o://{m.group(1)}"
        m = re.match(r"^Version:\s+v?(\d+\.\d+\.\d+\S*)", s)
        if m and binary == "crio":
            return f"cri-o://{m.group(1)}"
        m = re.match(r"^Docker version\s+v?(\d+\.\d+\.\d+[^,\s]*)", s)
        if m:
            return f"docker://{m.group(1)}"
    raise ParseError(
        f"container runtime: no containerd, crio or docker version in {_snippet(text)}"
    )


def parse_cgroup_fs(text: str) -> str:
    """``stat -fc %T /sys/fs/cgroup/`` -> ``v2`` (``cgroup2fs``) or ``v1`` (``tmpfs``), the
    way kubernetes.io/docs/concepts/architecture/cgroups tells the cgroup version of a node
    (a hybrid host, tmpfs with the unified hierarchy below it, counts as v1 for the kubelet)."""
    words = text.split()
    if words[:1] == ["cgroup2fs"]:
        return "v2"
    if words[:1] == ["tmpfs"]:
        return "v1"
    raise ParseError(f"cgroup: /sys/fs/cgroup is {' '.join(words)[:60] or 'unknown'!r}")


# --------------------------------------------------------------------------- fact script

_MARK = "@@upgrader:"
_START = re.compile(r"^@@upgrader:([a-z][a-z0-9_]*)$")
_END = re.compile(r"^@@upgrader:rc=(\d+)$")

# Exit status of a shell that could not find (127) or execute (126) a command.
RC_NOT_FOUND = 127


# The most one probe's output may hold, in bytes. The node cuts each probe's output after
# one byte more (``head -c``: a probe reading a huge file stops there, and only this
# much crosses the network), split_sections drops what is past it and says how much.
FACT_SECTION_CAP = 256 * 1024


@dataclass(frozen=True)
class Section:
    """One probe's merged stdout+stderr and exit status (``None``: the script stopped
    before the probe finished). ``capped``: the probe printed more than
    :data:`FACT_SECTION_CAP` bytes, ``output`` is its first bytes only and must not be
    trusted."""

    name: str
    output: str
    rc: int | None
    capped: bool = False

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def missing_tool(self) -> bool:
        return self.rc == RC_NOT_FOUND


def frame_probe(name: str, command: str) -> str:
    # The probe's merged output goes through `head -c` to the script's stdout (fd 4) and
    # its exit status through fd 3 into $_rc (POSIX sh has no pipefail). printf '\n...'
    # ends a last line that had no newline; split_sections removes it again.
    return (
        f"echo '{_MARK}{name}'\n"
        f'_rc=$( {{ {{ {{ {command}; }} </dev/null 2>&1 3>&- 4>&-; echo "$?" >&3; }}'
        f" | head -c {FACT_SECTION_CAP + 1} >&4; }} 3>&1 )\n"
        f"printf '\\n{_MARK}rc=%s\\n' \"$_rc\"\n"
    )


def frame_script(probes: Iterable[tuple[str, str]]) -> str:
    """One POSIX shell script that runs each ``(section, command)`` probe and frames its
    merged output between ``@@upgrader:<name>`` and ``@@upgrader:rc=<exit status>`` lines.
    It never stops early: a missing tool shows up as rc 127 in its own section. Each
    probe's output is cut after :data:`FACT_SECTION_CAP` + 1 bytes on the node. The probes
    themselves are data (:mod:`upgrader.core.probes`)."""
    head = (
        "export LC_ALL=C\n"
        'export PATH="$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"\n'
        "exec 4>&1\n"
    )
    return head + "".join(frame_probe(n, c) for n, c in probes)


def split_sections(output: str, cap: int = FACT_SECTION_CAP) -> dict[str, Section]:
    """Split a fact script's output into sections by name. Text outside sections is
    ignored; a section cut off before its rc line gets ``rc=None``; a section longer than
    ``cap`` bytes keeps its first ``cap`` bytes and ``capped=True``."""
    sections: dict[str, Section] = {}
    name: str | None = None
    body: list[str] = []

    def close(rc: int | None) -> None:
        assert name is not None
        text = "\n".join(body)
        raw = text.encode("utf-8", errors="replace")
        if len(raw) > cap:
            text = raw[:cap].decode("utf-8", errors="ignore")
            sections[name] = Section(name, text, rc, capped=True)
        else:
            sections[name] = Section(name, text, rc)

    for line in output.split("\n"):
        end = _END.match(line)
        if end and name is not None:
            close(int(end.group(1)))
            name, body = None, []
            continue
        start = _START.match(line)
        if start:
            if name is not None:
                close(None)
            name, body = start.group(1), []
            continue
        if name is not None:
            body.append(line)
    if name is not None:
        close(None)
    return sections


def section_summary(section: Section) -> str:
    """A one-line description of a failed probe for findings."""
    lines = [ln.strip() for ln in section.output.splitlines() if ln.strip()]
    first = lines[0] if lines else "no output"
    return f"exit {section.rc}: {first[:200]}"
