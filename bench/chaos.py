"""Chaos campaign: SIGKILL ``upgrader apply`` at random moments, resume, check invariants;
then each lab fault type: the first run fails cleanly, the fault is cleared, the rerun
converges.

Owns the campaign (``python -m bench.chaos [--kills K] [--seed S]``), the invariant checker
(:func:`check_invariants`) and ``bench/results/chaos.json``. The invariants, judged only
from what the lab and the run's files record (``calls.jsonl`` of every node, the API
server's objects, the state file after every run, the ``--events`` file):

- **target**: every node Ready at the target kubelet, its kubeadm/kubelet/kubectl packages
  at the target (held where the node holds them), the cluster version and every
  control-plane mirror pod at the target;
- **apply-once**: per hop, exactly one ``kubeadm upgrade apply <hop>`` finished with exit 0
  on the first control-plane node, it is the last one, no other node ran one, and no
  invocation overlapped another. An earlier invocation at the same version is legitimate
  only if it did not finish with exit 0 (killed, dropped or failed);
- **no-rerun-after-success**: a step recorded ``succeeded``/``skipped`` in the state file
  when a run ended never starts again in a later run (events), and no node-changing call
  is made for it afterwards (``calls.jsonl``);
- **no-change-outside-a-step**: every node-changing call (``apt-get install/update``,
  ``apt-mark hold/unhold``, ``dnf install``, ``kubeadm upgrade apply/node``, ``systemctl
  restart/daemon-reload``, ``gpg --dearmor``) starts inside the window of a step of that
  node (``step-started`` .. its end, or the kill and the orphaned remainder of a killed
  session until the next run starts a step);
- **completed-not-repeated**: a step whose command had completed on the node (the final
  call of its successful attempt had already exited 0 in an earlier, killed attempt) runs
  again only when the step is retry-safe *and* has no done-check (the playbook's own
  declaration); with a check, or not retry-safe, it is a violation;
- **cordons**: nodes cordoned before the run are still cordoned, every other node is
  schedulable, the state's ``cordoned_by_us`` is empty;
- **run**: the state says ``succeeded`` with every step done, the state lock and the
  cluster Lease are free, and every run after a kill either was itself killed or exited 0.

Must not: change the product's files, or judge by reading upgrader's internals.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._campaign import (
    FAST_DELAYS,
    TARGET,
    Lab,
    Table,
    apply_argv,
    cli,
    fast_playbooks,
    lab_session,
    machine,
    node,
    parse_ts,
    read_jsonl,
    run_campaign,
    start_cli,
)

SLACK = 0.003  # event timestamps are truncated to milliseconds
RUN_TIMEOUT = 900.0  # seconds a run may take before the campaign calls it hung
TIMED_OUT = -999  # the exit code recorded for a run the campaign had to stop

# --------------------------------------------------------------------------- lab specs


def spec_one_hop() -> dict[str, Any]:
    """1 control plane + 3 workers at 1.27.8 -> 1.28.4; w-2 cordoned beforehand; cp-1's
    repository already at 1.28, the workers' at 1.27 (so the repository step runs)."""
    return {
        "version": "v1.27.8",
        "delays": dict(FAST_DELAYS),
        "nodes": [
            node("cp-1", "control-plane", repo_minor="1.28"),
            node("w-1"),
            node("w-2", cordoned=True),
            node("w-3"),
        ],
    }


def spec_two_hops() -> dict[str, Any]:
    """1 control plane + 2 workers at 1.26 -> 1.27 -> 1.28.4 (no node cordoned beforehand:
    with one of two workers cordoned, a drain of the other has nowhere to put its pods)."""
    return {
        "version": "v1.26.11",
        "delays": dict(FAST_DELAYS),
        "nodes": [node("cp-1", "control-plane"), node("w-1"), node("w-2")],
    }


# --------------------------------------------------------------------------- runs


@dataclass
class Run:
    """One invocation of ``apply`` in a trial."""

    index: int
    started: float
    ended: float
    killed: bool
    code: int | None
    last_line: str
    state: dict[str, Any] | None  # the state file right after the run ended
    in_progress: str | None = None  # the step running when it was killed

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "seconds": round(self.ended - self.started, 2),
            "killed": self.killed,
            "exit_code": self.code,
            "in_progress": self.in_progress,
            "last_line": self.last_line,
        }


def _state(lab: Lab) -> dict[str, Any] | None:
    """The run as recorded after a run ended or was killed: the state file with its
    journal's lines replayed (``upgrader.state.load``, what ``upgrader status`` and a
    resume read); None when there is none or it does not load."""
    from upgrader.errors import ConfigError
    from upgrader.state import load

    try:
        run = load(lab.state)
    except (OSError, ValueError, ConfigError):
        return None
    return None if run is None else run.to_dict()


def _last_line(log: Path, start: int) -> str:
    try:
        data = log.read_bytes()[start:].decode(errors="replace")
    except OSError:
        return ""
    lines = [x for x in data.splitlines() if x.strip()]
    return lines[-1] if lines else ""


def _in_progress(events: list[dict[str, Any]], since: float) -> str | None:
    open_steps: dict[str, float] = {}
    for e in events:
        if "ts" not in e or parse_ts(e["ts"]) < since - SLACK:
            continue
        if e.get("event") == "step-started":
            open_steps[e["step"]] = parse_ts(e["ts"])
        elif e.get("event") in ("step-finished", "step-failed"):
            open_steps.pop(e.get("step", ""), None)
    if not open_steps:
        return None
    return max(open_steps.items(), key=lambda kv: kv[1])[0]


