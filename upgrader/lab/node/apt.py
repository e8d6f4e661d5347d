"""The simulated Debian package tools: ``apt-get``/``apt``, ``apt-mark``, ``apt-cache``,
``dpkg-query`` and ``dpkg``, over the node's package database and apt lists.

Owns their output and refusals, word for word where upgrader parses or matches them
(``E: Held packages were changed and -y was used without --allow-change-held-packages.``,
``E: Version '1.28.4-1.1' for 'kubeadm' was not found``, exit 100; ``kubeadm set on
hold.``; the ``apt-cache madison`` columns; the ``dpkg-query -f`` format), and apt's
model of the repository: ``apt-get update`` snapshots the minors the sources list names,
later commands see only that snapshot.

Must not: import upgrader's production code, or touch the host's real apt state.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from upgrader.lab.node import args as argparse_
from upgrader.lab.node import repo
from upgrader.lab.node.context import LockBusy, NodeContext

PACKAGE_INFO = {
    "kubeadm": ("Command-line utility for administering a Kubernetes cluster", 10876),
    "kubelet": ("Node agent for Kubernetes clusters", 36182),
    "kubectl": ("Command-line utility for interacting with a Kubernetes cluster", 20135),
}
SIZES_MB = {"kubeadm": 10.3, "kubelet": 19.9, "kubectl": 10.5}


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(text + "\n")


def _pkg_key(pkg_version: str) -> tuple[int, ...]:
    return repo.pkg_sort_key(pkg_version)


_SIGNED_BY_RE = re.compile(r"signed-by=([^\s\]]+)")


def _sources(ctx: NodeContext) -> list[tuple[str, str | None]]:
    """(minor, signed-by keyring) of each pkgs.k8s.io deb line of the sources lists."""
    out: list[tuple[str, str | None]] = []
    for f in _source_files(ctx):
        try:
            text = f.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            minors = repo.apt_minors(line)
            if minors and minors[0] not in [m for m, _ in out]:
                m = _SIGNED_BY_RE.search(line)
                out.append((minors[0], m.group(1) if m else None))
    return out


def _source_files(ctx: NodeContext) -> list[Any]:
    files: list[Any] = []
    main = ctx.path("/etc/apt/sources.list")
    if main.is_file():
        files.append(main)
    d = ctx.path("/etc/apt/sources.list.d")
    if d.is_dir():
        files.extend(sorted(d.glob("*.list")))
    return files


def _list_minors(ctx: NodeContext) -> list[str]:
    return list(ctx.read_json("apt-lists.json", {"minors": []}).get("minors") or [])


def available(ctx: NodeContext, pkg: str) -> list[tuple[str, str]]:
    """(deb version, minor) of ``pkg`` that apt knows about, newest first."""
    if pkg not in repo.PACKAGE_NAMES:
        return []
    out: list[tuple[str, str]] = []
    for minor in _list_minors(ctx):
        for plain in ctx.repository.get(minor, []):
            out.append((repo.deb_version(plain), minor))
    out.sort(key=lambda vm: _pkg_key(vm[0]), reverse=True)
    return out


def _cdn(minor: str) -> str:
    return repo.CDN_URL.format(minor=minor) + "/deb"


def _lock_error(exc: LockBusy) -> int:
    pid = exc.holder.split(" ", 1)[0]
    name = exc.holder.split(" ", 1)[1].strip("()") if " " in exc.holder else "apt-get"
    _err(f"E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process {pid} ({name})")
    _err(
        "E: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), "
        "is another process using it?"
    )
    return 100


# --------------------------------------------------------------------------- apt-get

_APT_VALUE = {"-o", "-c", "-t", "--target-release", "--option"}
_APT_BOOL = {
    "-y",
    "--yes",
    "--assume-yes",
    "-q",
    "--quiet",
    "-qq",
    "--allow-change-held-packages",
    "--allow-downgrades",
    "-d",
    "--download-only",
    "--no-install-recommends",
    "--install-recommends",
    "-s",
    "--simulate",
    "--dry-run",
    "--just-print",
    "--reinstall",
    "-V",
    "--verbose-versions",
    "--allow-unauthenticated",
    "-f",
    "--fix-broken",
    "--no-download",
    "--allow-remove-essential",
    "-m",
    "--ignore-missing",
    "--force-yes",
}
_APT_ALIASES = {
    "--yes": "-y",
    "--assume-yes": "-y",
    "--quiet": "-q",
    "--download-only": "-d",
    "--simulate": "-s",
    "--dry-run": "-s",
    "--just-print": "-s",
    "--verbose-versions": "-V",
    "--fix-broken": "-f",
    "--option": "-o",
    "--target-release": "-t",
    "--force-yes": "-y",
}


def apt_update(ctx: NodeContext) -> int:
    sources = _sources(ctx)
    wanted = [m for m, _ in sources]
    keyrings = dict(sources)
    before = set(_list_minors(ctx))
    known = ctx.repository
    _out("Hit:1 http://deb.debian.org/debian bookworm InRelease")
    n = 2
    errors: list[str] = []
    fetched = 0
    got: list[str] = []
    for minor in wanted:
        if minor not in known:
            _out(f"Err:{n} {_cdn(minor)}  InRelease")
            _out("  403  Forbidden [IP: 3.167.227.100 443]")
            errors.append(
                f"E: Failed to fetch {repo.BASE_URL.format(minor=minor)}/deb/InRelease  "
                "403  Forbidden [IP: 3.167.227.100 443]"
            )
            errors.append(
                f"E: The repository '{repo.BASE_URL.format(minor=minor)}/deb  InRelease' "
                "is not signed."
            )
            n += 1
            continue
        keyring = keyrings.get(minor)
        if keyring is not None and not _nonempty(ctx, keyring):
            url = f"{repo.BASE_URL.format(minor=minor)}/deb"
            _out(f"Get:{n} {_cdn(minor)}  InRelease [1192 B]")
            _out(f"Err:{n} {_cdn(minor)}  InRelease")
            _out(
                "  The following signatures couldn't be verified because the public key is "
                "not available: NO_PUBKEY 234654DA9A296436"
            )
            errors.append(
                f"W: GPG error: {url}  InRelease: The following signatures couldn't be verified "
                "because the public key is not available: NO_PUBKEY 234654DA9A296436"
            )
            errors.append(f"E: The repository '{url}  InRelease' is not signed.")
            n += 1
            continue
        ctx.sleep("download")
        if minor in before:
            _out(f"Hit:{n} {_cdn(minor)}  InRelease")
            n += 1
        else:
            _out(f"Get:{n} {_cdn(minor)}  InRelease [1192 B]")
            _out(f"Get:{n + 1} {_cdn(minor)}  Packages [{4 + len(known[minor]) * 0.6:.1f} kB]")
            fetched += 1192 + int((4 + len(known[minor]) * 0.6) * 1000)
            n += 2
        got.append(minor)
    if fetched:
        _out(f"Fetched {fetched / 1000:.1f} kB in 0s ({fetched / 300:.1f} kB/s)")
    _out("Reading package lists...")
    ctx.write_json("apt-lists.json", {"minors": got})
    if errors:
        _out(
            "N: Updating from such a repository can't be done securely, and is therefore "
            "disabled by default."
        )
        for e in errors:
            _err(e)
        return 100
    return 0


def _nonempty(ctx: NodeContext, path: str) -> bool:
    try:
        return ctx.path(path).stat().st_size > 0
    except OSError:
        return False


def _reading() -> None:
    _out("Reading package lists...")
    _out("Building dependency tree...")
    _out("Reading state information...")


def apt_install(ctx: NodeContext, p: argparse_.Parsed) -> int:
    assume_yes = p.has("-y")
    db = ctx.packages()
    installed: dict[str, Any] = db["packages"]
    _reading()
    plan: list[tuple[str, str, str | None]] = []  # (pkg, new version, old version)
    errors: list[str] = []
    for spec in p.positional:
        name, _, version = spec.partition("=")
        versions = available(ctx, name)
        if name not in repo.PACKAGE_NAMES:
            errors.append(f"E: Unable to locate package {name}")
            continue
        if version:
            if version not in [v for v, _ in versions]:
                errors.append(f"E: Version '{version}' for '{name}' was not found")
                continue
        elif versions:
            version = versions[0][0]
        else:
            errors.append(f"E: Package '{name}' has no installation candidate")
            continue
        old = (installed.get(name) or {}).get("version")
        plan.append((name, version, old))
    if errors:
        for e in errors:
            _err(e)
        return 100
    if not plan:
        _out("0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.")
        return 0
    changes = [(n, v, o) for n, v, o in plan if v != o or p.has("--reinstall")]
    for n, v, o in plan:
        if v == o and not p.has("--reinstall"):
            _out(f"{n} is already the newest version ({v}).")
    held = [n for n, _, _ in changes if (installed.get(n) or {}).get("held")]
    upgraded = [n for n, v, o in changes if o is not None and _pkg_key(v) >= _pkg_key(o)]
    downgraded = [n for n, v, o in changes if o is not None and _pkg_key(v) < _pkg_key(o)]
    new = [n for n, _, o in changes if o is None]
    if held:
        _out("The following held packages will be changed:")
        _out("  " + " ".join(held))
    if new:
        _out("The following NEW packages will be installed:")
        _out("  " + " ".join(new))
    if upgraded:
        _out("The following packages will be upgraded:")
        _out("  " + " ".join(upgraded))
    if downgraded:
        _out("The following packages will be DOWNGRADED:")
        _out("  " + " ".join(downgraded))
    summary = f"{len(upgraded)} upgraded, {len(new)} newly installed, "
    if downgraded:
        summary += f"{len(downgraded)} downgraded, "
    _out(summary + "0 to remove and 0 not upgraded.")
    if not changes:
        return 0
    if p.has("-s"):
        for n, v, o in changes:
            old = f" [{o}]" if o else ""
            _out(f"Inst {n}{old} ({v} isv:kubernetes:core:stable [amd64])")
        for n, v, _ in changes:
            _out(f"Conf {n} ({v} isv:kubernetes:core:stable [amd64])")
        return 0
    if held and assume_yes and not p.has("--allow-change-held-packages"):
        _err("E: Held packages were changed and -y was used without --allow-change-held-packages.")
        return 100
    if downgraded and assume_yes and not p.has("--allow-downgrades"):
        _err("E: Packages were downgraded and -y was used without --allow-downgrades.")
        return 100
    if (held or downgraded) and not assume_yes:
        sys.stdout.write("Do you want to continue? [Y/n] ")
        sys.stdout.flush()
        answer = sys.stdin.readline()
        if answer.strip().lower() not in ("", "y", "yes") or not answer:
            _out("Abort.")
            return 1
    size = sum(SIZES_MB.get(n, 1.0) for n, _, _ in changes)
    _out(f"Need to get {size:.1f} MB of archives.")
    _out("After this operation, 0 B of additional disk space will be used.")
    # The archive cache (/var/cache/apt/archives): what `--download-only` fetched is not
    # downloaded again (no `delays.download`).
    cached = set(ctx.packages().get("downloaded", []))
    for i, (n, v, _) in enumerate(changes, start=1):
        minor = next(
            (m for v2, m in available(ctx, n) if v2 == v), repo.minor_of(repo.upstream_of(v))
        )
        if f"{n}={v}" in cached:
            continue
        ctx.sleep("download")
        _out(f"Get:{i} {_cdn(minor)}  {n} {v} [{SIZES_MB.get(n, 1.0):.1f} MB]")
    _out(f"Fetched {size:.1f} MB in 0s ({size * 4:.1f} MB/s)")
    if p.has("-d"):
        _out("Download complete and in download only mode")
        db = ctx.packages()
        db["downloaded"] = sorted(
            set(db.get("downloaded", [])) | {f"{n}={v}" for n, v, _ in changes}
        )
        ctx.save_packages(db)
        return 0
    _out("(Reading database ... 60457 files and directories currently installed.)")
    for n, v, o in changes:
        _out(f"Preparing to unpack .../{n}_{v}_amd64.deb ...")
        _out(f"Unpacking {n} ({v}) over ({o}) ..." if o else f"Unpacking {n} ({v}) ...")
        ctx.sleep("package_install")
        ctx.install(n, v)
    for n, v, _ in changes:
        _out(f"Setting up {n} ({v}) ...")
    return 0


def apt_get(tool: str, args: list[str], ctx: NodeContext) -> int:
    p = argparse_.parse(args, _APT_VALUE, _APT_BOOL, _APT_ALIASES)
    if tool == "apt":
        _err("\nWARNING: apt does not have a stable CLI interface. Use with caution in scripts.\n")
    if p.unknown:
        _err(
            f"E: Command line option '{p.unknown[0]}' is not understood in combination with "
            "the other options"
        )
        return 100
    if not p.positional:
        _out("apt 2.6.1 (amd64)")
        _out("Usage: apt-get [options] command")
        return 0
    command, p.positional = p.positional[0], p.positional[1:]
    if command in ("install", "update", "upgrade", "remove", "purge", "dist-upgrade"):
        try:
            with ctx.package_lock(tool):
                if command == "update":
                    return apt_update(ctx)
                if command == "install":
                    if not p.positional:
                        _reading()
                        _out("0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.")
                        return 0
                    return apt_install(ctx, p)
                _reading()
                _out("Calculating upgrade...")
                _out("0 upgraded, 0 newly installed, 0 to remove and 3 not upgraded.")
                return 0
        except LockBusy as exc:
            return _lock_error(exc)
    _err(f"E: Invalid operation {command}")
    return 100


# --------------------------------------------------------------------------- apt-mark


def apt_mark(args: list[str], ctx: NodeContext) -> int:
    words = [a for a in args if not a.startswith("-")]
    if not words:
        _err("E: No operation specified")
        return 100
    op, names = words[0], words[1:]
    db = ctx.packages()
    pkgs: dict[str, Any] = db["packages"]
    if op == "showhold":
        for name in sorted(n for n, e in pkgs.items() if e.get("held")):
            if not names or name in names:
                _out(name)
        return 0
    if op not in ("hold", "unhold"):
        if op in ("showmanual", "showauto", "manual", "auto", "minimize-manual"):
            return 0
        _err(f"E: Invalid operation {op}")
        return 100
    if not names:
        _err("E: No packages found")
        return 100
    for name in names:
        if name not in pkgs:
            _err(f"E: Unable to locate package {name}")
            return 100
    for name in names:
        entry = pkgs[name]
        if op == "hold":
            _out(
                f"{name} was already set on hold." if entry.get("held") else f"{name} set on hold."
            )
            entry["held"] = True
        else:
            _out(
                f"Canceled hold on {name}."
                if entry.get("held")
                else f"{name} was already not on hold."
            )
            entry["held"] = False
    ctx.save_packages(db)
    return 0


# --------------------------------------------------------------------------- apt-cache


def apt_cache(args: list[str], ctx: NodeContext) -> int:
    words = [a for a in args if not a.startswith("-")]
    if not words:
        _err("E: No operation specified")
        return 100
    op, names = words[0], words[1:]
    if op == "madison":
        for name in names:
            versions = available(ctx, name)
            if not versions:
                _out(f"N: Unable to locate package {name}")
                continue
            for version, minor in versions:
                url = repo.BASE_URL.format(minor=minor) + "/deb"
                _out(f"{name:>10} | {version:>10} | {url}  Packages")
        return 0
    if op == "policy":
        pkgs: dict[str, Any] = ctx.packages()["packages"]
        for name in names:
            versions = available(ctx, name)
            entry = pkgs.get(name)
            if not versions and not entry:
                _out(f"N: Unable to locate package {name}")
                continue
            inst = (entry or {}).get("version")
            _out(f"{name}:")
            _out(f"  Installed: {inst or '(none)'}")
            _out(f"  Candidate: {versions[0][0] if versions else inst or '(none)'}")
            _out("  Version table:")
            shown = False
            for version, minor in versions:
                mark = " ***" if version == inst else "    "
                _out(f"{mark} {version} 500")
                _out(f"        500 {repo.BASE_URL.format(minor=minor)}/deb  Packages")
                if version == inst:
                    _out("        100 /var/lib/dpkg/status")
                    shown = True
            if inst and not shown:
                _out(f" *** {inst} 100")
                _out("        100 /var/lib/dpkg/status")
        return 0
    if op == "show":
        for name in names:
            for version, _minor in available(ctx, name)[:1]:
                _out(f"Package: {name}")
                _out(f"Version: {version}")
                _out("Architecture: amd64")
                _out(f"Description: {PACKAGE_INFO[name][0]}")
                _out()
        return 0
    _err(f"E: Invalid operation {op}")
    return 100


# --------------------------------------------------------------------------- dpkg-query / dpkg


def _status(entry: dict[str, Any]) -> str:
    return ("hold" if entry.get("held") else "install") + " ok installed"


def _fields(name: str, entry: dict[str, Any]) -> dict[str, str]:
    status = _status(entry)
    desc, size = PACKAGE_INFO.get(name, ("", 0))
    return {
        "Package": name,
        "binary:Package": name,
        "Version": str(entry.get("version", "")),
        "Status": status,
        "db:Status-Abbrev": ("hi " if entry.get("held") else "ii "),
        "db:Status-Want": status.split(" ")[0],
        "db:Status-Status": "installed",
        "db:Status-Eflag": "ok",
        "Architecture": "amd64",
        "Installed-Size": str(size),
        "Maintainer": "Kubernetes Authors <dev@kubernetes.io>",
        "binary:Summary": desc,
        "Description": desc,
        "Section": "admin",
        "Priority": "optional",
    }


_FIELD_RE = re.compile(r"\$\{([^};]+)(?:;(-?\d+))?\}")


def render_format(fmt: str, fields: dict[str, str]) -> str:
    """dpkg-query's ``--showformat``: ``${Field}``/``${Field;width}`` and backslash escapes."""
    out: list[str] = []
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "\\" and i + 1 < len(fmt):
            out.append({"n": "\n", "t": "\t", "\\": "\\", '"': '"'}.get(fmt[i + 1], fmt[i + 1]))
            i += 2
            continue
        if ch == "$":
            m = _FIELD_RE.match(fmt, i)
            if m:
                value = fields.get(m.group(1), "")
                if m.group(2):
                    width = int(m.group(2))
                    value = value.ljust(-width) if width < 0 else value.rjust(width)
                out.append(value)
                i = m.end()
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def _dpkg_list(names: list[str], pkgs: dict[str, Any]) -> int:
    _out("Desired=Unknown/Install/Remove/Purge/Hold")
    _out("| Status=Not/Inst/Conf-files/Unpacked/halF-conf/Half-inst/trig-aWait/Trig-pend")
    _out("|/ Err?=(none)/Reinst-required (Status,Err: uppercase=bad)")
    _out("||/ Name           Version           Architecture Description")
    _out("+++-==============-=================-============-=================================")
    code = 0
    for name in names or sorted(pkgs):
        entry = pkgs.get(name)
        if entry is None:
            _err(f"dpkg-query: no packages found matching {name}")
            code = 1
            continue
        f = _fields(name, entry)
        _out(
            f"{f['db:Status-Abbrev'][:2]}  {name:<14} {f['Version']:<17} amd64        "
            f"{f['binary:Summary']}"
        )
    return code


