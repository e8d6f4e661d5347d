"""Debian lab nodes as the kubeadm install page leaves them, made with the real apt and dpkg.

Owns, for each Debian node of a new lab: the files the install page has the operator write
(``/etc/apt/keyrings/kubernetes-apt-keyring.gpg``, the dearmored ``Release.key``;
``/etc/apt/sources.list.d/kubernetes.list``: ``deb [signed-by=...] <url> /`` pointing at
the lab's package server), the lab CA appended to the node's copy of
``/etc/ssl/certs/ca-certificates.crt`` (real curl and apt trust the server), the node's
``/etc/apt/apt.conf.d/99upgrader-lab`` (apt runs the real dpkg directly, not the node's
fault-injecting shim; no proxy for the lab's address), whiteouts for the host's own apt
sources, then the spec's package versions installed with the real ``dpkg -i``, the spec's
``held`` packages held with the real ``apt-mark hold`` and ``apt-get update`` run. That
real install runs once per distinct package set, in a template node, whose layer is then
copied (``cp -a``, whiteouts included) into every node with the same set.

Must not: run the real tools outside a node's mount namespace (the host's dpkg database
and /usr stay untouched), or decide versions (the resolved spec does).
"""

from __future__ import annotations

import base64
import json
import os
import shlex
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from upgrader_lab import debrepo
from upgrader_lab.hostproc import captured
from upgrader_lab.node import repo, tree, wrapper

APT_CONF = "/etc/apt/apt.conf.d/99upgrader-lab"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
HOST_SOURCES = ("/etc/apt/sources.list", "/etc/apt/sources.list.d")
# The host's apt.conf.d is its own (container images add e.g. docker-clean, which deletes
# /var/cache/apt/archives/*.deb after every dpkg run): a node keeps only what a Debian
# install ships.
APT_CONF_DIR = "/etc/apt/apt.conf.d"
DEBIAN_APT_CONF = ("01autoremove", "70debconf")
SETUP_TIMEOUT = 600.0
COPY_WORKERS = 4


class NodeSetupError(Exception):
    """A real install on a lab node failed (message: the tool's last line)."""


def dearmor(armored: bytes) -> bytes:
    """``gpg --dearmor`` of one armored public key block."""
    lines = armored.decode("ascii").strip().splitlines()
    body: list[str] = []
    started = False
    for line in lines[1:]:
        if not started:
            started = line.strip() == ""
            continue
        if line.startswith(("=", "-----END")):
            break
        body.append(line.strip())
    return base64.b64decode("".join(body))


def package_set(node: dict[str, Any]) -> dict[str, str]:
    """Package -> version a new Debian node starts with: the spec's kubeadm, kubelet and
    kubectl, and the cri-tools and kubernetes-cni of the newest of their minors."""
    versions = {t: repo.deb_version(node[t]) for t in ("kubeadm", "kubelet", "kubectl")}
    minors = sorted(
        {repo.minor_of(node[t]) for t in ("kubeadm", "kubelet")},
        key=lambda m: tuple(int(x) for x in m.split(".")),
    )
    versions["cri-tools"] = debrepo.cri_tools_version(minors[-1])
    versions["kubernetes-cni"] = debrepo.cni_version(minors[-1])
    return versions


def source_line(url_template: str, minor: str) -> str:
    return f"deb [signed-by={repo.APT_KEYRING}] {url_template.replace('{minor}', minor)} /\n"


def apt_conf(lab_dir: Path) -> str:
    dpkg = lab_dir / "bin" / "host-dpkg"
    lines = [
        "// upgrader lab: apt runs the real dpkg (not the node's fault-injecting shim)",
        f'Dir::Bin::dpkg "{dpkg}";',
        'Acquire::http::Proxy::127.0.0.1 "DIRECT";',
        'Acquire::https::Proxy::127.0.0.1 "DIRECT";',
    ]
    if os.geteuid() != 0:
        lines.append('APT::Sandbox::User "root";')
    return "\n".join(lines) + "\n"


def write_node_files(
    lab_dir: Path, root: Path, url_template: str, minor: str, keyring: bytes, ca_bundle: bytes
) -> None:
    tree.write_file(tree.in_root(root, repo.APT_KEYRING), keyring)
    tree.write_file(tree.in_root(root, repo.APT_LIST), source_line(url_template, minor))
    tree.write_file(tree.in_root(root, APT_CONF), apt_conf(lab_dir))
    tree.write_file(tree.in_root(root, CA_BUNDLE), ca_bundle)