class Runner:
    """Runs ``apply`` with one fixed command line (the same for every resume)."""

    def __init__(self, lab: Lab, work: Path, args: list[str], env: dict[str, str] | None = None):
        self.lab = lab
        self.work = work
        self.events = work / "events.jsonl"
        self.log = work / "apply.log"
        self.args = apply_argv(
            lab.inventory,
            "--playbooks",
            str(fast_playbooks(work / "playbooks")),
            "--events",
            str(self.events),
            *args,
        )
        self.env = env
        self.runs: list[Run] = []

    def _run_started(self, since: float, events_from: int) -> bool:
        """The run began executing (its ``run-started`` event is in the events file)."""
        try:
            with self.events.open("rb") as fh:
                fh.seek(events_from)
                return b'"event": "run-started"' in fh.read()
        except OSError:
            return False

    def run(
        self,
        kill_after: float | None = None,
        timeout: float = RUN_TIMEOUT,
        after_run_started: bool = False,
    ) -> Run:
        """One invocation; SIGKILL its process group ``kill_after`` seconds after it started
        (or, with ``after_run_started``, after it began executing steps: gathering facts
        takes long on a loaded machine) if it still runs then."""
        start_size = self.log.stat().st_size if self.log.exists() else 0
        events_from = self.events.stat().st_size if self.events.exists() else 0
        t0 = time.time()
        p = start_cli(*self.args, log=self.log, extra_env=self.env)
        limit = time.monotonic() + timeout
        armed = kill_after is None or not after_run_started
        deadline = time.monotonic() + (kill_after if kill_after is not None else timeout)
        killed = timed_out = False
        try:
            while p.proc.poll() is None:
                if not armed and self._run_started(t0, events_from):
                    armed = True
                    deadline = time.monotonic() + float(kill_after or 0)
                if (armed and time.monotonic() >= deadline) or time.monotonic() >= limit:
                    p.kill_group()
                    killed = kill_after is not None and armed and time.monotonic() < limit
                    timed_out = not killed
                    break
                time.sleep(0.02)
        finally:
            if p.proc.poll() is None:  # the campaign itself is being stopped
                p.kill_group()
        t1 = time.time()
        code = None if killed else (TIMED_OUT if timed_out else p.proc.returncode)
        r = Run(
            index=len(self.runs),
            started=t0,
            ended=t1,
            killed=killed,
            code=code,
            last_line=_last_line(self.log, start_size),
            state=_state(self.lab),
        )
        if killed:
            r.in_progress = _in_progress(read_jsonl(self.events), t0)
        self.runs.append(r)
        return r


# --------------------------------------------------------------------------- invariants

_MUTATING: tuple[tuple[str, ...], ...] = (
    ("apt-get", "install"),
    ("apt-get", "update"),
    ("apt-get", "remove"),
    ("apt-get", "upgrade"),
    ("apt-mark", "hold"),
    ("apt-mark", "unhold"),
    ("dnf", "install"),
    ("dnf", "makecache"),
    ("yum", "install"),
    ("yum", "makecache"),
    ("kubeadm", "upgrade", "apply"),
    ("kubeadm", "upgrade", "node"),
    ("systemctl", "restart"),
    ("systemctl", "daemon-reload"),
    ("systemctl", "stop"),
    ("systemctl", "start"),
)


def is_mutating(argv: list[str]) -> bool:
    words = [a for a in argv if not a.startswith("-")]
    if argv[:1] == ["gpg"] and "--dearmor" in argv:
        return True
    return any(tuple(words[: len(m)]) == m for m in _MUTATING)


def is_upgrade(argv: list[str]) -> bool:
    """A call that upgrades something on the node (not a repository switch or a download)."""
    if argv[:1] in (["apt-get"], ["dnf"], ["yum"]) and (
        "--download-only" in argv or "--downloadonly" in argv
    ):
        return False
    if argv[:2] in (["apt-get", "update"], ["dnf", "makecache"], ["yum", "makecache"]):
        return False
    if argv[:1] == ["gpg"]:
        return False
    return is_mutating(argv)


def _cmd(argv: list[str]) -> str:
    return " ".join(str(a) for a in argv)


@dataclass
class Window:
    step: str
    node: str
    run: int
    start: float
    end: float
    outcome: str  # finished | failed | killed | ended


@dataclass
class Verdict:
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def bad(self, what: str) -> None:
        self.violations.append(what)

    def note(self, key: str, what: str | None = None) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1
        if what is not None:
            self.notes.append(what)


