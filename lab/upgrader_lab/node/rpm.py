"""The simulated RHEL-family package tools: ``dnf`` (and ``yum``, the same program) and
``rpm``, over the node's package database and ``/etc/yum.repos.d/*.repo``.

Owns their output and refusals: ``dnf install -y kubeadm-1.28.4
--disableexcludes=kubernetes``, the repo's ``exclude=`` line (packages filtered out unless
``--disableexcludes``), ``dnf list --showduplicates``, ``dnf download``, ``dnf
versionlock``, ``rpm -q --qf '%{VERSION}-%{RELEASE}\\n'`` (``1.28.4-150500.1.1``),
``rpm -qf PATH``. dnf reads the repo file on every run (it refreshes metadata itself),
unlike apt.

Two dnf generations, by the node's flavor:

* ``rhel`` (Rocky 9, dnf4; rpm-software-management/dnf ``dnf/base.py``): packages fetched
  with ``--downloadonly`` are "saved in cache until the next successful transaction" and
  that transaction deletes them all unless ``keepcache`` is on (``/etc/dnf/dnf.conf`` or
  ``--setopt=keepcache=1``; ``Base._finalize_base``). ``dnf versionlock`` exists only with
  the versionlock plugin (``/etc/dnf/plugins/versionlock.conf``), whose lock list is
  ``/etc/dnf/plugins/versionlock.list`` (dnf-plugins-core ``plugins/versionlock.py``).
* ``fedora`` (Fedora 41, dnf5; rpm-software-management/dnf5): ``--disableexcludes`` is an
  unknown argument (exit 2; kubernetes/website#52027 uses
  ``--setopt=disable_excludes=kubernetes``); a successful transaction deletes only the
  packages it installed (``libdnf5/base/transaction.cpp``); ``versionlock`` is built in,
  its entries in ``/etc/dnf/versionlock.toml``, listed as ``Package name: NAME`` /
  ``evr = VERSION``; ``dnf --version`` says ``dnf5 version 5.2.8.1``.

Must not: import upgrader's production code, or touch the host's package state.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from upgrader_lab.node import args as argparse_
from upgrader_lab.node import repo, tree
from upgrader_lab.node.context import LockBusy, NodeContext

SIZES = {"kubeadm": "10 M", "kubelet": "20 M", "kubectl": "10 M"}
SUMMARIES = {
    "kubeadm": "Command-line utility for administering a Kubernetes cluster",
    "kubelet": "Node agent for Kubernetes clusters",
    "kubectl": "Command-line utility for interacting with a Kubernetes cluster",
}
# `dnf --version` of Rocky 9.3 (dnf/cli/cli.py print_versions) and of Fedora 41's dnf5
# (dnf5/main.cpp print_versions).
DNF4_VERSION = (
    "4.14.0\n"
    "  Installed: dnf-0:4.14.0-9.el9.noarch at Tue 14 Nov 2023 09:12:01 AM GMT\n"
    "  Built    : Rocky Linux Build System (Peridot) <releng@rockylinux.org> at "
    "Thu 02 Nov 2023 06:21:44 PM GMT\n"
    "\n"
    "  Installed: rpm-0:4.16.1.3-27.el9_3.x86_64 at Tue 14 Nov 2023 09:11:50 AM GMT\n"
    "  Built    : Rocky Linux Build System (Peridot) <releng@rockylinux.org> at "
    "Wed 01 Nov 2023 11:08:12 PM GMT"
)
DNF5_VERSION = (
    "dnf5 version 5.2.8.1\n"
    "dnf5 plugin API version 2.0\n"
    "libdnf5 version 5.2.8.1\n"
    "libdnf5 plugin API version 2.0"
)
_TRUE = ("1", "true", "yes", "on")


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


@dataclass
class Mode:
    """What this run of dnf is: dnf4 or dnf5, and its effective configuration."""

    dnf5: bool
    keepcache: bool = False
    disabled_excludes: set[str] = field(default_factory=set)
    setopts: dict[str, str] = field(default_factory=dict)


def _meta(mode: Mode | None = None) -> None:
    if QUIET:
        return
    if mode is not None and mode.dnf5:
        # dnf5 prints repository loading on stderr (Context::print_info)
        _err("Updating and loading repositories:")
        _err("Repositories loaded.")
        return
    when = time.strftime("%a %d %b %Y %I:%M:%S %p %Z", time.localtime(time.time() - 42))
    _out(f"Last metadata expiration check: 0:00:42 ago on {when}.")


def _ini_main(text: str) -> dict[str, str]:
    """The ``[main]`` section of an ini file (dnf.conf)."""
    out: dict[str, str] = {}
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
        elif "=" in line and section == "main":
            k, v = line.split("=", 1)
            out[k.strip().lower()] = v.strip()
    return out


def _mode(ctx: NodeContext, p: argparse_.Parsed, setopts: list[str]) -> Mode:
    mode = Mode(dnf5=ctx.flavor == "fedora")
    try:
        conf = _ini_main(ctx.path(tree.DNF_CONF).read_text())
    except OSError:
        conf = {}
    values = dict(conf)
    for item in setopts:
        k, _, v = item.partition("=")
        values[k.strip().lower()] = v.strip()
        mode.setopts[k.strip().lower()] = v.strip()
    mode.keepcache = values.get("keepcache", "0").lower() in _TRUE
    raw = ",".join(x for x in (p.get("--disableexcludes"), values.get("disable_excludes")) if x)
    mode.disabled_excludes = {x.strip() for x in re.split(r"[\s,]+", raw) if x.strip()}
    return mode


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
                raw = section.get("exclude", section.get("excludepkgs", ""))
                excluded = set(re.split(r"[\s,]+", raw.strip())) - {""}
                self.sections[section_id] = (minor, excluded)
        self.known = ctx.repository

    def versions(self, pkg: str, disabled_excludes: set[str]) -> tuple[list[tuple[str, str]], bool]:
        """((rpm version, repo id) newest last, whether some were filtered by an exclude)."""
        out: list[tuple[str, str]] = []
        filtered = False
        for section_id, (minor, excluded) in self.sections.items():
            if pkg in excluded and not ({"all", "*", section_id} & disabled_excludes):
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
            rest = re.sub(rf"\.({repo.ARCH}|noarch|\*)$", "", rest)
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


# --------------------------------------------------------------------------- versionlock


def _plugin(ctx: NodeContext) -> bool:
    """dnf4: whether the versionlock plugin is installed and enabled."""
    try:
        text = ctx.path(tree.DNF4_VERSIONLOCK_CONF).read_text()
    except OSError:
        return False
    return _ini_main(text).get("enabled", "1").lower() in _TRUE


def read_locks(ctx: NodeContext, dnf5: bool) -> dict[str, str]:
    """Package name -> the locked ``VERSION-RELEASE`` (empty without locks or plugin)."""
    out: dict[str, str] = {}
    if dnf5:
        try:
            text = ctx.path(tree.DNF5_VERSIONLOCK).read_text()
        except OSError:
            return out
        name = None
        for line in text.splitlines():
            m = re.match(r'^\s*name\s*=\s*"([^"]+)"', line)
            if m:
                name = m.group(1)
            m = re.match(r'^\s*value\s*=\s*"([^"]+)"', line)
            if m and name:
                out[name] = m.group(1)
        return out
    if not _plugin(ctx):
        return out
    try:
        text = ctx.path(tree.DNF4_VERSIONLOCK_LIST).read_text()
    except OSError:
        return out
    for line in text.splitlines():
        entry = line.strip()
        if not entry or entry.startswith(("#", "!")):
            continue
        split = _split_spec(entry)
        if split is not None:
            out[split[0]] = split[1]
    return out


def _write_locks(ctx: NodeContext, dnf5: bool, locks: dict[str, str]) -> None:
    if dnf5:
        tree.write_file(ctx.path(tree.DNF5_VERSIONLOCK), tree.dnf5_versionlock_text(locks))
    else:
        stamp = time.strftime("%a %b %d %H:%M:%S %Y")
        text = "".join(f"\n# Added lock on {stamp}\n{n}-0:{v}.*\n" for n, v in locks.items())
        tree.write_file(ctx.path(tree.DNF4_VERSIONLOCK_LIST), text)


# --------------------------------------------------------------------------- install


# one package of a transaction: name, version, installed version (None: new), repo id
Change = tuple[str, str, str | None, str]


def dnf_install(ctx: NodeContext, p: argparse_.Parsed, mode: Mode, download_only: bool) -> int:
    db = ctx.packages()
    _meta(mode)
    chosen = _resolve(ctx, p.positional, mode, db)
    if chosen is None:
        return 1
    changes = [c for c in chosen if c[1] != c[2] or download_only]
    for name, version, old, _ in chosen:
        if version == old and not download_only:
            if mode.dnf5:
                _err(f'Package "{name}-{version}.{repo.ARCH}" is already installed.')
            else:
                _out(f"Package {name}-{version}.{repo.ARCH} is already installed.")
    if not mode.dnf5:
        _out("Dependencies resolved.")
    if not changes:
        _out("Nothing to do.")
        if not mode.dnf5:
            _out("Complete!")
        return 0
    groups: dict[str, list[Change]] = {"Installing": [], "Upgrading": [], "Downgrading": []}
    for c in changes:
        name, version, old, _ = c
        kind = (
            "Installing"
            if old is None
            else ("Upgrading" if _key(version) > _key(old) else "Downgrading")
        )
        groups[kind].append(c)
    _table(groups, mode)
    if download_only:
        if mode.dnf5:
            _err("The operation will only download packages for the transaction.")
        else:
            _out("DNF will only download packages for the transaction.")
    if not p.has("-y"):
        sys.stdout.write("Is this ok [y/N]: ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            _out("Operation aborted." if not mode.dnf5 else "Operation aborted by the user.")
            return 1
    fetched = _download(ctx, changes, mode, set(db.get("downloaded", [])))
    if download_only:
        _keep_downloads(ctx, mode, fetched)
        return 0
    _transaction(ctx, changes, mode, fetched)
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


def _resolve(
    ctx: NodeContext, specs: list[str], mode: Mode, db: dict[str, Any]
) -> list[Change] | None:
    """Each ``name[-version]`` argument -> the package version dnf would pick (the newest
    match the excludes and versionlock let through), or None after printing why not."""
    repos = Repos(ctx)
    locks = read_locks(ctx, mode.dnf5)
    chosen: list[Change] = []
    problems: list[str] = []
    failed: list[str] = []
    for spec in specs:
        split = _split_spec(spec)
        if split is None:
            problems.append(f"No match for argument: {spec}")
            failed.append(spec)
            continue
        name, wanted = split
        versions, filtered = repos.versions(name, mode.disabled_excludes)
        lock = locks.get(name)
        candidates = [(v, r) for v, r in versions if _matches(v, wanted)]
        if lock is not None:
            candidates = [(v, r) for v, r in candidates if v == lock]
        if not candidates:
            by_lock = lock is not None and any(_matches(v, wanted) for v, _ in versions)
            problems.append(_no_match(spec, mode, filtered, by_lock))
            failed.append(spec)
            continue
        version, repo_id = candidates[-1]
        old = (db["packages"].get(name) or {}).get("version")
        chosen.append((name, version, old, repo_id))
    if not problems:
        return chosen
    if mode.dnf5:
        _err("Failed to resolve the transaction:")
        for line in problems:
            _err(line)
    else:
        for line in problems:
            _out(line)
        _err(f"Error: Unable to find a match: {' '.join(failed)}")
    return None


def _no_match(spec: str, mode: Mode, filtered: bool, by_lock: bool) -> str:
    if mode.dnf5:
        if by_lock:
            return f"Argument '{spec}' matches only packages excluded by versionlock."
        if filtered:
            return f"Argument '{spec}' matches only excluded packages."
        return f"No match for argument: {spec}"
    if filtered or by_lock:
        return f"All matches were filtered out by exclude filtering for argument: {spec}"
    return f"No match for argument: {spec}"


def _download(ctx: NodeContext, changes: list[Change], mode: Mode, cached: set[str]) -> set[str]:
    """Fetch what the package cache lacks (what an earlier run left there is not
    downloaded again); returns the ``name=version`` keys fetched now."""
    if not mode.dnf5:
        _out("Downloading Packages:")
    fetched: set[str] = set()
    for i, (name, version, _, _) in enumerate(changes, 1):
        key = f"{name}={version}"
        if key in cached:
            if mode.dnf5:
                _out(f"[{i}/{len(changes)}] {name}-0:{version}.{repo.ARCH}: Already downloaded")
            else:
                _out(f"[SKIPPED] {name}-{version}.{repo.ARCH}.rpm: Already downloaded")
            continue
        ctx.sleep("download")
        fetched.add(key)
        if mode.dnf5:
            _out(
                f"[{i}/{len(changes)}] {name}-0:{version}.{repo.ARCH}{'':<10} 100% | "
                f"40.0 MiB/s | {SIZES[name]:>5}iB | 00m00s"
            )
        else:
            _out(f"{name}-{version}.{repo.ARCH}.rpm{'':<20} 40 MB/s | {SIZES[name]:>5}     00:00")
    _out("-" * 80)
    _out(f"Total{'':<45} 40 MB/s | {10 * len(changes)} MB     00:00")
    db = ctx.packages()
    # the lab's own record of network fetches (tests count them; no dnf file)
    db["fetched"] = [*db.get("fetched", []), *sorted(fetched)]
    ctx.save_packages(db)
    return fetched


def _keep_downloads(ctx: NodeContext, mode: Mode, fetched: set[str]) -> None:
    """``--downloadonly``: the packages stay in the cache (and, keepcache off, are
    remembered as temporary files until the next successful transaction)."""
    db = ctx.packages()
    cache = set(db.get("downloaded", [])) | fetched
    saved = set(db.get("tempfiles", []))
    db["downloaded"] = sorted(cache)
    if not mode.keepcache:
        # dnf4: TempfilePersistor; dnf5: TempFilesMemory. Both remember them.
        db["tempfiles"] = sorted(saved | fetched)
    ctx.save_packages(db)
    _out("Complete!")
    if not mode.dnf5 and not mode.keepcache and (saved | fetched):
        _out("The downloaded packages were saved in cache until the next successful transaction.")
        _out("You can remove cached packages by executing 'dnf clean packages'.")


def _transaction(ctx: NodeContext, changes: list[Change], mode: Mode, fetched: set[str]) -> None:
    """Install each change, then the cache clean-up keepcache=0 asks for."""
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
    db = ctx.packages()
    cache = set(db.get("downloaded", [])) | fetched
    saved = set(db.get("tempfiles", []))
    if not mode.keepcache:
        installed = {f"{n}={v}" for n, v, _, _ in changes}
        if mode.dnf5:
            # only this transaction's inbound packages (Transaction::Impl::run)
            cache -= installed
            saved -= installed
        else:
            # every saved download and this transaction's own (Base._finalize_base)
            cache -= saved | fetched
            saved = set()
    db["downloaded"] = sorted(cache)
    db["tempfiles"] = sorted(saved)
    ctx.save_packages(db)


def _group_rows(groups: dict[str, list[Any]], row: str) -> None:
    """Each non-empty group's ``Kind:`` line, then one ``row`` (a format of name, arch,
    version, repository and size) per package."""
    for kind, items in groups.items():
        if not items:
            continue
        _out(f"{kind}:")
        for name, version, _, repo_id in items:
            _out(row.format(name, repo.ARCH, version, repo_id, SIZES[name]))


def _table(groups: dict[str, list[Any]], mode: Mode) -> None:
    changes = [c for items in groups.values() for c in items]
    if mode.dnf5:
        _out(f"{'Package':<24}{'Arch':<8}{'Version':<28}{'Repository':<16}{'Size':>8}")
        _group_rows(groups, " {0:<23}{1:<8}{2:<28}{3:<16}{4:>6}iB")
        _out()
        _out("Transaction Summary:")
        for kind, items in groups.items():
            if items:
                n = len(items)
                _out(f" {kind + ':':<20}{n:>3} package{'s' if n > 1 else ''}")
        _out()
        _out(f"Total size of inbound packages is {10 * len(changes)} MiB.")
        return
    bar = "=" * 80
    _out(bar)
    _out(" Package          Architecture    Version                    Repository        Size")
    _out(bar)
    _group_rows(groups, " {0:<16} {1:<15} {2:<26} {3:<16} {4:>5}")
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


# --------------------------------------------------------------------------- list


def dnf_list(ctx: NodeContext, p: argparse_.Parsed, mode: Mode) -> int:
    repos = Repos(ctx)
    db = ctx.packages()
    off = mode.disabled_excludes
    words = p.positional
    scope = "all"
    if mode.dnf5:
        for flag, word in (("--installed", "installed"), ("--available", "available")):
            if p.has(flag):
                scope = word
        if p.has("--upgrades"):
            scope = "updates"
    elif words and words[0] in ("installed", "available", "all", "updates", "upgrades"):
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
    _meta(mode)
    installed_rows: list[str] = []
    available_rows: list[str] = []
    for name in names:
        entry = db["packages"].get(name)
        if entry and scope in ("all", "installed"):
            where = "kubernetes" if mode.dnf5 else "@kubernetes"
            installed_rows.append(_row(name, str(entry["version"]), where))
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
        _err("No matching packages to list" if mode.dnf5 else "Error: No matching Packages to list")
        return 1
    if installed_rows:
        _out("Installed packages" if mode.dnf5 else "Installed Packages")
        for row in installed_rows:
            _out(row)
    if available_rows:
        if mode.dnf5 and installed_rows:
            _out()
        _out("Available packages" if mode.dnf5 else "Available Packages")
        for row in available_rows:
            _out(row)
    return 0


def _row(name: str, version: str, repo_id: str) -> str:
    return f"{name + '.' + repo.ARCH:<32}{version:<36}{repo_id}"


# --------------------------------------------------------------------------- versionlock


def dnf_versionlock(ctx: NodeContext, p: argparse_.Parsed, mode: Mode, tool: str) -> int:
    if not mode.dnf5 and not _plugin(ctx):
        _err(f"No such command: versionlock. Please use /usr/bin/{tool} --help")
        _err("It could be a DNF plugin command, try: \"dnf install 'dnf-command(versionlock)'\"")
        return 1
    words = p.positional
    op = words[0] if words else "list"
    names = words[1:]
    if mode.dnf5:
        if op not in ("list", "add", "delete", "clear", "exclude"):
            _err(
                f'Unknown argument "{op}" for command "versionlock". Add "--help" for more '
                "information about the arguments."
            )
            return 2
    elif op not in ("list", "add", "delete", "clear", "exclude"):
        names, op = words, "add"
    db = ctx.packages()
    pkgs: dict[str, Any] = db["packages"]
    locks = read_locks(ctx, mode.dnf5)
    if op == "list":
        if not mode.dnf5:
            _meta(mode)
        first = True
        for name in sorted(locks):
            if mode.dnf5:
                if not first:
                    _out()
                _out("# Added by 'versionlock add' command on 2024-01-08 10:00:00")
                _out(f"Package name: {name}")
                _out(f"evr = {locks[name]}")
            else:
                _out(f"{name}-0:{locks[name]}.*")
            first = False
        return 0
    if op == "clear":
        _write_locks(ctx, mode.dnf5, {})
        return 0
    if not mode.dnf5:
        _meta(mode)
    code = 0
    for spec in names:
        split = _split_spec(spec)
        entry = pkgs.get(split[0]) if split is not None else None
        if op == "add":
            if split is None or entry is None:
                if mode.dnf5:
                    _err(f'No package found for "{spec}".')
                else:
                    _out(f"No package found for: {spec}")
                continue
            name = split[0]
            if name in locks:
                if mode.dnf5:
                    _err(f'Package "{spec}" is already locked.')
                else:
                    _err(f"Package already locked in equivalent form: {name}-0:{locks[name]}.*")
                continue
            locks[name] = str(entry["version"])
            if mode.dnf5:
                _out(f'Adding versionlock on "{name} = {locks[name]}".')
            else:
                _out(f"Adding versionlock on: {name}-0:{locks[name]}.*")
        elif op == "delete":
            name = split[0] if split is not None else spec
            if name in locks:
                if mode.dnf5:
                    _out("Deleting versionlock entry:")
                    _out(f"Package name: {name}")
                    _out(f"evr = {locks[name]}")
                else:
                    _out(f"Deleting versionlock for: {name}-0:{locks[name]}.*")
                del locks[name]
    _write_locks(ctx, mode.dnf5, locks)
    return code


# --------------------------------------------------------------------------- dispatch

_DNF_VALUE = {
    "--disableexcludes",
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
    "--version",
}
# dnf5 dropped --disableexcludes (rpm-software-management/dnf5#581), --downloaddir and
# `-v`; list takes --installed/--available/--upgrades instead of positional words.
_DNF5_VALUE = (_DNF_VALUE - {"--disableexcludes", "--downloaddir"}) | {"--from-repo"}
_DNF5_BOOL = (_DNF_BOOL - {"-v", "--verbose", "--nobest"}) | {
    "--installed",
    "--available",
    "--upgrades",
    "--skip-unavailable",
    "--skip-broken",
}
_DNF_ALIASES = {
    "--assumeyes": "-y",
    "--quiet": "-q",
    "--downloaddir": "--destdir",
    "--cacheonly": "-C",
    "--verbose": "-v",
}


def _take_setopts(args: list[str]) -> tuple[list[str], list[str], str | None]:
    """Split ``--setopt`` (repeatable) out of ``args``: (rest, values, a bad one)."""
    rest: list[str] = []
    values: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            rest.extend(args[i - 1 :])
            break
        if arg == "--setopt":
            if i >= len(args):
                return rest, values, arg
            arg = "--setopt=" + args[i]
            i += 1
        if arg.startswith("--setopt="):
            value = arg[len("--setopt=") :]
            if "=" not in value:
                return rest, values, value
            values.append(value)
            continue
        rest.append(arg)
    return rest, values, None


def dnf(tool: str, args: list[str], ctx: NodeContext) -> int:
    global QUIET
    dnf5 = ctx.flavor == "fedora"
    args, setopts, bad = _take_setopts(args)
    if dnf5:
        p = argparse_.parse(args, _DNF5_VALUE, _DNF5_BOOL, _DNF_ALIASES)
    else:
        p = argparse_.parse(args, _DNF_VALUE, _DNF_BOOL, _DNF_ALIASES)
    QUIET = p.has("-q")
    if p.has("--version"):
        _out(DNF5_VERSION if dnf5 else DNF4_VERSION)
        return 0
    command = p.positional[0] if p.positional else None
    if bad is not None:
        if dnf5:
            _err(
                f'setopt: Badly formatted argument value "{bad}". Add "--help" for more '
                "information about the arguments."
            )
            return 2
        _err(f"{tool}: error: argument --setopt: Setopt argument has no value: {bad}")
        return 2
    if p.unknown:
        if dnf5:
            _err(
                f'Unknown argument "{p.unknown[0]}" for command "{command or "dnf5"}". '
                'Add "--help" for more information about the arguments.'
            )
            return 2
        _err(f"{tool}: error: unrecognized arguments: {' '.join(p.unknown)}")
        return 2
    if command is None:
        if dnf5:
            _err('Missing command. Add "--help" for more information about the arguments.')
            return 2
        _err("Error: No command specified")
        return 1
    p.positional = p.positional[1:]
    mode = _mode(ctx, p, setopts)
    if command in ("install", "upgrade", "update", "downgrade", "reinstall"):
        try:
            with ctx.package_lock(tool):
                return dnf_install(ctx, p, mode, p.has("--downloadonly"))
        except LockBusy as exc:
            _err(f"Waiting for process with pid {exc.holder.split(' ', 1)[0]} to finish.")
            return 1
    if command == "list":
        return dnf_list(ctx, p, mode)
    if command == "download":
        return dnf_download(ctx, p, mode)
    if command == "versionlock":
        return dnf_versionlock(ctx, p, mode, tool)
    if command == "makecache":
        if dnf5:
            _meta(mode)
        else:
            _out("Kubernetes                                      40 kB/s |  17 kB     00:00")
        _out("Metadata cache created.")
        return 0
    if command == "clean":
        if p.positional[:1] in (["packages"], ["all"]):
            db = ctx.packages()
            n = len(db.get("downloaded", []))
            db["downloaded"], db["tempfiles"] = [], []
            ctx.save_packages(db)
            _out(f"{n} files removed")
            return 0
        _out("0 files removed")
        return 0
    if dnf5:
        _err(
            f'Unknown argument "{command}" for command "dnf5". Add "--help" for more '
            "information about the arguments."
        )
        return 2
    _err(f"No such command: {command}. Please use /usr/bin/{tool} --help")
    return 1


def dnf_download(ctx: NodeContext, p: argparse_.Parsed, mode: Mode) -> int:
    repos = Repos(ctx)
    off = mode.disabled_excludes
    _meta(mode)
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
        {"-q", "--query", "-a", "--all", "-i", "--info", "-l", "--list", "-f", "--file"},
        {"--queryformat": "--qf", "--query": "-q", "--all": "-a", "--info": "-i", "--file": "-f"},
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
    if p.has("-f"):
        # the lab's packages own /usr/bin/NAME (what `rpm -qf` answers from the rpmdb)
        owners: list[str] = []
        for path in names:
            base = path.rsplit("/", 1)[-1]
            if path == f"/usr/bin/{base}" and base in pkgs:
                owners.append(base)
            elif ctx.path(path).exists():
                _out(f"file {path} is not owned by any package")
                failures += 1
            else:
                _err(f"error: file {path}: No such file or directory")
                failures += 1
        names = owners
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
