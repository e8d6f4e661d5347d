"""Real ``.deb`` packages and signed per-minor apt repositories laid out like pkgs.k8s.io.

Owns what a Debian lab node installs with the machine's own apt and dpkg:

- the five packages (``kubeadm``, ``kubelet``, ``kubectl``, ``cri-tools``,
  ``kubernetes-cni``): names, version strings (``1.28.4-1.1``), ``Depends`` as upstream
  declares them (kubernetes/release ``cmd/krel/templates/latest/metadata.yaml``) and the
  file lists of upstream's package specs (``cmd/krel/templates/latest/*/*.spec``), with the
  lab's simulated binaries as payload;
- the ``.deb`` files themselves, written in pure Python (``ar`` of ``debian-binary``,
  ``control.tar.gz``, ``data.tar.gz``), built once and kept in a cache shared by all labs
  (:func:`cache_dir`; byte-identical for the same code and python);
- ``DIR/pkgs/core:/stable:/v1.NN/deb/``: ``amd64/*.deb``, ``Packages``, ``Packages.gz``,
  ``Release``, ``InRelease`` and ``Release.gpg`` signed with a lab key made per lab by
  batch ``gpg`` in a temporary ``GNUPGHOME`` (deleted after signing), and ``Release.key``
  (the armored public key, as ``curl | gpg --dearmor`` expects).

Must not: write outside the lab directory, the .deb cache and the temporary GNUPGHOME,
decide which
versions exist (``upgrader_lab.node.repo`` does), or serve anything (``pkgserver`` does).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from upgrader_lab.node import repo, tree

ARCH = "amd64"
MAINTAINER = "Kubernetes Authors <dev@kubernetes.io>"
HOMEPAGE = "https://kubernetes.io"
MTIME = 1700000000  # fixed: the same package is byte-identical in every lab
ALL_PACKAGES = ("kubeadm", "kubelet", "kubectl", "cri-tools", "kubernetes-cni")
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")

DESCRIPTIONS = {
    "kubeadm": "Command-line utility for administering a Kubernetes cluster",
    "kubelet": "Node agent for Kubernetes clusters",
    "kubectl": "Command-line utility for interacting with a Kubernetes cluster",
    "cri-tools": "Command-line utility for interacting with a container runtime",
    "kubernetes-cni": "Binaries required to provision kubernetes container networking",
}
SECTIONS = {"kubernetes-cni": "misc"}

# kubernetes-cni published in each minor's repository (pkgs.k8s.io); cri-tools: see
# cri_tools_version.
_CNI = {
    24: "1.1.1-1.1",
    25: "1.1.1-1.1",
    26: "1.2.0-2.1",
    27: "1.2.0-2.1",
    28: "1.2.0-2.1",
    29: "1.3.0-1.1",
    30: "1.4.0-1.1",
    31: "1.5.1-1.1",
    32: "1.6.0-1.1",
    33: "1.6.0-1.1",
}
_CNI_NEWER = "1.7.1-1.1"


def cni_version(minor: str) -> str:
    """The kubernetes-cni package of the ``1.NN`` repository."""
    n = int(minor.split(".")[1])
    if n in _CNI:
        return _CNI[n]
    return _CNI_NEWER if n > max(_CNI) else _CNI[min(_CNI)]


def cri_tools_version(minor: str) -> str:
    """The cri-tools package of the ``1.NN`` repository: ``1.NN.0``, except v1.24, whose
    later kubeadm patches need cri-tools >= 1.25.0 (metadata.yaml), so the repository
    carries 1.25.0."""
    return f"{'1.25' if minor == '1.24' else minor}.0-{repo.DEB_REVISION}"


def _vkey(plain: str) -> tuple[int, int, int]:
    return repo.plain_key(plain)


def depends(package: str, plain: str) -> list[str]:
    """``Depends`` of ``package`` at upstream version ``plain`` (``1.28.4``), transcribed
    from kubernetes/release ``cmd/krel/templates/latest/metadata.yaml``."""
    v = _vkey(plain)
    if package == "kubeadm":
        if v >= (1, 32, 0):
            return []
        if v >= (1, 30, 0):
            return ["cri-tools (>= 1.30.0)"]
        if v >= (1, 28, 0):
            cni, cri = "1.2.0", "1.28.0"
        elif v >= (1, 25, 1) or (1, 24, 5) <= v < (1, 25, 0):
            cni, cri = "1.1.1", "1.25.0"
        elif v == (1, 25, 0) or (1, 24, 2) <= v < (1, 24, 5):
            cni, cri = "0.8.7", "1.24.2"
        else:
            cni, cri = "0.8.7", "1.23.0"
        return [
            "kubelet (>= 1.19.0)",
            "kubectl (>= 1.19.0)",
            f"kubernetes-cni (>= {cni})",
            f"cri-tools (>= {cri})",
        ]
    if package == "kubelet":
        if v >= (1, 28, 0):
            return ["kubernetes-cni (>= 1.2.0)"]
        if v >= (1, 25, 1) or (1, 24, 5) <= v < (1, 25, 0):
            return ["kubernetes-cni (>= 1.1.1)"]
        return ["kubernetes-cni (>= 0.8.7)"]
    return []


# --------------------------------------------------------------------------- payloads

KUBEADM_DROPIN = """\
# Note: This dropin only works with kubeadm and kubelet v1.11+
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
# This is a file that "kubeadm init" and "kubeadm join" generates at runtime, populating the KUBELET_KUBEADM_ARGS variable dynamically
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
# This is a file that the user can use for overrides of the kubelet args as a last resort. Preferably, the user should use
# the .NodeRegistration.KubeletExtraArgs object in the configuration files instead. KUBELET_EXTRA_ARGS should be sourced from this file.
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
"""  # noqa: E501 - upstream text

KUBELET_UNIT = """\
[Unit]
Description=kubelet: The Kubernetes Node Agent
Documentation=https://kubernetes.io/docs/
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10