def _windows(events: list[dict[str, Any]], runs: list[Run]) -> list[Window]:
    """Step windows per run. A killed run's open window lasts until the next run's first
    ``step-started`` (what the killed session still did on the node belongs to it)."""
    out: list[Window] = []
    for r in runs:
        nxt = runs[r.index + 1] if r.index + 1 < len(runs) else None
        evs = [
            e
            for e in events
            if "ts" in e
            and r.started - SLACK <= parse_ts(e["ts"]) <= r.ended + SLACK
            and e.get("run_id") is not None
        ]
        open_: dict[str, Window] = {}
        for e in evs:
            kind = e.get("event")
            if kind == "step-started" and e["step"] not in open_:  # later attempts: same window
                open_[e["step"]] = Window(e["step"], e["node"], r.index, parse_ts(e["ts"]), 0, "")
            elif kind in ("step-finished", "step-failed") and e.get("step") in open_:
                w = open_.pop(e["step"])
                w.end = parse_ts(e["ts"]) + SLACK
                w.outcome = "finished" if kind == "step-finished" else "failed"
                out.append(w)
        for w in open_.values():
            if r.killed:
                end = r.ended
                if nxt is not None:
                    firsts = [
                        parse_ts(e["ts"])
                        for e in events
                        if e.get("event") == "step-started"
                        and "ts" in e
                        and parse_ts(e["ts"]) >= nxt.started
                    ]
                    end = min(firsts) if firsts else nxt.ended
                else:
                    end = time.time()
                w.end, w.outcome = end, "killed"
            else:
                w.end, w.outcome = r.ended, "ended"
            out.append(w)
    return out


def _stored_steps(lab: Lab) -> dict[str, dict[str, Any]]:
    try:
        doc = json.loads(lab.plan_file.read_text())
    except (OSError, ValueError):
        return {}
    return {s["id"]: s for e in doc.get("entries", []) for s in e.get("steps", [])}


