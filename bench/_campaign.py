"""Shared plumbing of the reliability campaigns (chaos, bad input, security).

Owns: starting and stopping a lab in a scratch directory through the real CLI, running the
real CLI in a subprocess (its own session, so a campaign can SIGKILL the whole process
group), reading what the lab recorded (``calls.jsonl``, the node package databases, the
API server's objects over HTTPS with the lab's CA and token), the fast playbook copy the
campaigns run with, the one-line result tables, and a campaign's run from its command
line (:func:`run_campaign`: scratch directory, result file, summary).

Must not: import upgrader's internals to decide an outcome (the campaigns judge the product
from the outside, by what the lab and the files say), or leave a lab running (every
:class:`Lab` is stopped by :func:`lab_session`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from bench._labdir import LabDir

REPO = Path(__file__).resolve().parents[1]
PLAYBOOKS = REPO / "upgrader" / "playbooks"
RESULTS = Path(__file__).resolve().parent / "results"
TARGET = "v1.28.4"

# Lab delays used by the campaigns: short, but every tool call costs a little so that a
# kill can land inside a command and not only inside a drain or a readiness wait.
FAST_DELAYS = {
    "kubelet_ready": 0.3,
    "package_install": 0.2,
    "pod_termination": 0.1,
    "download": 0.0,
    "command": 0.08,
}


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["NO_COLOR"] = "1"
    e["COLUMNS"] = "200"
    e.pop("KUBECONFIG", None)
    return e


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "upgrader", *args]


def apply_argv(inventory: Path | str, *extra: str) -> list[str]:
    """The arguments of ``apply`` of ``inventory`` to :data:`TARGET` without a question,
    then ``extra``."""
    return ["apply", "-i", str(inventory), "--to", TARGET, "--yes", *extra]


def cli(*args: str, timeout: float = 600, extra_env: dict[str, str] | None = None) -> Proc:
    """Run the real CLI to completion (stdin closed, no terminal)."""
    t0 = time.monotonic()
    e = env()
    if extra_env:
        e.update(extra_env)
    p = subprocess.run(
        cli_argv(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=e,
        stdin=subprocess.DEVNULL,
        cwd=REPO,
    )
    return Proc(list(args), p.returncode, p.stdout, p.stderr, time.monotonic() - t0)


def _dpkg_status(text: str) -> dict[str, Any]:
    """Installed packages of a dpkg status file: name -> {version, held}."""
    out: dict[str, Any] = {}
    for stanza in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " "
        )
        state = fields.get("Status", "").split()
        if "Package" in fields and state[-1:] == ["installed"]:
            out[fields["Package"]] = {
                "version": fields.get("Version", ""),
                "held": state[:1] == ["hold"],
            }
    return out


@dataclass
class Proc:
    args: list[str]
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def stderr_lines(self) -> list[str]:
        return [x for x in self.stderr.splitlines() if x.strip()]


def start_cli(*args: str, log: Path, extra_env: dict[str, str] | None = None) -> Popen:
    """Start the CLI in its own session (so that killpg reaches everything it started)."""
    e = env()
    if extra_env:
        e.update(extra_env)
    log.parent.mkdir(parents=True, exist_ok=True)
    fh = log.open("ab")
    p = subprocess.Popen(
        cli_argv(*args),
        stdout=fh,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=e,
        cwd=REPO,
        start_new_session=True,
    )
    fh.close()
    return Popen(p)


@dataclass
class Popen:
    proc: subprocess.Popen[bytes]

    def kill_group(self) -> None:
        """SIGKILL the whole process group of the run, then reap it."""
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)


def fast_playbooks(dest: Path) -> Path:
    """The packaged playbooks, polling readiness and retrying evictions every second."""
    dest.mkdir(parents=True, exist_ok=True)
    doc = yaml.safe_load((PLAYBOOKS / "default.yaml").read_text())
    for phase in doc["phases"].values():
        for key in ("pre", "steps", "post"):
            for step in phase.get(key) or ():
                if step["kind"] in ("wait-ready", "wait-control-plane"):
                    step["params"] = {**(step.get("params") or {}), "poll_interval": 1}
                if step["kind"] == "drain":
                    step["params"] = {**(step.get("params") or {}), "retry_interval": 1}
    (dest / "default.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


def node(name: str, role: str = "worker", **kw: Any) -> dict[str, Any]:
    return {"name": name, "role": role, **kw}


def parse_ts(text: str) -> float:
    """An event timestamp (``2026-11-28T09:53:51.123Z``) as epoch seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"unparsable": line})
    return out