[Install]
WantedBy=multi-user.target
"""

UNIT_DIR = "/usr/lib/systemd/system"


def payload(package: str, version: str, python: str) -> dict[str, tuple[bytes, int] | None]:
    """Node path -> (content, mode), or None for a directory, of ``package`` at its
    package ``version`` (``1.28.4-1.1``); file lists follow upstream's specs."""
    plain = repo.upstream_of(version)
    files: dict[str, tuple[bytes, int] | None] = {}
    if package in ("kubeadm", "kubelet", "kubectl"):
        script = tree.binary_script(package, f"v{plain}", python)
        files[f"/usr/bin/{package}"] = (script.encode(), 0o755)
    if package == "kubeadm":
        files[f"{UNIT_DIR}/kubelet.service.d"] = None
        files[f"{UNIT_DIR}/kubelet.service.d/10-kubeadm.conf"] = (KUBEADM_DROPIN.encode(), 0o644)
    elif package == "kubelet":
        files[f"{UNIT_DIR}/kubelet.service"] = (KUBELET_UNIT.encode(), 0o644)
        files["/etc/default/kubelet"] = (b"KUBELET_EXTRA_ARGS=\n", 0o644)  # conffile
        files["/etc/kubernetes"] = None
        files["/etc/kubernetes/manifests"] = None
        files["/etc/kubernetes/manifests/.kubelet-keep"] = (b"", 0o644)
        files["/var/lib/kubelet"] = None
        files["/var/lib/kubelet/.kubelet-keep"] = (b"", 0o644)
    elif package == "cri-tools":
        files["/usr/bin/crictl"] = (tree.tool_script("crictl", python).encode(), 0o755)
    elif package == "kubernetes-cni":
        files["/etc/cni"] = None
        files["/etc/cni/net.d"] = None
        files["/etc/cni/net.d/.kubernetes-cni-keep"] = (b"", 0o644)
        files["/opt/cni"] = None
        files["/opt/cni/bin"] = None
        for plugin in CNI_PLUGINS:
            body = f"#!/bin/sh\n# CNI plugin {plugin} {plain} (upgrader lab placeholder)\nexit 0\n"
            files[f"/opt/cni/bin/{plugin}"] = (body.encode(), 0o755)
    return files


# --------------------------------------------------------------------------- .deb writer


def build_time(version: str) -> int:
    """The files' mtime in a package: fixed per version (byte-identical rebuilds), later
    for later versions, like real builds (systemd notices a replaced unit by its mtime)."""
    _, minor, patch = repo.plain_key(repo.upstream_of(version))
    return MTIME + ((minor * 100 + patch) * 3600)