def _host_sources() -> list[str]:
    """Host apt files a node must not see (hidden with overlay whiteouts)."""
    out: list[str] = []
    for p in HOST_SOURCES:
        path = Path(p)
        if path.is_file():
            out.append(p)
        elif path.is_dir():
            out.extend(str(c) for c in sorted(path.iterdir()) if c.name != "kubernetes.list")
    conf = Path(APT_CONF_DIR)
    if conf.is_dir():
        keep = {*DEBIAN_APT_CONF, Path(APT_CONF).name}
        out.extend(str(c) for c in sorted(conf.iterdir()) if c.name not in keep)
    return out


def _ca_bundle(lab_dir: Path) -> bytes:
    try:
        host = Path(CA_BUNDLE).read_bytes()
    except OSError:
        host = b""
    if host and not host.endswith(b"\n"):
        host += b"\n"
    return host + (lab_dir / "pki" / "ca.crt").read_bytes()


def _setup_command(lab_dir: Path, debs: list[Path], held: list[str]) -> str:
    real = {
        t: shlex.quote(str(lab_dir / "bin" / f"host-{t}")) for t in ("dpkg", "apt-get", "apt-mark")
    }
    parts = []
    sources = _host_sources()
    if sources:
        parts.append("rm -f " + " ".join(shlex.quote(s) for s in sources))
    parts.append(
        f"{real['dpkg']} --force-confdef --force-confold -i "
        + " ".join(shlex.quote(str(d)) for d in debs)
        + " >/dev/null"
    )
    if held:
        parts.append(f"{real['apt-mark']} hold {' '.join(held)} >/dev/null")
    parts.append(f"{real['apt-get']} update -qq")
    # dpkg's backup of the database it started from (the host's): not needed on a new node,
    # and 600 KiB per node copied to every node of a 200-node lab
    parts.append("rm -f /var/lib/dpkg/status-old")
    return " && ".join(parts)


def _copy_layer(template: Path, lab_dir: Path, node: dict[str, Any]) -> str | None:
    """Copy the template's layer (whiteouts included) into the node's tree; the error."""
    root = tree.node_dir(lab_dir, node["name"]) / "root"
    layer = f"{template / 'root'}/."
    cp = captured(["cp", "-a", "--reflink=auto", layer, f"{root}/"], SETUP_TIMEOUT)
    if cp.returncode != 0:
        return f"copying the package layer to node {node['name']} failed: {cp.stderr.strip()}"
    return None


def prepare(
    lab_dir: Path, nodes: list[dict[str, Any]], url_template: str, python: str
) -> dict[str, int]:
    """Install and hold the packages of every Debian node of ``nodes`` (a new lab whose
    package server runs); return how many nodes each real install served."""
    armored = (lab_dir / "pkgs" / "Release.key").read_bytes()
    keyring = dearmor(armored)
    ca_bundle = _ca_bundle(lab_dir)
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for node in nodes:
        if node["os_family"] != "debian" or node.get("flavor") == "kubespray":
            continue  # Kubespray nodes have binaries in /usr/local/bin, no kube packages
        versions = package_set(node)
        key = (tuple(sorted(versions.items())), tuple(node.get("held") or ()), node["repo_minor"])
        groups.setdefault(key, []).append(node)
    served: dict[str, int] = {}
    for i, (key, members) in enumerate(groups.items()):
        versions = dict(key[0])
        held = list(key[1])
        minor = str(key[2])
        name = f".template-{i}"
        tdir = tree.node_dir(lab_dir, name)
        wrapper._rm_tree(tdir)
        for sub in tree.OVERLAID:
            (tdir / "root" / sub).mkdir(parents=True, exist_ok=True)
        (tdir / "work").mkdir()
        try:
            write_node_files(lab_dir, tdir / "root", url_template, minor, keyring, ca_bundle)
            debs = [debrepo.cached_deb(lab_dir, p, v, python) for p, v in versions.items()]
            proc = wrapper.run_on_node(
                lab_dir, name, _setup_command(lab_dir, debs, held), timeout=SETUP_TIMEOUT
            )
            if proc.returncode != 0:
                lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines()]
                why = " ".join(ln for ln in lines if ln)[-400:] or f"exit {proc.returncode}"
                raise NodeSetupError(
                    f"installing {', '.join(f'{p}={v}' for p, v in versions.items())} on the "
                    f"lab nodes failed: {why}"
                )
            # what systemd loaded at boot: the units the packages installed
            tree.write_file(
                tree.in_root(tdir / "root", f"/{tree.STATE}/daemon-reload.json"),
                json.dumps(tree.kubelet_unit_mtimes(tdir / "root")) + "\n",
            )
            with ThreadPoolExecutor(max_workers=COPY_WORKERS) as pool:
                results = pool.map(
                    _copy_layer, [tdir] * len(members), [lab_dir] * len(members), members
                )
                errors = [e for e in results if e]
            if errors:
                raise NodeSetupError(errors[0])
            served.update({node["name"]: len(members) for node in members})
        finally:
            wrapper._rm_tree(tdir)
    return served
