"""The simulated RHEL-family package tools: ``dnf`` (and ``yum``, the same program) and
``rpm``, over the node's package database and ``/etc/yum.repos.d/*.repo``.

Owns their output and refusals: ``dnf install -y kubeadm-1.28.4
--disableexcludes=kubernetes``, the repo's ``exclude=`` line (packages filtered out unless
``--disableexcludes``), ``dnf list --showduplicates``, ``dnf download``, ``dnf
versionlock``, ``rpm -q --qf '%{VERSION}-%{RELEASE}\\n'`` (``1.28.4-150500.1.1``). dnf
reads the repo file on every run (it refreshes metadata itself), unlike apt.

Must not: import upgrader's production code, or touch the host's package state.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from upgrader.lab.node import args as argparse_
from upgrader.lab.node import repo
from upgrader.lab.node.context import LockBusy, NodeContext

SIZES = {"kubeadm": "10 M", "kubelet": "20 M", "kubectl": "10 M"}
SUMMARIES = {
    "kubeadm": "Command-line utility for administering a Kubernetes cluster",
    "kubelet": "Node agent for Kubernetes clusters",
    "kubectl": "Command-line utility for interacting with a Kubernetes cluster",
}


def _out(text: str | None = "") -> None:
    if text is None:
        return
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(text + "\n")


def _key(pkg_version: str) -> tuple[int, ...]:
    return repo.pkg_sort_key(pkg_version)


QUIET = False


def _meta() -> None:
    line = _metadata_line()
    if line:
        _out(line)


def _metadata_line() -> str:
    if QUIET:
        return ""
    when = time.strftime("%a %d %b %Y %I:%M:%S %p %Z", time.localtime(time.time() - 42))
    return f"Last metadata expiration check: 0:00:42 ago on {when}."


class Repos:
    """The pkgs.k8s.io rpm repositories configured on the node."""

    def __init__(self, ctx: NodeContext) -> None:
        self.sections: dict[str, tuple[str, set[str]]] = {}  # id -> (minor, excluded names)
        d = ctx.path("/etc/yum.repos.d")
        files = sorted(d.glob("*.repo")) if d.is_dir() else []
        for f in files:
            try:
                text = f.read_text()
            except OSError:
                continue
            for section_id, section in repo.yum_repo(text).items():
                if section.get("enabled", "1") not in ("1", "true", "yes"):
                    continue
                minor = repo.yum_minor(section)
                if minor is None:
                    continue
                excluded = set(re.split(r"[\s,]+", section.get("exclude", "").strip())) - {""}
                self.sections[section_id] = (minor, excluded)
        self.known = ctx.repository

    def versions(self, pkg: str, disabled_excludes: set[str]) -> tuple[list[tuple[str, str]], bool]:
        """((rpm version, repo id) newest last, whether some were filtered by an exclude)."""
        out: list[tuple[str, str]] = []
        filtered = False
        for section_id, (minor, excluded) in self.sections.items():
            if pkg in excluded and not ({"all", section_id} & disabled_excludes):
                filtered = filtered or bool(self.known.get(minor))
                continue
            for plain in self.known.get(minor, []):
                out.append((repo.rpm_version(plain), section_id))
        out.sort(key=lambda vr: _key(vr[0]))
        return out, filtered


def _split_spec(spec: str) -> tuple[str, str] | None:
    """``kubeadm-1.28.4`` / ``kubeadm-0:1.28.4-150500.1.1.x86_64`` / ``kubeadm`` ->
    (name, version prefix)."""
    for name in sorted(repo.PACKAGE_NAMES, key=len, reverse=True):
        if spec == name or spec == f"{name}.{repo.ARCH}":
            return name, ""
        if spec.startswith(name + "-"):
            rest = spec[len(name) + 1 :]
            rest = re.sub(r"^\d+:", "", rest)
            rest = re.sub(rf"\.({repo.ARCH}|noarch)$", "", rest)
            return name, rest
    return None


def _matches(pkg_version: str, wanted: str) -> bool:
    if not wanted:
        return True
    wanted = wanted.replace("*", "")
    return (
        pkg_version == wanted
        or pkg_version.startswith(wanted + "-")
        or (pkg_version.startswith(wanted) and not wanted[-1:].isdigit())
    )


def _disabled_excludes(p: argparse_.Parsed) -> set[str]:
    raw = p.get("--disableexcludes") or ""
    return {x.strip() for x in raw.split(",") if x.strip()}


def _locked(db: dict[str, Any], name: str) -> str | None:
    entry = db["packages"].get(name) or {}
    return str(entry["version"]) if entry.get("held") else None


def dnf_install(ctx: NodeContext, p: argparse_.Parsed, download_only: bool) -> int:
    repos = Repos(ctx)
    db = ctx.packages()
    off = _disabled_excludes(p)
    _meta()
    chosen: list[tuple[str, str, str | None, str]] = []  # name, version, old, repo id
    for spec in p.positional:
        split = _split_spec(spec)
        if split is None:
            _out(f"No match for argument: {spec}")
            _err(f"Error: Unable to find a match: {spec}")
            return 1
        name, wanted = split
        versions, filtered = repos.versions(name, off)
        lock = _locked(db, name)
        candidates = [(v, r) for v, r in versions if _matches(v, wanted)]
        if lock is not None:
            candidates = [(v, r) for v, r in candidates if v == lock]
        if not candidates:
            if filtered or (lock is not None and any(_matches(v, wanted) for v, _ in versions)):
                _out(f"All matches were filtered out by exclude filtering for argument: {spec}")
            else:
                _out(f"No match for argument: {spec}")
            _err(f"Error: Unable to find a match: {spec}")
            return 1
        version, repo_id = candidates[-1]
        old = (db["packages"].get(name) or {}).get("version")
        chosen.append((name, version, old, repo_id))
    changes = [c for c in chosen if c[1] != c[2] or download_only]
    for name, version, old, _ in chosen:
        if version == old and not download_only:
            _out(f"Package {name}-{version}.{repo.ARCH} is already installed.")
    _out("Dependencies resolved.")
    if not changes:
        _out("Nothing to do.")
        _out("Complete!")
        return 0
    bar = "=" * 80
    _out(bar)
    _out(" Package          Architecture    Version                    Repository        Size")
    _out(bar)
    groups = {"Installing": [], "Upgrading": [], "Downgrading": []}  # type: dict[str, list[Any]]
    for c in changes:
        name, version, old, _ = c
        kind = (
            "Installing"
            if old is None
            else ("Upgrading" if _key(version) > _key(old) else "Downgrading")
        )
        groups[kind].append(c)
    for kind, items in groups.items():
        if not items:
            continue
        _out(f"{kind}:")
        for name, version, _, repo_id in items:
            _out(f" {name:<16} {repo.ARCH:<15} {version:<26} {repo_id:<16} {SIZES[name]:>5}")
    _out()
    _out("Transaction Summary")
    _out(bar)
    for kind, word in (
        ("Installing", "Install"),
        ("Upgrading", "Upgrade"),
        ("Downgrading", "Downgrade"),
    ):
        if groups[kind]:
            n = len(groups[kind])
            _out(f"{word}  {n} Package{'s' if n > 1 else ''}")
    _out()
    _out(f"Total download size: {10 * len(changes)} M")
    if download_only:
        _out("DNF will only download packages for the transaction.")
    if not p.has("-y"):
        sys.stdout.write("Is this ok [y/N]: ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            _out("Operation aborted.")
            return 1
    _out("Downloading Packages:")
    # The package cache: what `--downloadonly` fetched is not downloaded again.
    cached = set(db.get("downloaded", []))
    for name, version, _, _ in changes:
        if f"{name}={version}" in cached:
            _out(f"[SKIPPED] {name}-{version}.{repo.ARCH}.rpm: Already downloaded")
            continue
        ctx.sleep("download")
        _out(f"{name}-{version}.{repo.ARCH}.rpm{'':<20} 40 MB/s | {SIZES[name]:>5}     00:00")
    _out("-" * 80)
    _out(f"Total{'':<45} 40 MB/s | {10 * len(changes)} MB     00:00")
    if download_only:
        db = ctx.packages()
        db["downloaded"] = sorted(
            set(db.get("downloaded", [])) | {f"{n}={v}" for n, v, _, _ in changes}
        )
        ctx.save_packages(db)
        _out("Complete!")
        _out("The downloaded packages were saved in cache until the next successful transaction.")
        _out("You can remove cached packages by executing 'dnf clean packages'.")
        return 0
    _out("Running transaction check")
    _out("Transaction check succeeded.")
    _out("Running transaction test")
    _out("Transaction test succeeded.")
    _out("Running transaction")
    total = len(changes) + sum(1 for c in changes if c[2] is not None)
    step = 0
    for name, version, old, _ in changes:
        step += 1
        verb = "Installing" if old is None else "Upgrading"
        _out(f"  {verb:<17}: {name}-{version}.{repo.ARCH:<30} {step}/{total}")
        ctx.sleep("package_install")
        ctx.install(name, version)
    for name, _, old, _ in changes:
        if old is not None:
            step += 1
            _out(f"  {'Cleanup':<17}: {name}-{old}.{repo.ARCH:<30} {step}/{total}")
    for kind, items in groups.items():
        if items:
            word = {
                "Installing": "Installed",
                "Upgrading": "Upgraded",
                "Downgrading": "Downgraded",
            }[kind]
            _out()
            _out(f"{word}:")
            for name, version, _, _ in items:
                _out(f"  {name}-{version}.{repo.ARCH}")
    _out()
    _out("Complete!")
    return 0


def dnf_list(ctx: NodeContext, p: argparse_.Parsed) -> int:
    repos = Repos(ctx)
    db = ctx.packages()
    off = _disabled_excludes(p)
    words = p.positional
    scope = "all"
    if words and words[0] in ("installed", "available", "all", "updates", "upgrades"):
        scope, words = words[0], words[1:]
    names = [
        n
        for n in repo.PACKAGE_NAMES
        if not words
        or any(
            n == w or n == w.split(".", 1)[0] or re.fullmatch(w.replace("*", ".*"), n)
            for w in words
        )
    ]
    _meta()
    installed_rows: list[str] = []
    available_rows: list[str] = []
    for name in names:
        entry = db["packages"].get(name)
        if entry and scope in ("all", "installed"):
            installed_rows.append(_row(name, str(entry["version"]), "@kubernetes"))
        if scope not in ("all", "available", "updates", "upgrades"):
            continue
        versions, _ = repos.versions(name, off)
        inst = str(entry["version"]) if entry else None
        shown = [(v, r) for v, r in versions if v != inst]
        if not p.has("--showduplicates"):
            newer = [(v, r) for v, r in shown if inst is None or _key(v) > _key(inst)]
            shown = newer[-1:]
        for v, r in shown:
            available_rows.append(_row(name, v, r))
    if not installed_rows and not available_rows:
        _err("Error: No matching Packages to list")
        return 1
    if installed_rows:
        _out("Installed Packages")
        for row in installed_rows:
            _out(row)
    if available_rows:
        _out("Available Packages")
        for row in available_rows:
            _out(row)
    return 0


def _row(name: str, version: str, repo_id: str) -> str:
    return f"{name + '.' + repo.ARCH:<32}{version:<36}{repo_id}"


def dnf_versionlock(ctx: NodeContext, p: argparse_.Parsed) -> int:
    words = p.positional
    op = words[0] if words else "list"
    names = words[1:]
    if op not in ("list", "add", "delete", "clear", "exclude"):
        names, op = words, "add"
    db = ctx.packages()
    pkgs: dict[str, Any] = db["packages"]
    if op == "list":
        _meta()
        for name in sorted(pkgs):
            if pkgs[name].get("held"):
                _out(f"{name}-0:{pkgs[name]['version']}.*")
        return 0
    _meta()
    if op == "clear":
        for entry in pkgs.values():
            entry["held"] = False
        ctx.save_packages(db)
        return 0
    for spec in names:
        split = _split_spec(spec)
        if split is None or split[0] not in pkgs:
            _err(f"Error: No package found for: {spec}")
            return 1
        entry = pkgs[split[0]]
        if op == "add":
            entry["held"] = True
            _out(f"Adding versionlock on: {split[0]}-0:{entry['version']}.*")
        elif op == "delete":
            if entry.get("held"):
                _out(f"Deleting versionlock for: {split[0]}-0:{entry['version']}.*")
            entry["held"] = False
    ctx.save_packages(db)
    return 0


_DNF_VALUE = {
    "--disableexcludes",
    "--setopt",
    "--destdir",
    "--downloaddir",
    "--enablerepo",
    "--disablerepo",
    "--repo",
    "--releasever",
    "-x",
    "--exclude",
    "--installroot",
}
_DNF_BOOL = {
    "-y",
    "--assumeyes",
    "-q",
    "--quiet",
    "--showduplicates",
    "--refresh",
    "--nogpgcheck",
    "--downloadonly",
    "-C",
    "--cacheonly",
    "--best",
    "--nobest",
    "--allowerasing",
    "--resolve",
    "-v",
    "--verbose",
    "--assumeno",
}
_DNF_ALIASES = {
    "--assumeyes": "-y",
    "--quiet": "-q",
    "--downloaddir": "--destdir",
    "--cacheonly": "-C",
    "--verbose": "-v",
}


def dnf(tool: str, args: list[str], ctx: NodeContext) -> int:
    global QUIET
    p = argparse_.parse(args, _DNF_VALUE, _DNF_BOOL, _DNF_ALIASES)
    QUIET = p.has("-q")
    if p.unknown:
        _err(f"{tool}: error: unrecognized arguments: {' '.join(p.unknown)}")
        return 2
    if not p.positional:
        _err("Error: No command specified")
        return 1
    command, p.positional = p.positional[0], p.positional[1:]
    if command in ("install", "upgrade", "update", "downgrade", "reinstall"):
        try:
            with ctx.package_lock(tool):
                return dnf_install(ctx, p, p.has("--downloadonly"))
        except LockBusy as exc:
            _err(f"Waiting for process with pid {exc.holder.split(' ', 1)[0]} to finish.")
            return 1
    if command == "list":
        return dnf_list(ctx, p)
    if command == "download":
        return dnf_download(ctx, p)
    if command == "versionlock":
        return dnf_versionlock(ctx, p)
    if command == "makecache":
        _out("Kubernetes                                      40 kB/s |  17 kB     00:00")
        _out("Metadata cache created.")
        return 0
    if command == "clean":
        _out("0 files removed")
        return 0
    _err(f"No such command: {command}. Please use /usr/bin/{tool} --help")
    return 1


def dnf_download(ctx: NodeContext, p: argparse_.Parsed) -> int:
    repos = Repos(ctx)
    off = _disabled_excludes(p)
    _meta()
    dest = Path(p.get("--destdir") or ".")
    for spec in p.positional:
        split = _split_spec(spec)
        if split is None:
            _err(f"No package {spec} available.")
            _err("Error: No packages available.")
            return 1
        versions, _ = repos.versions(split[0], off)
        candidates = [v for v, _ in versions if _matches(v, split[1])]
        if not candidates:
            _err(f"No package {spec} available.")
            _err("Error: No packages available.")
            return 1
        version = candidates[-1]
        ctx.sleep("download")
        fname = f"{split[0]}-{version}.{repo.ARCH}.rpm"
        try:
            dest.mkdir(parents=True, exist_ok=True)
            (dest / fname).write_bytes(b"\xed\xab\xee\xdb lab rpm " + fname.encode() + b"\n")
        except OSError as exc:
            _err(f"Error: {exc}")
            return 1
        _out(f"{fname:<48} 40 MB/s | {SIZES[split[0]]:>5}     00:00")
    return 0


# --------------------------------------------------------------------------- rpm

_TAG_RE = re.compile(r"%\{([A-Za-z]+)\}")


def _tag_filler(tags: dict[str, str]) -> Callable[[re.Match[str]], str]:
    def fill(m: re.Match[str]) -> str:
        return tags.get(m.group(1).upper(), "(none)")

    return fill


def rpm(args: list[str], ctx: NodeContext) -> int:
    p = argparse_.parse(
        args,
        {"--qf", "--queryformat"},
        {"-q", "--query", "-a", "--all", "-i", "--info", "-l", "--list"},
        {"--queryformat": "--qf", "--query": "-q", "--all": "-a", "--info": "-i"},
    )
    if not p.has("-q"):
        _err("rpm: no operation specified (this lab only simulates queries: rpm -q)")
        return 1
    fmt = p.get("--qf") or "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}\\n"
    pkgs: dict[str, Any] = ctx.packages()["packages"]
    names = sorted(pkgs) if p.has("-a") else p.positional
    if not names and not p.has("-a"):
        _err("rpm: no arguments given for query")
        return 1
    failures = 0
    for name in names:
        entry = pkgs.get(name)
        if entry is None:
            _out(f"package {name} is not installed")
            failures += 1
            continue
        version, _, release = str(entry["version"]).partition("-")
        tags = {
            "NAME": name,
            "VERSION": version,
            "RELEASE": release,
            "ARCH": repo.ARCH,
            "EPOCH": "(none)",
            "SUMMARY": SUMMARIES.get(name, ""),
        }
        if p.has("-i"):
            _out(f"Name        : {name}")
            _out(f"Version     : {version}")
            _out(f"Release     : {release}")
            _out(f"Architecture: {repo.ARCH}")
            _out(f"Summary     : {tags['SUMMARY']}")
            continue
        text = _TAG_RE.sub(_tag_filler(tags), fmt)
        text = text.replace("\\n", "\n").replace("\\t", "\t")
        sys.stdout.write(text)
    return min(failures, 255)


def main(tool: str, args: list[str], ctx: NodeContext) -> int:
    if tool == "rpm":
        return rpm(args, ctx)
    return dnf(tool, args, ctx)
