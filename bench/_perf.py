"""Shared plumbing of the performance benchmarks (fan-out, overhead, drain, window, memory).

Owns: starting and stopping labs through the real CLI (:func:`lab`), running a command as
a child process and measuring its wall time and peak RSS (:func:`measure`, through
``os.wait4``), medians and ratios, reading a run's events and the lab's ``calls.jsonl``,
the plain-text tables and writing ``bench/results/NAME.json`` with the machine's
description.

Must not: leave a lab running (every :func:`lab` is stopped and purged on the way out,
also on errors), kill a process it did not start, or judge a number (no thresholds).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bench._labdir import LabDir

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
TARGET = "v1.28.4"


# --------------------------------------------------------------------------- processes


def upgrader_argv(*args: str) -> list[str]:
    """The CLI as an operator runs it (``upgrader ...``), from this interpreter."""
    return [sys.executable, "-m", "upgrader", *args]


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("NO_COLOR", "1")
    env["PYTHONPATH"] = str(REPO) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    env.pop("LAB_DIR", None)
    env.pop("LAB_NODE", None)
    if extra:
        env.update(extra)
    return env


@dataclass(frozen=True)
class Measured:
    """One child process: wall seconds, peak RSS in MiB (its own, from wait4), exit code."""

    argv: tuple[str, ...]
    seconds: float
    rss_mib: float
    returncode: int
    stdout: str
    stderr: str

    def check(self, ok: Iterable[int] = (0,)) -> Measured:
        if self.returncode not in tuple(ok):
            tail = " | ".join((self.stderr or self.stdout).strip().splitlines()[-3:])
            raise RuntimeError(
                f"{shlex.join(self.argv[:4])}... exited {self.returncode}: {tail[:600]}"
            )
        return self


def measure(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 900.0,
) -> Measured:
    """Run ``argv`` to completion; wall time from fork to reap, peak RSS via ``wait4``."""
    out_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-{os.getpid()}-{time.monotonic_ns()}"
    with open(f"{out_path}.out", "w+b") as out, open(f"{out_path}.err", "w+b") as err:
        start = time.monotonic()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=dict(env) if env is not None else child_env(),
            cwd=cwd,
            start_new_session=True,
        )
        deadline = start + timeout
        status, usage = 0, None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                os.killpg(proc.pid, 9)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.005)
        seconds = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    for suffix in (".out", ".err"):
        Path(f"{out_path}{suffix}").unlink(missing_ok=True)
    rss = (usage.ru_maxrss / 1024.0) if usage is not None else 0.0  # KiB on Linux
    return Measured(tuple(argv), seconds, rss, proc.returncode, stdout, stderr)


# --------------------------------------------------------------------------- labs


class Lab(LabDir):
    """A running lab: its directory and what ``lab.json`` says (:class:`LabDir`)."""

    @property
    def nodes(self) -> dict[str, dict[str, Any]]:
        return dict(self.info.get("nodes") or {})

    def workers(self) -> list[str]:
        return [n for n, v in self.nodes.items() if v.get("role") == "worker"]

    def calls(self) -> dict[str, list[dict[str, Any]]]:
        """Every node's ``calls.jsonl`` (one record per simulated tool invocation)."""
        return {name: self.records(name) for name in self.nodes}

    def clear_calls(self) -> None:
        for name in self.nodes:
            (self.dir / "nodes" / name / "calls.jsonl").unlink(missing_ok=True)


def flag_spec(control_planes: int, workers: int, **extra: Any) -> dict[str, Any]:
    """A spec like ``lab up --control-planes N --workers M`` plus ``extra`` top-level keys."""
    nodes = [{"name": f"cp-{i}", "role": "control-plane"} for i in range(1, control_planes + 1)]
    nodes += [{"name": f"w-{i}", "role": "worker"} for i in range(1, workers + 1)]
    return {"nodes": nodes, **extra}


@contextmanager
def lab(work: Path, name: str, spec: Mapping[str, Any]) -> Iterator[Lab]:
    """``upgrader lab up --dir work/name --spec ...``; always ``lab down --purge`` after."""
    work.mkdir(parents=True, exist_ok=True)
    lab_dir = work / name
    spec_path = work / f"{name}.spec.yaml"
    spec_path.write_text(yaml.safe_dump(dict(spec), sort_keys=False))
    up = measure(upgrader_argv("lab", "up", "--dir", str(lab_dir), "--spec", str(spec_path)))
    try:
        up.check()
        yield Lab(lab_dir)
    finally:
        measure(upgrader_argv("lab", "down", "--dir", str(lab_dir), "--purge"))
        spec_path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- numbers


def median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def rnd(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def parse_ts(text: str) -> float:
    """An events timestamp (``2026-11-28T09:53:51.123Z``) -> epoch seconds."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def union_seconds(intervals: Iterable[tuple[float, float]]) -> float:
    """Length of the union of ``[start, end)`` intervals."""
    total = 0.0
    cur_start: float | None = None
    cur_end = 0.0
    for s, e in sorted(intervals):
        if cur_start is None or s > cur_end:
            if cur_start is not None:
                total += cur_end - cur_start
            cur_start, cur_end = s, e
        else:
            cur_end = max(cur_end, e)
    if cur_start is not None:
        total += cur_end - cur_start
    return total


# --------------------------------------------------------------------------- output


def rows_of(doc: Mapping[str, Any], keys: Sequence[str]) -> list[tuple[Any, ...]]:
    """The result document's rows as table rows: the values of ``keys``, in that order."""
    return [tuple(r[k] for k in keys) for r in doc["rows"]]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (it reads as plain text too)."""

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.2f}"
        return str(v)

    text_rows = [[cell(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in text_rows)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |"
        for r in text_rows
    ]
    return "\n".join([line, sep, *body])


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    commit = os.environ.get("BENCH_COMMIT") or commit  # a run from an exported tree
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit or None,
    }


def write_result(name: str, doc: dict[str, Any], results_dir: Path | None = None) -> Path:
    out_dir = results_dir or RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    return path


def result_doc(
    bench: str, params: Mapping[str, Any], rows: list[dict[str, Any]], **more: Any
) -> dict[str, Any]:
    """The common shape of every ``bench/results/*.json``."""
    return {"bench": bench, "machine": machine(), "params": dict(params), "rows": rows, **more}