def check_invariants(
    lab: Lab, runner: Runner, target: str = TARGET, precordoned: set[str] | None = None
) -> Verdict:
    v = Verdict()
    runs = runner.runs
    events = read_jsonl(runner.events)
    spec = lab.spec
    pre = (
        precordoned
        if precordoned is not None
        else {n["name"] for n in spec["nodes"] if n.get("cordoned")}
    )
    final = runs[-1] if runs else None
    state = final.state if final is not None else None

    # ---- run
    if final is None or final.code != 0:
        v.bad(f"run: the last run did not succeed (exit {final.code if final else None})")
    for r in runs[1:]:
        if not r.killed and r.code not in (0, None) and r is not final:
            v.bad(f"run: run {r.index} after a kill exited {r.code}: {r.last_line}")
    if state is None:
        v.bad("run: no state file")
        return v
    if state.get("status") != "succeeded":
        v.bad(f"run: state status is {state.get('status')!r}")
    undone = [k for k, s in state["steps"].items() if s["status"] not in ("succeeded", "skipped")]
    if undone:
        v.bad(f"run: steps not done in the final state: {undone[:3]}")
    st = cli("status", "-i", str(lab.inventory), "--json", timeout=120)
    try:
        doc = json.loads(st.stdout)
        if doc.get("lock") != "free":
            v.bad(f"run: state lock not free after the run: {doc.get('lock')}")
        lease = str(doc.get("lease"))
        if lease != "free":
            v.bad(f"run: cluster Lease not released after the run: {lease}")
    except ValueError:
        v.bad(f"run: `status --json` failed ({st.code}): {st.stderr.strip()[:200]}")

    # ---- target
    try:
        nodes = lab.nodes_api()
        for name in lab.node_names:
            n = nodes.get(name)
            if n is None:
                v.bad(f"target: node {name} missing from the API")
                continue
            if n["kubelet"] != target or not n["ready"]:
                v.bad(f"target: {name} kubelet {n['kubelet']} ready={n['ready']}")
        cv = lab.cluster_version()
        if cv != target:
            v.bad(f"target: cluster version {cv}")
        for cp, images in lab.control_plane_images().items():
            off = [i for i in images if not i.endswith(":" + target)]
            if off:
                v.bad(f"target: control-plane pods of {cp} run {off}")
    except OSError as e:
        v.bad(f"target: API unreadable: {e}")
        nodes = {}
    want = target.lstrip("v") + "-"
    for sn in spec["nodes"]:
        pk = lab.packages(sn["name"])
        for pkg in ("kubeadm", "kubelet", "kubectl"):
            got = (pk.get(pkg) or {}).get("version", "")
            if not str(got).startswith(want):
                v.bad(f"target: {sn['name']} package {pkg} is {got!r}")
            if pkg in (sn.get("held") or []) and not (pk.get(pkg) or {}).get("held"):
                v.bad(f"target: {sn['name']} package {pkg} is no longer held")

    # ---- cordons
    for name, n in nodes.items():
        if name in pre and not n["unschedulable"]:
            v.bad(f"cordons: {name} was cordoned before the run and is now schedulable")
        if name not in pre and n["unschedulable"]:
            v.bad(f"cordons: {name} left cordoned")
    if set(state.get("precordoned") or []) != pre:
        v.bad(f"cordons: state precordoned {state.get('precordoned')} != {sorted(pre)}")
    if state.get("cordoned_by_us"):
        v.bad(f"cordons: state still records cordoned_by_us {state['cordoned_by_us']}")

    # ---- apply-once
    hops = list(state.get("hops") or [])
    first_cp = next(
        (s["node"] for s in state["steps"].values() if s["phase"] == "first-control-plane"), None
    )
    calls = lab.all_calls()
    for name, cs in calls.items():
        applies = [c for c in cs if c.get("argv", [])[:3] == ["kubeadm", "upgrade", "apply"]]
        if name != first_cp and applies:
            v.bad(
                f"apply-once: {name} (not the first control plane) ran {_cmd(applies[0]['argv'])}"
            )
    for hop in hops:
        cs = [
            c
            for c in calls.get(first_cp or "", [])
            if c.get("argv", [])[:4] == ["kubeadm", "upgrade", "apply", hop]
        ]
        ok = [c for c in cs if c.get("exit_code") == 0]
        if len(ok) != 1:
            v.bad(f"apply-once: {len(ok)} successful `kubeadm upgrade apply {hop}` (want 1)")
        if ok:
            done_at = float(ok[0].get("end") or ok[0]["start"])
            again = [c for c in cs if c is not ok[0] and float(c["start"]) >= done_at]
            if again:
                v.bad(f"apply-once: `kubeadm upgrade apply {hop}` ran again after it had succeeded")
        if len(cs) > 1:
            v.note("apply re-run after an unfinished one")
        spans = sorted((c["start"], c.get("end") or c["start"]) for c in cs)
        for a, b in itertools.pairwise(spans):
            if b[0] < a[1]:
                v.bad(f"apply-once: two `kubeadm upgrade apply {hop}` ran at the same time")

    # ---- the node lock: resumes that found a killed session's command still running
    for ev in events:
        if ev.get("event") == "step-waiting-for-node-lock":
            v.note("waited for the node lock")

    # ---- no rerun after success (state snapshots vs later events)
    started_by_run: dict[int, set[str]] = {}
    for ev in events:
        if ev.get("event") != "step-started" or "ts" not in ev:
            continue
        t = parse_ts(ev["ts"])
        for r in runs:
            if r.started - SLACK <= t <= r.ended + SLACK:
                started_by_run.setdefault(r.index, set()).add(ev["step"])
    done_before: dict[str, int] = {}
    for r in runs:
        for sid, rec in ((r.state or {}).get("steps") or {}).items():
            if rec["status"] in ("succeeded", "skipped"):
                done_before.setdefault(sid, r.index)
    for sid, i in done_before.items():
        for j, started in started_by_run.items():
            if j > i and sid in started:
                v.bad(f"no-rerun: {sid} recorded done after run {i} but started again in run {j}")

    # ---- node-changing calls vs step windows
    windows = _windows(events, runs)
    by_node: dict[str, list[Window]] = {}
    for win in windows:
        by_node.setdefault(win.node, []).append(win)
    t_first = runs[0].started if runs else 0.0
    attributed: dict[str, list[tuple[Window, dict[str, Any]]]] = {}
    for name, cs in calls.items():
        for c in cs:
            argv = [str(a) for a in c.get("argv") or []]
            t = float(c.get("start") or 0)
            if t < t_first:
                continue
            found = [x for x in by_node.get(name, []) if x.start - SLACK <= t <= x.end + SLACK]
            if not found:
                if is_mutating(argv):
                    v.bad(f"no-change-outside-a-step: {name} ran `{_cmd(argv)}` outside any step")
                continue
            w = found[-1]  # the latest window that holds the call
            attributed.setdefault(w.step, []).append((w, c))
            if t > (runs[w.run].ended if w.run < len(runs) else t) and is_mutating(argv):
                v.note("node-changing calls of a killed session that ran on after the kill")
            if w.step in done_before and done_before[w.step] < w.run and is_mutating(argv):
                v.bad(f"no-rerun: {w.step} changed {name} after it was recorded done")

    # ---- completed-not-repeated
    stored = _stored_steps(lab)
    for sid, items in attributed.items():
        runs_of = sorted({w.run for w, _ in items})
        if len(runs_of) < 2:
            continue
        ok_windows = [w for w, _ in items if w.outcome == "finished"]
        if not ok_windows:
            continue
        last_ok = max(ok_windows, key=lambda w: w.start)
        final_calls = [c for w, c in items if w is last_ok]
        if not final_calls:
            continue
        sig = [str(a) for a in final_calls[-1].get("argv") or []]
        earlier = [
            (w, c)
            for w, c in items
            if w.run < last_ok.run
            and [str(a) for a in c.get("argv") or []] == sig
            and c.get("exit_code") == 0
        ]
        if not earlier:
            continue
        step = stored.get(sid, {})
        has_check = bool(step.get("check"))
        retry_safe = bool(step.get("retry_safe"))
        ended = max(float(c.get("end") or 0) for _, c in earlier)
        race = ended > last_ok.start
        what = (
            f"{sid}: its command had completed (`{_cmd(sig)}` exit 0 in run "
            f"{earlier[-1][0].run}) and it ran again in run {last_ok.run}"
            + (" while the killed session's command was still running" if race else "")
        )
        if retry_safe and not has_check:
            v.note("completed retry-safe step without a check repeated", f"note: {what}")
        elif retry_safe and race:
            v.note("retry-safe step repeated while the killed command still ran", f"note: {what}")
        else:
            v.bad(
                f"completed-not-repeated: {what} "
                f"(retry_safe={retry_safe}, check={'yes' if has_check else 'no'})"
            )
    return v


# --------------------------------------------------------------------------- kill campaign


@dataclass
class Trial:
    name: str
    spec: dict[str, Any]
    args: list[str]
    estimate: float  # seconds a whole apply takes on this lab (kill moments are drawn below)


