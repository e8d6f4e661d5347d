#!/usr/bin/env python3
"""Refresh upgrader's Kubernetes release data (the file ``--release-data`` reads).

Owns turning the public release table of endoflife.date (which mirrors kubernetes.io's
release pages: per minor the release date, EOL date and latest patch) into upgrader's
release-data JSON (schema in ``upgrader/core/releases.py``), validated by the same
loader the tool uses. Standard library only; never run by the tool itself, and the
network fetch is never run by the tests.

Usage (from a checkout, or anywhere ``upgrader`` is importable)::

    # fetch and write a file for `upgrader ... --release-data releases.json`
    python scripts/refresh_releases.py -o releases.json
    # offline: convert a copy of https://endoflife.date/api/kubernetes.json
    python scripts/refresh_releases.py --input kubernetes.json -o releases.json
    # maintainers: refresh the packaged table in place
    python scripts/refresh_releases.py -o upgrader/data/releases.json

Minors already in the packaged data but missing from the fetched table are kept; for
minors in both, the fetched dates and latest patch win and the patch list becomes
``v1.N.0`` .. latest (Kubernetes patch numbers have no gaps).

Must not: be imported by the tool, or write anywhere but the ``-o`` file.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from datetime import date
from pathlib import Path
from typing import Any

ENDOFLIFE_URL = "https://endoflife.date/api/kubernetes.json"
OLDEST_MINOR = (1, 19)
TIMEOUT = 30.0

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from upgrader.core.releases import (  # noqa: E402
    load_release_data,
    parse_release_data,
)
from upgrader.core.versions import KubeVersion, VersionError  # noqa: E402
from upgrader.errors import ConfigError  # noqa: E402


def fetch(url: str = ENDOFLIFE_URL) -> Any:
    """GET the https ``url`` (TLS verified by default) and decode its JSON."""
    if not url.startswith("https://"):
        raise ConfigError(f"--url: {url!r} must be an https:// URL")
    headers = {"User-Agent": "upgrader-refresh-releases"}
    req = urllib.request.Request(url, headers=headers)  # noqa: S310 (https checked above)
    with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:  # noqa: S310
        return json.loads(resp.read().decode("utf-8"))


def convert(cycles: Any, base: dict[str, Any], today: date) -> dict[str, Any]:
    """Merge endoflife.date ``cycles`` into the release-data document ``base``."""
    if not isinstance(cycles, list):
        raise ConfigError("endoflife.date data: expected a JSON list of cycles")
    minors: dict[str, Any] = dict(base.get("minors", {}))
    for i, c in enumerate(cycles):
        where = f"endoflife.date data[{i}]"
        if not isinstance(c, dict):
            raise ConfigError(f"{where}: expected an object")
        name, latest, released, eol = (
            c.get("cycle"),
            c.get("latest"),
            c.get("releaseDate"),
            c.get("eol"),
        )
        if not isinstance(name, str) or not isinstance(latest, str):
            raise ConfigError(f"{where}: cycle/latest missing")
        try:
            key = tuple(int(x) for x in name.split("."))
        except ValueError:
            raise ConfigError(f"{where}: cycle {name!r} is not MAJOR.MINOR") from None
        if len(key) != 2 or key < OLDEST_MINOR:
            continue
        if not isinstance(eol, str) or not isinstance(released, str):
            print(f"skipping {name}: no release/EOL date in the source", file=sys.stderr)
            continue
        try:
            v = KubeVersion.parse(latest)
        except VersionError as e:
            raise ConfigError(f"{where}: latest: {e}") from None
        if v.minor_key != key or v.is_prerelease:
            raise ConfigError(f"{where}: latest {latest!r} is not a final {name} release")
        patch = v.patch
        minors[name] = {
            "released": released,
            "eol": eol,
            "latest": str(v),
            "patches": [f"v{name}.{p}" for p in range(patch + 1)],
        }
    ordered = dict(sorted(minors.items(), key=lambda kv: tuple(map(int, kv[0].split(".")))))
    return {
        "schema": 1,
        "generated": today.isoformat(),
        "source": f"{ENDOFLIFE_URL} (mirrors kubernetes.io/releases), fetched {today}; "
        "minors it lacks kept from the previous data",
        "minors": ordered,
    }


def render(doc: dict[str, Any]) -> str:
    """The compact, diff-friendly layout of the packaged file (one minor per two lines)."""
    lines = ["{", f' "schema": {doc["schema"]},']
    lines.append(f' "generated": {json.dumps(doc["generated"])},')
    lines.append(f' "source": {json.dumps(doc["source"])},')
    lines.append(' "minors": {')
    items = list(doc["minors"].items())
    for i, (name, m) in enumerate(items):
        head = {k: m[k] for k in ("released", "eol", "latest")}
        body = json.dumps(head)[1:-1]
        lines.append(f"  {json.dumps(name)}: {{{body},")
        tail = "," if i < len(items) - 1 else ""
        lines.append(f'   "patches": {json.dumps(m.get("patches", []))}}}{tail}')
    lines += [" }", "}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", type=Path, required=True, help="file to write")
    ap.add_argument("--input", type=Path, help="endoflife.date JSON file (no network)")
    ap.add_argument("--url", default=ENDOFLIFE_URL, help="source URL (https)")
    args = ap.parse_args(argv)
    try:
        if args.input is not None:
            cycles = json.loads(args.input.read_text("utf-8"))
        else:
            cycles = fetch(args.url)
        base = load_release_data().to_dict()
        doc = convert(cycles, base, date.today())
        text = render(doc)
        parse_release_data(json.loads(text), str(args.output))  # same validation as the tool
        tmp = args.output.with_name(args.output.name + ".tmp")
        tmp.write_text(text, "utf-8")
        tmp.replace(args.output)
    except (ConfigError, OSError, ValueError) as e:
        print(f"refresh_releases: {e}", file=sys.stderr)
        return 2
    newest = max(doc["minors"], key=lambda n: tuple(map(int, n.split("."))))
    print(f"wrote {args.output}: {len(doc['minors'])} minors, newest {newest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