def _dpkg_status(names: list[str], pkgs: dict[str, Any], who: str) -> int:
    code = 0
    for name in names:
        entry = pkgs.get(name)
        if entry is None:
            _err(f"{who}: package '{name}' is not installed and no information is available")
            code = 1
            continue
        f = _fields(name, entry)
        for key in (
            "Package",
            "Status",
            "Priority",
            "Section",
            "Installed-Size",
            "Maintainer",
            "Architecture",
            "Version",
        ):
            _out(f"{key}: {f[key]}")
        _out(f"Description: {f['Description']}")
        _out()
    return code


def _dpkg_search(paths: list[str], pkgs: dict[str, Any]) -> int:
    """``dpkg-query -S PATH``: ``kubeadm: /usr/bin/kubeadm`` for a file an installed
    package ships (the lab's packages ship ``/usr/bin/NAME``), else dpkg's refusal."""
    if not paths:
        _err("dpkg-query: --search needs at least one file name pattern argument")
        return 2
    code = 0
    for path in paths:
        name = path.rsplit("/", 1)[-1]
        if path == f"/usr/bin/{name}" and name in pkgs:
            _out(f"{name}: {path}")
        else:
            _err(f"dpkg-query: no path found matching pattern {path}")
            code = 1
    return code


def dpkg_query(tool: str, args: list[str], ctx: NodeContext) -> int:
    p = argparse_.parse(
        args,
        {"-f", "--showformat"},
        {"-W", "--show", "-l", "--list", "-s", "--status", "-S", "--search"},
        {"--showformat": "-f", "--show": "-W", "--list": "-l", "--status": "-s", "--search": "-S"},
    )
    pkgs: dict[str, Any] = ctx.packages()["packages"]
    if p.has("-S"):
        return _dpkg_search(p.positional, pkgs)
    if tool == "dpkg" and (p.has("--print-architecture") or "--print-architecture" in args):
        _out("amd64")
        return 0
    if p.has("-l"):
        return _dpkg_list(p.positional, pkgs)
    if p.has("-s"):
        return _dpkg_status(p.positional, pkgs, tool)
    if tool == "dpkg-query" and (p.has("-W") or p.get("-f") is not None):
        fmt = p.get("-f")
        if fmt is None:
            fmt = "${binary:Package}\t${Version}\n"
        code = 0
        for name in p.positional or sorted(pkgs):
            entry = pkgs.get(name)
            if entry is None:
                _err(f"dpkg-query: no packages found matching {name}")
                code = 1
                continue
            sys.stdout.write(render_format(fmt, _fields(name, entry)))
        return code
    if tool == "dpkg" and "--print-architecture" in p.unknown:
        _out("amd64")
        return 0
    _err(f"{tool}: error: need an action option")
    _err("")
    _err(f"Type {tool} --help for help about querying packages.")
    return 2


def main(tool: str, args: list[str], ctx: NodeContext) -> int:
    if tool in ("apt-get", "apt"):
        return apt_get(tool, args, ctx)
    if tool == "apt-mark":
        return apt_mark(args, ctx)
    if tool == "apt-cache":
        return apt_cache(args, ctx)
    return dpkg_query(tool, args, ctx)