def kill_trial(
    trial: Trial,
    kills: int,
    rng: random.Random,
    work: Path,
    log: Callable[[str], None],
    inspect: Callable[[Lab, Runner], None] | None = None,
) -> dict[str, Any]:
    """One lab, ``kills`` SIGKILLs at random moments, resumes until it converges, then the
    invariants. ``inspect(lab, runner)`` runs last, before the lab goes down (tests)."""
    landed = 0
    with lab_session(work / "lab", trial.spec) as lab:
        runner = Runner(lab, work, trial.args)
        attempts = 0
        while landed < kills and attempts < kills * 4:
            attempts += 1
            st = runner.runs[-1].state if runner.runs else None
            left = 1.0
            if st:
                steps = list(st["steps"].values())
                left = sum(s["status"] not in ("succeeded", "skipped") for s in steps) / len(steps)
            # One kill in five lands while the run starts up (facts, preflight, locks); the
            # others at a random moment of the execution itself.
            early = rng.random() < 0.2
            delay = rng.uniform(0.3, 3.0) if early else rng.uniform(0.0, trial.estimate * left)
            r = runner.run(kill_after=delay, after_run_started=not early)
            if r.killed:
                landed += 1
                when = "after start" if early else "into the execution"
                where = r.in_progress or "between steps"
                log(f"    kill {landed} {delay:.2f}s {when} (in {where})")
            else:
                log(f"    run ended before the kill ({delay:.2f}s): exit {r.code}")
                if r.code == 0:
                    break
        resumes = 0
        while resumes < 3 and (not runner.runs or runner.runs[-1].code != 0):
            resumes += 1
            r = runner.run()
            log(f"    resume: exit {r.code} in {r.ended - r.started:.1f}s")
        converged = bool(runner.runs) and runner.runs[-1].code == 0
        verdict = check_invariants(lab, runner)
        if inspect is not None:
            inspect(lab, runner)
        return {
            "trial": trial.name,
            "args": trial.args,
            "kills": landed,
            "converged": converged,
            "runs": [r.to_dict() for r in runner.runs],
            "violations": verdict.violations,
            "notes": verdict.notes,
            "counts": verdict.counts,
        }


# --------------------------------------------------------------------------- targeted kills

# (step name, node, the command's tool line that hangs first, hang seconds): the kill lands
# while that step's command runs on the node, and the killed session finishes it later.
# The hang outlasts the resume's start-up (facts, preflight: about 5 s here), so the
# resume reaches the step while the killed session's command still runs on the node.
TARGETS: list[tuple[str, str, str, float]] = [
    ("kubeadm-upgrade-apply", "cp-1", "kubeadm upgrade apply", 15.0),
    ("kubelet-kubectl-packages", "w-1", "Timeout=300 kubelet=", 15.0),
]


def targeted_trial(
    step: str,
    node_name: str,
    match: str,
    hang: float,
    work: Path,
    log: Callable[[str], None],
    ssh_user: str | None = None,
) -> dict[str, Any]:
    """Kill ``apply`` one second after ``step`` started on ``node_name`` (its command hangs
    ``hang`` seconds on the node first, then runs: the killed session outlives the kill),
    resume at once, check the invariants. The lab's default SSH user is not root: the
    command runs under the node's real sudo (Debian's sudoers, ``use_pty``) when the lab
    runs as root; ``ssh_user`` overrides it (``root``: no sudo). The result's ``sudo``
    says which it was (lab.json's record)."""
    spec = spec_one_hop()
    spec["faults"] = [{"node": node_name, "match": match, "times": 1, "hang": hang}]
    if ssh_user is not None:
        spec["ssh_user"] = ssh_user
    with lab_session(work / "lab", spec) as lab:
        sudo_mode = dict(lab.info.get("sudo") or {})
        runner = Runner(lab, work, [])
        sid = f"{TARGET}/{node_name}/"
        p = start_cli(*runner.args, log=runner.log)
        t0 = time.time()
        deadline = time.monotonic() + RUN_TIMEOUT
        hit = False
        try:
            while p.proc.poll() is None and time.monotonic() < deadline:
                evs = read_jsonl(runner.events)
                if any(
                    e.get("event") == "step-started"
                    and str(e.get("step", "")).startswith(sid)
                    and str(e.get("step", "")).endswith("/" + step)
                    for e in evs
                ):
                    time.sleep(1.0)
                    hit = p.proc.poll() is None
                    break
                time.sleep(0.05)
        finally:
            p.kill_group()
        r = Run(0, t0, time.time(), hit, None if hit else p.proc.returncode, "", _state(lab))
        r.in_progress = _in_progress(read_jsonl(runner.events), t0) if hit else None
        runner.runs.append(r)
        log(f"    killed during {r.in_progress}" if hit else "    the step never ran")
        resumes = 0
        while resumes < 3 and runner.runs[-1].code != 0:
            resumes += 1
            rr = runner.run()
            log(f"    resume: exit {rr.code} in {rr.ended - rr.started:.1f}s")
        verdict = check_invariants(lab, runner)
        return {
            "trial": f"kill during {step} on {node_name} (command hangs {hang:g}s first)",
            "sudo": sudo_mode,
            "args": [],
            "kills": 1 if hit else 0,
            "converged": runner.runs[-1].code == 0,
            "runs": [x.to_dict() for x in runner.runs],
            "violations": verdict.violations,
            "notes": verdict.notes,
            "counts": verdict.counts,
        }


# --------------------------------------------------------------------------- fault scenarios


@dataclass
class Fault:
    name: str
    kind: str  # the README's fault type
    spec: dict[str, Any]
    args: list[str]
    codes: tuple[int, ...]  # acceptable exit codes of the first run
    node: str | None  # the node the message must name (None: any)
    step: str | None  # the step id suffix the message must name (None: not a step failure)
    cordoned_after: bool | None  # the node's cordon after the failed run
    clear: Callable[[Lab], str]
    words: tuple[str, ...] = ()  # further words the message must hold
    blocker: str | None = None  # exit 3: the preflight finding that refuses the run
    several: bool = False  # steps of a parallel phase may fail together (all must match)