# --------------------------------------------------------------------------- the lab


@dataclass
class Lab(LabDir):
    """A campaign's lab (:class:`LabDir`), which it may stop and start again."""

    @property
    def plan_file(self) -> Path:
        return self.dir / ".upgrader" / "lab.state.json.plan.json"

    @property
    def info(self) -> dict[str, Any]:
        """``lab.json`` read afresh: :meth:`restart_with` starts the lab again."""
        return dict(json.loads((self.dir / "lab.json").read_text()))

    @property
    def spec(self) -> dict[str, Any]:
        return dict(json.loads((self.dir / "spec.json").read_text()))

    @property
    def node_names(self) -> list[str]:
        return [n["name"] for n in self.spec["nodes"]]

    def token(self) -> str:
        return Path(self.info["api"]["token_file"]).read_text().strip()

    # ---- lifecycle
    def up(self, spec: dict[str, Any] | None = None) -> None:
        args = ["lab", "up", "--dir", str(self.dir)]
        if spec is not None:
            self.dir.parent.mkdir(parents=True, exist_ok=True)
            f = self.dir.parent / f"{self.dir.name}.spec.yaml"
            f.write_text(yaml.safe_dump(spec, sort_keys=False))
            args += ["--spec", str(f)]
        r = cli(*args, timeout=300)
        if r.code != 0:
            raise RuntimeError(f"lab up failed ({r.code}): {r.stderr.strip()} {r.stdout.strip()}")

    def down(self, purge: bool = False) -> None:
        if not self.dir.exists():
            return
        args = ["lab", "down", "--dir", str(self.dir)] + (["--purge"] if purge else [])
        r = cli(*args, timeout=180)
        if r.code != 0:
            raise RuntimeError(f"lab down failed ({r.code}): {r.stderr.strip()}")

    def restart_with(self, edit: Any) -> None:
        """Stop the lab, let ``edit(spec_dict)`` change DIR/spec.json, start it again (the
        API server reads faults and never_ready at start)."""
        self.down()
        spec = self.spec
        edit(spec)
        (self.dir / "spec.json").write_text(json.dumps(spec, indent=1) + "\n")
        self.up()

    # ---- what the nodes did
    def calls(self, name: str) -> list[dict[str, Any]]:
        return read_jsonl(self.dir / "nodes" / name / "calls.jsonl")

    def all_calls(self) -> dict[str, list[dict[str, Any]]]:
        return {n: self.calls(n) for n in self.node_names}

    def clear_calls(self) -> None:
        for n in self.node_names:
            (self.dir / "nodes" / n / "calls.jsonl").unlink(missing_ok=True)

    def packages(self, name: str) -> dict[str, Any]:
        """Package -> {version, held}: the real dpkg database of a Debian node (its layer's
        /var/lib/dpkg/status), else the simulated package database (rhel)."""
        root = self.dir / "nodes" / name / "root"
        status = root / "var" / "lib" / "dpkg" / "status"
        if status.is_file():
            return _dpkg_status(status.read_text(errors="replace"))
        p = root / "var" / "lib" / "upgrader-lab" / "packages.json"
        try:
            return dict(json.loads(p.read_text()).get("packages") or {})
        except (OSError, ValueError):
            return {}

    def exhaust_node_faults(self) -> None:
        """Clear every node fault: its counter in faults.json reaches its ``times``."""
        for name in self.node_names:
            nd = self.dir / "nodes" / name
            info = json.loads((nd / "node.json").read_text())
            faults = info.get("faults") or []
            if not faults:
                continue
            counts = {str(f["index"]): int(f.get("times", 1)) for f in faults}
            (nd / "faults.json").write_text(json.dumps(counts, sort_keys=True) + "\n")

    # ---- the API server
    def api(self, path: str, method: str = "GET", body: Any = None) -> Any:
        info = self.info["api"]
        ctx = ssl.create_default_context(cafile=info["ca"])
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            info["url"].rstrip("/") + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token()}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
            return json.loads(resp.read().decode() or "null")

    def nodes_api(self) -> dict[str, dict[str, Any]]:
        """name -> {kubelet, ready, unschedulable}."""
        out = {}
        for item in self.api("/api/v1/nodes")["items"]:
            conds = {c["type"]: c["status"] for c in item["status"].get("conditions", [])}
            out[item["metadata"]["name"]] = {
                "kubelet": item["status"]["nodeInfo"]["kubeletVersion"],
                "ready": conds.get("Ready") == "True",
                "unschedulable": bool(item["spec"].get("unschedulable")),
            }
        return out

    def cluster_version(self) -> str:
        return str(self.api("/version")["gitVersion"])

    def control_plane_images(self) -> dict[str, list[str]]:
        """node -> images of its kube-apiserver/controller-manager/scheduler mirror pods."""
        out: dict[str, list[str]] = {}
        pods = self.api("/api/v1/namespaces/kube-system/pods")["items"]
        for p in pods:
            ann = p["metadata"].get("annotations") or {}
            if "kubernetes.io/config.mirror" not in ann:
                continue
            name = p["metadata"]["name"]
            if not name.startswith(
                ("kube-apiserver-", "kube-controller-manager-", "kube-scheduler-")
            ):
                continue
            for c in p["spec"].get("containers") or []:
                out.setdefault(p["spec"].get("nodeName", "?"), []).append(c.get("image", ""))
        return out


