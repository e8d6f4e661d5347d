"""The ``curl`` of a lab node: simulated for the internet hosts (the lab has none), the
machine's real curl for everything else (the lab's package server).

Owns what a node "downloads": pkgs.k8s.io repository keys
(``https://pkgs.k8s.io/core:/stable:/v1.N/deb/Release.key``,
``.../rpm/repodata/repomd.xml.key``) for the minors the lab's repository offers, and
dl.k8s.io release binaries and their ``.sha256`` (the lab's simulated binaries); any other
internet host does not resolve. Other URLs (the lab's package server) go to the real curl.
Simulated output and exit codes follow curl's (``curl: (22) The requested URL returned
error: 404``, ``curl: (6) Could not resolve host: ...``).

Must not: open network connections itself, or import upgrader's production code.
"""

from __future__ import annotations

import base64
import hashlib
import re
import sys
from pathlib import Path

from upgrader_lab.node import args as argparse_
from upgrader_lab.node import realtool, repo, tree
from upgrader_lab.node.context import NodeContext

_KEY_RE = re.compile(
    r"^https?://(?:pkgs\.k8s\.io|prod-cdn\.packages\.k8s\.io/repositories/isv:/kubernetes)"
    r"/core:/(?:stable|prerelease):/v(\d+\.\d+)/(?:deb/Release\.key|rpm/repodata/repomd\.xml\.key)$"
)
_DL_RE = re.compile(
    r"^https?://(?:dl\.k8s\.io|cdn\.dl\.k8s\.io)/(?:release/)?v(\d+\.\d+\.\d+)/bin/linux/amd64/"
    r"(kubeadm|kubelet|kubectl)(\.sha256)?$"
)
ARMOR_BEGIN = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
ARMOR_END = "-----END PGP PUBLIC KEY BLOCK-----"


def _err(text: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(text + "\n")


def repo_key(minor: str) -> str:
    """The armored "key" of the lab's pkgs.k8s.io repository (one per lab, like the real
    one, which all minors share)."""
    body = base64.b64encode(b"upgrader lab pkgs.k8s.io signing key " + b"\x99" * 32).decode()
    return f"{ARMOR_BEGIN}\n\n{body}\n=lab0\n{ARMOR_END}\n"


def _fetch(ctx: NodeContext, url: str) -> tuple[int, bytes | str]:
    """(HTTP status, body) for ``url``; status 0 means the host does not resolve."""
    m = _KEY_RE.match(url)
    if m:
        if m.group(1) not in ctx.repository:
            return 403, ""
        real_key = ctx.lab_dir / "pkgs" / "Release.key"
        return 200, (real_key.read_bytes() if real_key.is_file() else repo_key(m.group(1)))
    m = _DL_RE.match(url)
    if m:
        plain, tool, sha = m.group(1), m.group(2), m.group(3)
        if plain not in repo.all_versions(ctx.repository) and plain not in _released(ctx):
            return 404, ""
        body = tree.binary_script(tool, f"v{plain}", sys.executable).encode()
        return 200, (hashlib.sha256(body).hexdigest() if sha else body)
    return 0, ""


def _released(ctx: NodeContext) -> set[str]:
    d = ctx.lab_dir / "releases"
    return {p.name[1:] for p in d.iterdir()} if d.is_dir() else set()


def curl(args: list[str], ctx: NodeContext) -> int:
    p = argparse_.parse(
        args,
        {
            "-o",
            "--output",
            "-H",
            "--header",
            "--retry",
            "-m",
            "--max-time",
            "-w",
            "--write-out",
            "--connect-timeout",
            "-A",
            "--user-agent",
        },
        {
            "-f",
            "--fail",
            "-s",
            "--silent",
            "-S",
            "--show-error",
            "-L",
            "--location",
            "-O",
            "--remote-name",
            "-k",
            "--insecure",
            "-v",
            "--verbose",
            "-I",
            "--head",
            "-#",
            "--compressed",
            "--fail-with-body",
        },
        {
            "--output": "-o",
            "--fail": "-f",
            "--silent": "-s",
            "--show-error": "-S",
            "--location": "-L",
            "--remote-name": "-O",
            "--header": "-H",
            "--max-time": "-m",
            "--write-out": "-w",
            "--user-agent": "-A",
            "--insecure": "-k",
            "--verbose": "-v",
        },
    )
    silent = p.has("-s") and not p.has("-S")
    if p.unknown:
        if not silent:
            _err(f"curl: option {p.unknown[0]}: is unknown")
        return 2
    urls = [a for a in p.positional if "://" in a]
    if not urls:
        if not silent:
            _err("curl: no URL specified!")
        return 2
    code = 0
    for url in urls:
        status, body = _fetch(ctx, url)
        if status == 0:
            host = re.sub(r"^[a-z]+://", "", url).split("/", 1)[0]
            if not silent:
                _err(f"curl: (6) Could not resolve host: {host}")
            code = 6
            continue
        if status >= 400 and p.has("-f"):
            if not silent:
                _err(f"curl: (22) The requested URL returned error: {status}")
            code = 22
            continue
        data = body.encode() if isinstance(body, str) else body
        out = p.get("-o")
        if p.has("-O") and out is None:
            out = url.rstrip("/").rsplit("/", 1)[-1]
        if out and out != "-":
            target = ctx.path(out) if out.startswith("/") else Path(out)
            target.write_bytes(data)
        else:
            sys.stdout.buffer.write(data)
    return code


def main(tool: str, args: list[str], ctx: NodeContext) -> int:
    urls = [a for a in args if "://" in a]
    if urls and not all(_simulated(u) for u in urls):
        return realtool.run_real(tool, args, ctx)
    return curl(args, ctx)


def _simulated(url: str) -> bool:
    """dl.k8s.io and pkgs.k8s.io (the lab has no internet); every other URL, e.g. the
    lab's own package server, is fetched by the real curl."""
    return bool(_KEY_RE.match(url) or _DL_RE.match(url))