def _base(**extra: Any) -> dict[str, Any]:
    s = spec_one_hop()
    s.update(extra)
    return s


def _exhaust(lab: Lab) -> str:
    lab.exhaust_node_faults()
    return "node fault counters exhausted (faults.json)"


def _drop_api_faults(lab: Lab) -> str:
    lab.restart_with(lambda s: s.update(faults=[f for f in s["faults"] if "api" not in f]))
    return "API fault removed from spec.json, lab restarted"


def _relax_pdb(lab: Lab, spec: dict[str, Any] | None = None) -> str:
    spec = spec or {"minAvailable": 1}
    patch = json.dumps({"spec": spec})
    r = _kubectl(lab, "-n", "default", "patch", "pdb", "db", "--type", "merge", "-p", patch)
    return f"kubectl patch pdb db {patch} ({r})"


def _kubectl(lab: Lab, *args: str) -> str:
    import subprocess

    from bench._campaign import env

    p = subprocess.run(
        ["kubectl", "--kubeconfig", str(lab.dir / "kubeconfig"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(),
    )
    return (p.stdout or p.stderr).strip().splitlines()[0] if (p.stdout or p.stderr) else ""


def _fix_never_ready(lab: Lab) -> str:
    def edit(s: dict[str, Any]) -> None:
        for n in s["nodes"]:
            n["never_ready"] = False

    lab.restart_with(edit)
    lab.api("/_lab/v1/nodes/w-1/kubelet-restart", "POST", {"version": TARGET})
    return "never_ready cleared in spec.json, lab restarted, kubelet restarted (admin endpoint)"


def _publish_packages(lab: Lab) -> str:
    from upgrader_lab import debrepo
    from upgrader_lab.node import repo

    repository = repo.build_repository([])
    repo.write_repository(lab.dir, repository)
    # the Debian nodes' real apt reads the signed repositories (same key, rebuilt indexes)
    debrepo.write_repositories(lab.dir, repository, sys.executable)
    return "1.28.4 packages published to the lab repository (repo.json, signed apt repositories)"


FAULTS: list[Fault] = [
    Fault(
        "ssh-drop-kubeadm-node",
        "SSH drops",
        _base(faults=[{"node": "w-1", "match": "kubeadm upgrade node", "drop": True, "times": 50}]),
        [],
        (1,),
        "w-1",
        "/w-1/worker/kubeadm-upgrade-node",
        False,
        _exhaust,
    ),
    Fault(
        "ssh-drop-kubeadm-apply",
        "SSH drops",
        _base(faults=[{"node": "cp-1", "match": "upgrade apply", "drop": True, "times": 50}]),
        [],
        (1,),
        "cp-1",
        "/cp-1/first-control-plane/kubeadm-upgrade-apply",
        False,
        _exhaust,
    ),
    Fault(
        "ssh-drop-after-drain",
        "SSH drops",
        _base(faults=[{"node": "w-3", "match": "Timeout=300 kubelet=", "drop": True, "times": 50}]),
        [],
        (1,),
        "w-3",
        "/w-3/worker/kubelet-kubectl-packages",
        True,
        _exhaust,
        ("left cordoned",),
    ),
    Fault(
        "api-503-cordon",
        "API errors",
        _base(
            faults=[
                {
                    "api": {
                        "method": "PATCH",
                        "path_prefix": "/api/v1/nodes/w-1",
                        "status": 503,
                        "times": 1000,
                    }
                }
            ]
        ),
        [],
        (1, 5),
        "w-1",
        "/w-1/worker/drain",
        False,
        _drop_api_faults,
    ),
    Fault(
        "api-503-transient",
        "API errors",
        _base(
            faults=[
                {
                    "api": {
                        "method": "GET",
                        "path_prefix": "/api/v1/nodes",
                        "status": 503,
                        "times": 3,
                    }
                }
            ]
        ),
        [],
        (0,),
        None,
        None,
        None,
        lambda lab: "nothing to clear (3 errors, absorbed by retries)",
    ),
    Fault(
        "api-timeout-eviction",
        "API timeouts",
        _base(
            faults=[
                {
                    "api": {
                        "method": "POST",
                        "path_prefix": "/api/v1/namespaces/default/pods",
                        "timeout": 2,
                        "times": 1000,
                    }
                }
            ]
        ),
        ["--drain-timeout", "20"],
        (1, 5),
        "w-1",  # the control plane runs no pod of the default namespace
        "/w-1/worker/drain",
        False,
        _drop_api_faults,
        ("uncordoned again",),
    ),
    Fault(
        "pdb-never-allows",
        "PDB blocks",
        _base(
            workloads=[
                {"kind": "Deployment", "name": "db", "replicas": 2, "pdb": {"minAvailable": 2}},
                {"kind": "DaemonSet", "namespace": "kube-system", "name": "kube-proxy"},
            ]
        ),
        ["--drain-timeout", "4"],
        (1, 3),
        None,
        "/drain",
        False,
        _relax_pdb,
        ("db",),
        blocker="DRAIN_PDB_BLOCKS",
    ),
    Fault(
        "pdb-blocks-drain",
        "PDB blocks",
        # Both db pods on w-1 (w-2 cordoned, w-3 absent): the first eviction is allowed, its
        # replacement has nowhere to run, so the budget refuses the second until the drain
        # times out.
        _base(
            nodes=[
                node("cp-1", "control-plane", repo_minor="1.28"),
                node("w-1"),
                node("w-2", cordoned=True),
            ],
            workloads=[
                {"kind": "Deployment", "name": "db", "replicas": 2, "pdb": {"maxUnavailable": 1}},
                {"kind": "DaemonSet", "namespace": "kube-system", "name": "kube-proxy"},
            ],
        ),
        ["--drain-timeout", "5"],
        (1, 3),
        "w-1",
        "/w-1/worker/drain",
        False,
        lambda lab: _relax_pdb(lab, {"maxUnavailable": 2}),
        ("db",),
        blocker="DRAIN_",
    ),
    Fault(
        "node-never-ready",
        "node never Ready",
        _base(
            nodes=[
                node("cp-1", "control-plane", repo_minor="1.28"),
                node("w-1", never_ready=True),
                node("w-2", cordoned=True),
                node("w-3"),
            ]
        ),
        ["--ready-timeout", "5"],
        (1,),
        "w-1",
        "/w-1/worker/wait-ready",
        True,
        _fix_never_ready,
        ("left cordoned",),
    ),
    Fault(
        "missing-package",
        "missing package",
        _base(missing_packages=["1.28.4"]),
        [],
        (1, 3),
        None,  # the prestage downloads fail on every node at once; the message names one
        "/prestage/download-packages",
        False,
        _publish_packages,
        ("1.28.4", "not offered"),
        blocker="1.28.4",
        several=True,
    ),
]


def fault_scenario(f: Fault, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    problems: list[str] = []
    with lab_session(work / "lab", f.spec) as lab:
        runner = Runner(lab, work, f.args)
        first = runner.run()
        line = first.last_line
        log(f"    first run: exit {first.code} in {first.ended - first.started:.1f}s: {line}")
        if first.code not in f.codes:
            problems.append(f"first run exited {first.code}, expected one of {f.codes}")
        failed_step = None
        failed_node = None
        if first.code != 0:
            errs = [x for x in _text_since(runner.log).splitlines() if x.startswith("error:")]
            if len(errs) != 1:
                problems.append(f"expected exactly one 'error:' line, got {len(errs)}")
            msg = errs[-1] if errs else ""
            if "Traceback" in _text_since(runner.log):
                problems.append("a traceback was printed")
            st = first.state or {}
            failed = [k for k, s in (st.get("steps") or {}).items() if s["status"] == "failed"]
            if first.code == 3:
                # refused by the preflight: a named blocker, and nothing changed on any node
                if f.blocker is None or f.blocker not in _text_since(runner.log):
                    problems.append(f"exit 3 without the expected blocker {f.blocker}")
                for n in lab.node_names:
                    if any(is_mutating(c.get("argv") or []) for c in lab.calls(n)):
                        problems.append(f"{n} was changed although the run was refused")
            elif f.step is not None:
                step_suffix = f.step
                if (len(failed) != 1 and not (f.several and failed)) or not all(
                    x.endswith(step_suffix) for x in failed
                ):
                    problems.append(f"failed steps in the state {failed}, expected *{f.step}")
                named = [x for x in failed if x in msg]
                if failed and not named:
                    problems.append(f"the message names none of the failed steps {failed}")
                if named:
                    failed_step = named[0]
                    failed_node = st["steps"][failed_step]["node"]
                    if failed_node not in msg:
                        problems.append(f"the message does not name the node {failed_node}")
            if f.node is not None and first.code != 3 and f.node not in msg:
                problems.append(f"the message does not name the node {f.node}")
            for w in f.words if first.code != 3 else ():
                if w not in msg:
                    problems.append(f"the message does not say {w!r}")
            if f.cordoned_after is not None and failed_node is not None:
                cord = lab.nodes_api()[failed_node]["unschedulable"]
                if cord != f.cordoned_after:
                    problems.append(
                        f"{failed_node} is {'cordoned' if cord else 'schedulable'} after the "
                        f"failure, expected {'cordoned' if f.cordoned_after else 'schedulable'}"
                    )
                ours = failed_node in (st.get("cordoned_by_us") or {})
                if ours != f.cordoned_after:
                    problems.append(f"state cordoned_by_us={ours} for {failed_node}")
            if failed_node is not None:
                # Nodes whose visit comes later were not upgraded (the prestage phase may
                # have switched their repository and downloaded packages: not a change).
                for n in _nodes_after(st, failed_node):
                    touched = [c for c in lab.calls(n) if is_upgrade(c.get("argv") or [])]
                    if touched:
                        problems.append(
                            f"{n} (after the failed node) was changed: "
                            f"`{_cmd(touched[0].get('argv') or [])}`"
                        )
            cleared = f.clear(lab)
            log(f"    cleared: {cleared}")
            second = runner.run()
            log(f"    rerun: exit {second.code} in {second.ended - second.started:.1f}s")
        else:
            msg = ""
            cleared = f.clear(lab)
        verdict = check_invariants(lab, runner)
        return {
            "scenario": f.name,
            "fault": f.kind,
            "args": f.args,
            "first_exit": first.code,
            "message": msg,
            "failed_step": failed_step,
            "cleared": cleared,
            "converged": bool(runner.runs) and runner.runs[-1].code == 0,
            "runs": [r.to_dict() for r in runner.runs],
            "violations": problems + verdict.violations,
            "notes": verdict.notes,
            "counts": verdict.counts,
        }


def _text_since(log: Path) -> str:
    try:
        return log.read_text(errors="replace")
    except OSError:
        return ""


def _nodes_after(state: dict[str, Any], node_name: str) -> list[str]:
    order = list(dict.fromkeys(s["node"] for s in state.get("steps", {}).values()))
    return order[order.index(node_name) + 1 :] if node_name in order else []


# --------------------------------------------------------------------------- main


def trials(rng: random.Random) -> list[Trial]:
    return [
        Trial("1.27->1.28 (1 cp + 3 workers)", spec_one_hop(), [], 16.0),
        Trial("1.26->1.28 two hops, auto", spec_two_hops(), [], 26.0),
        Trial("1.26->1.28 two hops, per-hop", spec_two_hops(), ["--strategy", "per-hop"], 30.0),
    ]


def campaign(
    kills: int,
    seed: int,
    work: Path,
    faults: list[str] | None,
    log: Callable[[str], None] = print,
    targeted: bool = True,
) -> dict[str, Any]:
    rng = random.Random(seed)
    t0 = time.monotonic()
    kill_results: list[dict[str, Any]] = []
    landed = 0
    kinds = trials(rng)
    i = 0
    while landed < kills:
        trial = kinds[i % len(kinds)]
        n = min(kills - landed, rng.randint(1, 3))
        log(f"trial {i + 1}: {trial.name}, {n} kill(s)")
        res = kill_trial(trial, n, rng, work / f"trial{i + 1}", log)
        kill_results.append(res)
        landed += res["kills"]
        for x in res["violations"]:
            log(f"    VIOLATION: {x}")
        i += 1
        if i > kills * 3:
            break
    for step, node_name, match, hang in TARGETS if targeted else ():
        log(f"targeted: kill during {step} on {node_name}")
        res = targeted_trial(step, node_name, match, hang, work / f"target-{step}", log)
        kill_results.append(res)
        for x in res["violations"]:
            log(f"    VIOLATION: {x}")
    fault_results: list[dict[str, Any]] = []
    for f in FAULTS:
        if faults is not None and f.name not in faults:
            continue
        log(f"fault: {f.name} ({f.kind})")
        res = fault_scenario(f, work / f"fault-{f.name}", log)
        fault_results.append(res)
        for x in res["violations"]:
            log(f"    VIOLATION: {x}")
    total_kills = sum(r["kills"] for r in kill_results)
    converged_kills = sum(r["kills"] for r in kill_results if r["converged"])
    violations = sum(len(r["violations"]) for r in kill_results + fault_results)
    return {
        "seed": seed,
        "kills_requested": kills,
        "kills": total_kills,
        "converged": converged_kills,
        "violations": violations,
        "seconds": round(time.monotonic() - t0, 1),
        "machine": machine(),
        "trials": kill_results,
        "faults": fault_results,
    }


def summary(doc: dict[str, Any]) -> str:
    lines = [
        f"{doc['kills']} kills, {doc['converged']} converged, "
        f"{sum(len(t['violations']) for t in doc['trials'])} violations"
    ]
    t = Table(["trial", "kills", "runs", "converged", "violations", "repeats (benign)"])
    for r in doc["trials"]:
        benign = sum(v for k, v in r["counts"].items() if "repeated" in k)
        t.add(
            r["trial"],
            r["kills"],
            len(r["runs"]),
            "yes" if r["converged"] else "NO",
            len(r["violations"]),
            benign,
        )
    lines.append(t.text())
    if doc["faults"]:
        ft = Table(["fault", "scenario", "first run", "cleared by", "rerun", "violations"])
        for r in doc["faults"]:
            ft.add(
                r["fault"],
                r["scenario"],
                f"exit {r['first_exit']}",
                r["cleared"],
                "converged" if r["converged"] else "NOT converged",
                len(r["violations"]),
            )
        lines.append(ft.text())
        fv = sum(len(r["violations"]) for r in doc["faults"])
        lines.append(
            f"{len(doc['faults'])} fault scenarios, "
            f"{sum(1 for r in doc['faults'] if r['converged'])} converged, {fv} violations"
        )
    for r in doc["trials"] + doc["faults"]:
        for x in r["violations"]:
            lines.append(f"violation [{r.get('trial') or r.get('scenario')}]: {x}")
    return "\n".join(lines)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through the labs' and runs' cleanup


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=20, help="SIGKILLs to land (default 20)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (kill moments)")
    ap.add_argument(
        "--faults",
        default="all",
        help="comma-separated fault scenarios, 'all' (default) or 'none'",
    )
    ap.add_argument("--out", type=Path, default=None, help="result JSON (default bench/results)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument(
        "--no-targeted",
        action="store_true",
        help="skip the kills aimed at kubeadm upgrade apply and a package install",
    )
    a = ap.parse_args(argv)
    faults = None if a.faults == "all" else [] if a.faults == "none" else a.faults.split(",")
    signal.signal(signal.SIGTERM, _terminate)
    doc = run_campaign(
        "chaos",
        lambda work: campaign(a.kills, a.seed, work, faults, targeted=not a.no_targeted),
        summary,
        a.out,
        keep=a.keep,
    )
    return 0 if doc["violations"] == 0 and doc["converged"] == doc["kills"] else 1


if __name__ == "__main__":
    sys.exit(main())