def conffiles(package: str) -> list[str]:
    """The package's %config(noreplace) files (dpkg keeps the admin's edits on upgrade)."""
    return ["/etc/default/kubelet"] if package == "kubelet" else []


def _tar_gz(entries: list[tuple[str, bytes | None, int]], mtime: int = MTIME) -> bytes:
    """A gzip'ed tar of ``(./path, content or None for a dir, mode)``, root-owned."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.mtime = mtime
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = mode
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=6, mtime=MTIME)


def _ar_member(name: str, data: bytes) -> bytes:
    header = f"{name:<16}{MTIME:<12}{0:<6}{0:<6}{0o100644:<8o}{len(data):<10}`\n".encode()
    assert len(header) == 60
    return header + data + (b"\n" if len(data) % 2 else b"")


def _dirs_of(paths: list[str]) -> list[str]:
    out: set[str] = set()
    for p in paths:
        parts = p.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            out.add("/" + "/".join(parts[:i]))
    return sorted(out)


def control_text(package: str, version: str, installed_kb: int) -> str:
    deps = depends(package, repo.upstream_of(version))
    lines = [
        f"Package: {package}",
        f"Version: {version}",
        f"Architecture: {ARCH}",
        f"Maintainer: {MAINTAINER}",
        f"Installed-Size: {installed_kb}",
    ]
    if deps:
        lines.append("Depends: " + ", ".join(deps))
    lines += [
        f"Section: {SECTIONS.get(package, 'admin')}",
        "Priority: optional",
        f"Homepage: {HOMEPAGE}",
        f"Description: {DESCRIPTIONS[package]}",
        f" {DESCRIPTIONS[package]}.",
    ]
    return "\n".join(lines) + "\n"


def build_deb(package: str, version: str, python: str) -> bytes:
    """The bytes of ``<package>_<version>_amd64.deb``."""
    files = payload(package, version, python)
    paths = sorted(set(files) | set(_dirs_of(list(files))))
    data_entries: list[tuple[str, bytes | None, int]] = [("./", None, 0o755)]
    size = 0
    for p in paths:
        item = files.get(p)
        if item is None:
            data_entries.append((f".{p}/", None, 0o755))
        else:
            data_entries.append((f".{p}", item[0], item[1]))
            size += len(item[0])
    md5 = "".join(
        f"{hashlib.md5(item[0]).hexdigest()}  {p.lstrip('/')}\n"  # noqa: S324 - dpkg's format
        for p in paths
        if (item := files.get(p)) is not None
    )
    control = control_text(package, version, max(1, (size + 1023) // 1024))
    control_entries: list[tuple[str, bytes | None, int]] = [
        ("./", None, 0o755),
        ("./control", control.encode(), 0o644),
        ("./md5sums", md5.encode(), 0o644),
    ]
    if conffiles(package):
        text = "".join(f"{c}\n" for c in conffiles(package))
        control_entries.append(("./conffiles", text.encode(), 0o644))
    control_tar = _tar_gz(control_entries)
    data_tar = _tar_gz(data_entries, build_time(version))
    return (
        b"!<arch>\n"
        + _ar_member("debian-binary", b"2.0\n")
        + _ar_member("control.tar.gz", control_tar)
        + _ar_member("data.tar.gz", data_tar)
    )


def deb_name(package: str, version: str) -> str:
    return f"{package}_{version}_{ARCH}.deb"


@functools.lru_cache(maxsize=8)
def _shared_cache(python: str) -> Path | None:
    digest = hashlib.sha256(python.encode())
    for f in (Path(__file__), Path(tree.__file__)):
        digest.update(f.read_bytes())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    shared = base / "upgrader" / "lab-debs" / digest.hexdigest()[:16]
    try:
        shared.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return shared if os.access(shared, os.W_OK) else None


def cache_dir(lab_dir: Path, python: str) -> Path:
    """Where built .debs are kept: ``$XDG_CACHE_HOME/upgrader/lab-debs/<key>/`` shared by
    every lab (a .deb depends only on this module, the node tree's scripts and the python
    path), else ``DIR/debs`` when that cache cannot be written."""
    return _shared_cache(python) or lab_dir / "debs"


def cached_deb(lab_dir: Path, package: str, version: str, python: str) -> Path:
    """The .deb of ``package`` at ``version`` in :func:`cache_dir`, built on first use."""
    path = cache_dir(lab_dir, python) / deb_name(package, version)
    if not path.is_file():
        tree.write_file(path, build_deb(package, version, python))
    return path


# --------------------------------------------------------------------------- repositories


@dataclass(frozen=True)
class RepoPackage:
    package: str
    version: str
    deb: Path


def repo_dir(lab_dir: Path, minor: str) -> Path:
    return lab_dir / "pkgs" / "core:" / "stable:" / f"v{minor}" / "deb"


def minor_packages(
    lab_dir: Path, minor: str, versions: list[str], python: str
) -> list[RepoPackage]:
    """What the ``minor`` repository offers: kubeadm/kubelet/kubectl of each version in
    ``versions`` (plain, missing ones already left out), its cri-tools and kubernetes-cni."""
    out: list[RepoPackage] = []
    for plain in versions:
        for pkg in ("kubeadm", "kubelet", "kubectl"):
            v = repo.deb_version(plain)
            out.append(RepoPackage(pkg, v, cached_deb(lab_dir, pkg, v, python)))
    for pkg, v in (("cri-tools", cri_tools_version(minor)), ("kubernetes-cni", cni_version(minor))):
        out.append(RepoPackage(pkg, v, cached_deb(lab_dir, pkg, v, python)))
    return out


def _deb_control(deb: bytes) -> str:
    """The control file of a .deb this module wrote."""
    pos = 8
    while pos < len(deb):
        header = deb[pos : pos + 60]
        name = header[:16].decode().strip()
        size = int(header[48:58].decode().strip())
        body = deb[pos + 60 : pos + 60 + size]
        if name == "control.tar.gz":
            with tarfile.open(fileobj=io.BytesIO(gzip.decompress(body))) as tar:
                member = tar.extractfile("./control")
                assert member is not None
                return member.read().decode()
        pos += 60 + size + (size % 2)
    raise ValueError("no control.tar.gz in the .deb")


def packages_text(directory: Path, packages: list[RepoPackage]) -> str:
    stanzas = []
    for p in sorted(packages, key=lambda x: (x.package, x.version)):
        cached = p.deb.with_suffix(".stanza")
        if cached.is_file():
            stanzas.append(cached.read_text())
            continue
        data = p.deb.read_bytes()
        control = _deb_control(data).rstrip("\n").split("\n")
        desc_at = next(i for i, ln in enumerate(control) if ln.startswith("Description:"))
        fields = [
            *control[:desc_at],
            f"Filename: {ARCH}/{p.deb.name}",
            f"Size: {len(data)}",
            f"MD5sum: {hashlib.md5(data).hexdigest()}",  # noqa: S324 - apt's index format
            f"SHA1: {hashlib.sha1(data).hexdigest()}",  # noqa: S324 - apt's index format
            f"SHA256: {hashlib.sha256(data).hexdigest()}",
            *control[desc_at:],
        ]
        stanza = "\n".join(fields) + "\n"
        tree.write_file(cached, stanza)
        stanzas.append(stanza)
    return "\n".join(stanzas)


def release_text(minor: str, files: dict[str, bytes]) -> str:
    date = time.strftime("%a, %d %b %Y %H:%M:%S UTC", time.gmtime())
    lines = [
        "Archive: ",
        "Codename: ",
        f"Origin: obs://build.opensuse.org/isv:kubernetes:core:stable:v{minor}/deb",
        f"Label: isv:kubernetes:core:stable:v{minor}",
        f"Architectures: {ARCH}",
        f"Date: {date}",
    ]
    for algo, fn in (("MD5Sum", hashlib.md5), ("SHA1", hashlib.sha1), ("SHA256", hashlib.sha256)):
        lines.append(f"{algo}:")
        for name, data in files.items():
            lines.append(f" {fn(data).hexdigest()} {len(data):>16} {name}")
    return "\n".join(lines) + "\n"


class SigningKey:
    """A per-lab OpenPGP key in a temporary GNUPGHOME (use as a context manager)."""

    UID = "upgrader lab isv:kubernetes OBS Project <lab@upgrader.invalid>"

    def __init__(self, stored: Path | None = None) -> None:
        """A new key, or the one kept at ``stored`` (armored secret key, 0600): a lab signs
        every later repository build with the key its nodes already trust; a new key is
        kept there when ``stored`` is given."""
        self.home = Path(tempfile.mkdtemp(prefix="upg-gpg-"))
        os.chmod(self.home, 0o700)
        if stored is not None and stored.is_file():
            self._gpg("--import", stdin=stored.read_bytes())
            return
        self._gpg("--quick-generate-key", "--passphrase", "", self.UID, "ed25519", "sign", "never")
        if stored is not None:
            secret = self._gpg("--armor", "--export-secret-keys", self.UID)
            stored.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(stored, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(secret)

    def _gpg(self, *args: str, stdin: bytes | None = None) -> bytes:
        proc = subprocess.run(
            ["gpg", "--batch", "--quiet", "--no-tty", "--homedir", str(self.home), *args],
            input=stdin,
            capture_output=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"gpg {' '.join(args[:1])} failed: {proc.stderr.decode(errors='replace').strip()}"
            )
        return proc.stdout

    def public_armored(self) -> bytes:
        return self._gpg("--armor", "--export", self.UID)

    def clearsign(self, data: bytes) -> bytes:
        return self._gpg("--digest-algo", "SHA256", "--clearsign", stdin=data)

    def detach_sign(self, data: bytes) -> bytes:
        return self._gpg("--digest-algo", "SHA256", "--armor", "--detach-sign", stdin=data)

    def close(self) -> None:
        subprocess.run(
            ["gpgconf", "--homedir", str(self.home), "--kill", "all"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> SigningKey:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_repositories(
    lab_dir: Path, repository: dict[str, list[str]], python: str, minors: list[str] | None = None
) -> list[str]:
    """Write the signed repository of each minor (all of ``repository`` unless ``minors``);
    return the minors written."""
    wanted = [m for m in repository if minors is None or m in minors]
    with SigningKey(signing_key_path(lab_dir)) as key:
        armored = key.public_armored()
        for minor in wanted:
            out = repo_dir(lab_dir, minor)
            (out / ARCH).mkdir(parents=True, exist_ok=True)
            packages = minor_packages(lab_dir, minor, repository[minor], python)
            for p in packages:
                target = out / ARCH / p.deb.name
                if not target.exists():
                    try:
                        os.link(p.deb, target)
                    except OSError:
                        shutil.copyfile(p.deb, target)
            text = packages_text(out, packages).encode()
            files = {"Packages": text, "Packages.gz": gzip.compress(text, mtime=MTIME)}
            for name, data in files.items():
                tree.write_file(out / name, data)
            release = release_text(minor, files).encode()
            tree.write_file(out / "Release", release)
            _sign(out, key, armored)
    tree.write_file(lab_dir / "pkgs" / "Release.key", armored)
    return wanted


def _sign(out: Path, key: SigningKey, armored: bytes) -> None:
    release = (out / "Release").read_bytes()
    tree.write_file(out / "InRelease", key.clearsign(release))
    tree.write_file(out / "Release.gpg", key.detach_sign(release))
    tree.write_file(out / "Release.key", armored)


def signing_key_path(lab_dir: Path) -> Path:
    """The lab's repository signing key (secret, 0600), kept between builds."""
    return lab_dir / "secrets" / "repo-signing-key.asc"


def rotate_key(lab_dir: Path) -> None:
    """Sign every repository of the lab with a new key (as when pkgs.k8s.io's key expired
    and was replaced): nodes whose keyring holds the old key fail ``apt-get update`` until
    they fetch the new ``Release.key``."""
    signing_key_path(lab_dir).unlink(missing_ok=True)
    with SigningKey(signing_key_path(lab_dir)) as key:
        armored = key.public_armored()
        for release in sorted((lab_dir / "pkgs").glob("core:/stable:/v*/deb/Release")):
            before = (release.parent / "InRelease").stat().st_mtime
            _sign(release.parent, key, armored)
            _newer_than(release.parent, ("InRelease", "Release.gpg"), before)
    tree.write_file(lab_dir / "pkgs" / "Release.key", armored)


def _newer_than(out: Path, names: tuple[str, ...], before: float) -> None:
    """Give the re-signed files a modification time at least a whole second after
    ``before``: the server answers apt's If-Modified-Since (whole seconds) by that time,
    and a file re-signed within the second it was last fetched would be a 304, its new
    signature never seen."""
    at = max(time.time(), int(before) + 1.0)
    for name in names:
        os.utime(out / name, (at, at))