@contextmanager
def lab_session(lab_dir: Path, spec: dict[str, Any] | None, purge: bool = True) -> Iterator[Lab]:
    """A fresh lab in ``lab_dir`` (any previous one there is purged), stopped (and purged)
    on exit."""
    lab = Lab(lab_dir)
    if lab_dir.exists():
        with suppress(RuntimeError):
            lab.down(purge=True)
    lab.up(spec)
    try:
        yield lab
    finally:
        try:
            lab.down(purge=purge)
        except RuntimeError as e:
            print(f"warning: {e}", file=sys.stderr)


# --------------------------------------------------------------------------- output


@dataclass
class Table:
    headers: Sequence[str]
    rows: list[Sequence[Any]] = field(default_factory=list)

    def add(self, *row: Any) -> None:
        self.rows.append(row)

    def text(self) -> str:
        cells = [[str(c) for c in self.headers]] + [[str(c) for c in r] for r in self.rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.headers))]
        lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
        lines.insert(1, "-+-".join("-" * w for w in widths))
        return "\n".join(x.rstrip() for x in lines)

    def markdown(self) -> str:
        out = ["| " + " | ".join(str(h) for h in self.headers) + " |"]
        out.append("|" + "|".join("---" for _ in self.headers) + "|")
        for r in self.rows:
            out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
        return "\n".join(out)


def write_result(
    name: str, doc: dict[str, Any], out: Path | None = None, scratch: Path | None = None
) -> Path:
    """``bench/results/<name>.json`` (or ``out``); the scratch directory and the checkout's
    own path are written as ``<scratch>`` and ``<repo>`` (results are committed)."""
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=1, sort_keys=False, default=str)
    if scratch is not None:
        text = text.replace(str(scratch), "<scratch>")
    text = text.replace(str(REPO), "<repo>")
    path.write_text(text + "\n")
    return path


def run_campaign(
    name: str,
    campaign: Callable[[Path], dict[str, Any]],
    summary: Callable[[dict[str, Any]], str],
    out: Path | None = None,
    *,
    keep: bool = False,
) -> dict[str, Any]:
    """``campaign`` in a fresh scratch directory (removed after it unless ``keep``), its
    result written as ``name`` (:func:`write_result`), its summary and the result's path
    printed; returns the result document."""
    work = Path(tempfile.mkdtemp(prefix=f"upgrader-{name}-"))
    try:
        doc = campaign(work)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    path = write_result(name, doc, out, scratch=work)
    print(summary(doc))
    print(f"results: {path}")
    return doc


def machine() -> dict[str, Any]:
    import platform

    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }
