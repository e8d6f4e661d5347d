"""The execution engine: walks a plan's entries in order and runs each step, recording every
transition in the run's state before and after it happens.

Owns, per step: the "already done?" check, the attempts (tenacity, exponential backoff with
jitter), the state transitions (``running`` saved atomically *before* a command is sent,
then ``succeeded``/``failed``/``skipped`` with exit code, duration and the masked tail of
stderr), the transcript lines and the events. Per node: cordon provenance (nodes cordoned
before the run stay cordoned; a node we cordoned and then failed on is left cordoned and
the error says so; a drain that fails uncordons only a node we cordoned). Per run: the
order (one node at a time; consecutive workers of one hop in batches of
``max_unavailable``, or with ``--group-by`` in rounds of up to ``per_group`` nodes of every
group; the ``prestage`` visits all at once in a bounded pool; nothing new
starts once a node failed) and the stop at the first
failure with :class:`~upgrader.errors.StepFailed`.

What one attempt of a step kind does, and what its failure means, is that kind's runner
(:mod:`upgrader.execute.runners`, registered by ``StepKind``); the engine gives runners its
services (state, events, transcripts, commands under the node lock, the done-check).

Rules the engine and the runners apply to a step (``check`` exit 0 = the effect is already there):
- recorded ``succeeded``/``skipped``: not touched again;
- a ``check`` passes before the command runs (a fresh step, or one left ``running`` or
  ``failed`` by an earlier run): recorded ``succeeded`` without running the command;
- ``retry_safe`` steps: up to ``attempts`` attempts on any failure (non-zero exit, timeout,
  dropped session, API error);
- other steps are never retried blindly: after a failed attempt their check runs; if it
  passes the step succeeded; a second attempt is made only when the first never reported
  an exit status (timeout, dropped session) *and* the check says the effect is not there;
  a step that exited non-zero, or has no check, fails at once.
- a shell step that runs as root sends its first check and its command in one exec
  (:func:`upgrader.core.nodelock.wrap_checked`), recorded ``running`` before it is sent;
  a check that passed there puts the record back as it was and records the step
  already done; a busy lock or an exec that cannot say what the check found falls back
  to the check alone (below), then the attempts;
- every shell command and check of a step that runs as root (``sudo``, the default) runs
  under the node lock (:mod:`upgrader.core.nodelock`):
  a check that finds the lock held waits for it (a command a killed run left running on
  the node finishes first, and the check then sees its effect); a command that finds it
  held did not run, and is followed by its check (or, retry-safe without a check, by a
  wait for the lock) before another attempt; a step not safe to repeat and without a check
  fails instead. A lock held longer than the step's timeout fails the step, naming it.
- no step is silent for longer than ``progress_every`` (30 s): the waits that know what
  they wait for say it (a drain held by a budget, ``wait-ready``, ``wait-control-plane``,
  the node lock), and any attempt that has said nothing for that long (a long command, a
  drain waiting for pods to terminate, a snapshot) emits ``step-waiting`` "still running
  after Ns; Ns of Ns left". Between nodes the health gate emits ``health-gate-waiting``.

Must not: plan, print (it emits :class:`~upgrader.execute.events.Event` values), import
rich/typer/paramiko/kubernetes, or decide exit codes.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from upgrader import state as st
from upgrader.core import nodelock
from upgrader.core.model import ROLE_WORKER, PlanEntry, Step
from upgrader.core.vocab import StepKind
from upgrader.errors import OutsideWindow, StepFailed, TransportError
from upgrader.execute import events as ev
from upgrader.execute.ops import KubeOps
from upgrader.execute.runners import SHELL, runner_for
from upgrader.execute.runners.base import AttemptFailed, Done, Retryable, Runner
from upgrader.execute.runners.shell import CHECK_TIMEOUT
from upgrader.redact import make_redactor
from upgrader.transport.base import Result, Transport

log = logging.getLogger("upgrader.execute")

TransportFactory = Callable[[str], Transport]
Saver = Callable[[st.RunState], None]

PRESTAGE_PHASE = "prestage"
_CHECK_LABELS = {"before": "check", "resume": "check on resume"}  # else "check <why>"


@dataclass(frozen=True)
class EngineOptions:
    """How the engine runs. ``None`` means "what the step itself says" (the playbook)."""

    max_unavailable: int = 1
    attempts: int = 3  # per retry-safe step
    backoff_initial: float = 2.0  # seconds before the second attempt (then doubling)
    backoff_max: float = 30.0
    drain_timeout: float | None = None
    grace_period: int | None = None
    delete_emptydir_data: bool = False
    force: bool = False
    disable_eviction: bool = False
    ready_timeout: float | None = None
    poll_interval: float | None = None
    progress_every: float = 30.0  # a long wait (drain held by a budget, readiness, health gate)
    secrets: tuple[str, ...] = ()
    snapshot_dir: Path | None = None  # where etcd-snapshot steps put the snapshot (0700)
    prestage_parallel: int = 16  # prestage visits run at once (bounded pool)
    lock_path: str = nodelock.LOCK_PATH  # the node lock every shell command runs under
    lock_wait: float = nodelock.DEFAULT_WAIT  # seconds one command waits for it, then busy
    # --canary N: pause after the control plane and the first N workers (see canary_stop)
    canary: int | None = None
    # a resume given --drain-fallback / --pod-selector: per node (fallback, pod selector)
    # instead of what its stored drain step recorded
    drain_overrides: Mapping[str, tuple[str, str | None]] | None = None
    # --group-by: node -> its group; a batch takes up to per_group nodes of every group
    groups: Mapping[str, str] = field(default_factory=dict)
    per_group: int = 1


# events that tell the operator about a running step (the heartbeat stays quiet after one)
_SPEAKING = frozenset({ev.STEP_STARTED, ev.STEP_WAITING, ev.STEP_LOCK_WAIT, ev.STEP_ATTEMPT_FAILED})


class PauseRun(Exception):
    """Raised by a hook (``before_batch``, ``before_uncordon``): stop the run here, recorded
    as ``paused`` with this reason; the same command continues it."""


def canary_stop(entries: Sequence[PlanEntry], n: int | None) -> tuple[int, str] | None:
    """Where ``--canary n`` pauses: ``(k, reason)``, run ``entries[:k]`` then pause; None
    when there is nothing to pause for (no ``n``, or the canary is the whole plan).

    The canary is the first ``n`` distinct workers of the first worker phase (for a
    multi-hop per-hop plan: the first hop's workers), with every visit planned before them
    (prestage, the control plane). Pure: a function of the plan's entries."""
    if not n or n < 1:
        return None
    first = next((e for e in entries if e.role == ROLE_WORKER and e.phase != PRESTAGE_PHASE), None)
    if first is None:
        return None
    seen: list[str] = []
    for i, e in enumerate(entries):
        if e.role != ROLE_WORKER or e.hop != first.hop or e.phase != first.phase:
            continue
        if e.node not in seen:
            seen.append(e.node)
        if len(seen) == n:
            # the visits of these nodes in this phase that follow directly stay with them
            k = i + 1
            while k < len(entries) and entries[k].node in seen and entries[k].phase == e.phase:
                k += 1
            if k >= len(entries):
                return None
            return k, st.CANARY_PREFIX + ", ".join(seen) + " done"
    return None


def batches(
    entries: Sequence[PlanEntry],
    max_unavailable: int,
    groups: Mapping[str, str] | None = None,
    per_group: int = 1,
) -> list[list[PlanEntry]]:
    """Entries grouped into what may run at once: consecutive ``prestage`` visits (they
    only download; every node at once), consecutive worker visits of one hop and phase, up
    to ``max_unavailable`` distinct nodes; everything else alone, in order.

    With ``groups`` (node -> group, ``--group-by``) the worker batches are bounded per
    group instead: consecutive worker visits of one hop and phase join a batch while it
    holds fewer than ``per_group`` nodes of their group (the planner orders the workers in
    rounds of ``per_group`` nodes of each group, so a batch is one round)."""
    out: list[list[PlanEntry]] = []
    for e in entries:
        last = out[-1] if out else None
        if e.phase == PRESTAGE_PHASE:
            if last is not None and all(x.phase == PRESTAGE_PHASE for x in last):
                last.append(e)
            else:
                out.append([e])
            continue
        if groups:
            room = (
                e.node in groups
                and last is not None
                and sum(1 for x in last if groups.get(x.node) == groups[e.node]) < per_group
            )
        else:
            room = max_unavailable > 1 and last is not None and len(last) < max_unavailable
        if (
            room
            and e.role == ROLE_WORKER
            and last is not None
            and all(
                x.role == ROLE_WORKER
                and x.hop == e.hop
                and x.phase == e.phase
                and x.phase != PRESTAGE_PHASE
                for x in last
            )
            and all(x.node != e.node for x in last)
        ):
            last.append(e)
        else:
            out.append([e])
    return out


class Engine:
    """Runs ``entries`` against the nodes (``transports(node)``) and the API (``kube``),
    recording into ``state`` (saved with ``save`` after every transition). ``guard`` is
    called before each step; whatever it raises stops the run there. ``before_batch`` is
    called before each batch of visits that has work left (the cluster health gate between
    nodes, :func:`upgrader.preflight.between_nodes`); whatever it raises stops the run
    there, before the batch's first step."""

    def __init__(
        self,
        entries: Sequence[PlanEntry],
        state: st.RunState,
        save: Saver,
        transports: TransportFactory,
        kube: KubeOps,
        options: EngineOptions | None = None,
        on_event: ev.EventHandler | None = None,
        transcripts: ev.TranscriptWriter | None = None,
        sleep: Callable[[float], None] = time.sleep,
        guard: Callable[[], None] | None = None,
        before_batch: Callable[[Sequence[PlanEntry]], None] | None = None,
        before_uncordon: Callable[[Step], None] | None = None,
    ) -> None:
        self.entries = tuple(entries)
        self._guard = guard
        self._before_batch = before_batch
        self._before_uncordon = before_uncordon
        self.options = options or EngineOptions()
        self._state = st.sync_steps(state, (s for e in self.entries for s in e.steps))
        self._save = save
        self._transports = transports
        self._kube = kube
        self._emit_fn = on_event
        self._transcripts = transcripts
        self._sleep = sleep
        self._lock = threading.RLock()
        self._secrets = tuple(self.options.secrets)
        self._redact = make_redactor(self._secrets)
        self._index = {s.id: i + 1 for i, s in enumerate(s for e in self.entries for s in e.steps)}
        self._total = len(self._index)
        self._spoke: dict[str, float] = {}  # step id -> when an event last spoke for it

    # ------------------------------------------------------------------ state + events
    @property
    def state(self) -> st.RunState:
        return self._state

    @property
    def kube(self) -> KubeOps:
        return self._kube

    def transport(self, node: str) -> Transport:
        return self._transports(node)

    def update(self, fn: Callable[[st.RunState], st.RunState]) -> st.RunState:
        with self._lock:
            new = fn(self._state)
            if new is not self._state:
                self._save(new)
                self._state = new
            return new

    def mask(self, text: str) -> str:
        return self._redact(text)

    def emit(self, kind: str, /, **data: Any) -> None:
        if self._emit_fn is None:
            return
        clean = {k: self.mask(v) if isinstance(v, str) else v for k, v in data.items()}
        if kind in _SPEAKING and isinstance(data.get("step"), str):
            self._spoke[data["step"]] = time.monotonic()
        try:
            self._emit_fn(ev.Event(kind, {"run_id": self._state.run_id, **clean}))
        except Exception:
            log.exception("event handler failed on %s", kind)

    def gate_waiting(self, batch: Sequence[PlanEntry], message: str) -> None:
        """The health gate before ``batch`` still waits: a ``health-gate-waiting`` event
        (no step runs between nodes, so it is not a ``step-waiting``)."""
        nodes = list(dict.fromkeys(e.node for e in batch))
        self.emit(ev.GATE_WAITING, node=nodes[0] if nodes else None, nodes=nodes, message=message)

    def step_data(self, step: Step) -> dict[str, Any]:
        return {
            "node": step.node,
            "step": step.id,
            "name": step.name,
            "kind": step.kind,
            "index": self._index.get(step.id),
            "total": self._total,
        }

    def note(self, node: str, message: str) -> None:
        if self._transcripts is not None:
            self._transcripts.note(node, message)

    # ------------------------------------------------------------------ the run
    def done_steps(self) -> int:
        return sum(
            1
            for e in self.entries
            for s in e.steps
            if self._state.step(s.id).status in st.DONE_STEP
        )

    def run(self) -> st.RunState:
        """Run every step not done yet. Returns the final state (run ``succeeded``);
        raises :class:`StepFailed` at the first failure (the state says where)."""
        started = time.monotonic()
        nodes = list(dict.fromkeys(e.node for e in self.entries))
        self.emit(
            ev.RUN_STARTED,
            target=self._state.target,
            hops=list(self._state.hops),
            nodes=nodes,
            total_steps=self._total,
            done_steps=self.done_steps(),
            precordoned=sorted(self._state.precordoned),
            transcripts=self._state.transcripts,
        )
        stop = (
            None
            if st.canary_passed(self._state)
            else canary_stop(self.entries, self.options.canary)
        )
        try:
            self._walk(stop)
        except PauseRun as p:
            reason = str(p)
            self.update(lambda s: st.pause(s, reason))
            self._finish(ev.RUN_PAUSED, started, reason=reason)
            return self._state
        except StepFailed as e:
            self._finish(ev.RUN_FINISHED, started, ok=False, error=str(e), node=e.node, step=e.step)
            raise
        except BaseException as e:
            # SIGINT, SIGTERM made one by the CLI, or the --window closed before a node
            if isinstance(e, KeyboardInterrupt | OutsideWindow):
                self.update(lambda s: st.set_status(s, st.RunStatus.INTERRUPTED))
            if isinstance(e, OutsideWindow):
                self.emit(ev.RUN_OUTSIDE_WINDOW, message=str(e), done_steps=self.done_steps())
            error = (
                str(e)
                if isinstance(e, OutsideWindow)
                else f"interrupted: {type(e).__name__}: {e}".rstrip(": ")
            )
            self._finish(ev.RUN_FINISHED, started, ok=False, error=error)
            raise
        self.update(lambda s: st.set_status(s, st.RunStatus.SUCCEEDED))
        self._finish(ev.RUN_FINISHED, started, ok=True)
        return self._state

    def _walk(self, stop: tuple[int, str] | None) -> None:
        """The batches in order (the health gate before each with work left); at the
        canary's stop, :class:`PauseRun` unless the rest has started already."""
        parts = (
            [self.entries] if stop is None else [self.entries[: stop[0]], self.entries[stop[0] :]]
        )
        for i, part in enumerate(parts):
            if i == 1 and stop is not None and not self._started(part):
                raise PauseRun(stop[1])
            for batch in batches(
                part,
                max(1, self.options.max_unavailable),
                self.options.groups,
                max(1, self.options.per_group),
            ):
                if self._before_batch is not None and not all(map(self._entry_done, batch)):
                    self._before_batch(batch)
                self._run_batch(batch)

    def _finish(self, kind: str, started: float, **data: Any) -> None:
        """The run's last event: what ended it, how long it took, how many steps are done."""
        self.emit(kind, **data, duration=time.monotonic() - started, done_steps=self.done_steps())

    def _run_batch(self, batch: list[PlanEntry]) -> None:
        if len(batch) == 1:
            self._run_entry(batch[0])
            return
        # Nodes of one batch run at once; a failure on one lets the others finish the node
        # they are on (a half-done node is worse than a finished one), then the run stops.
        failures: list[StepFailed] = []
        size = len(batch)
        if batch[0].phase == PRESTAGE_PHASE:
            size = max(1, min(size, self.options.prestage_parallel))
        with ThreadPoolExecutor(max_workers=size, thread_name_prefix="upgrade") as pool:
            futures = [pool.submit(self._run_entry, e) for e in batch]
            for f in futures:
                exc = f.exception()
                if isinstance(exc, StepFailed):
                    failures.append(exc)
                elif exc is not None:
                    raise exc
        if failures:
            raise failures[0]

    def _started(self, entries: Sequence[PlanEntry]) -> bool:
        """Any step of these visits (downloads aside) ran already (an earlier run went
        past the canary without pausing: a rerun with --canary does not pause there)."""
        return any(
            self._state.step(s.id).status != st.StepStatus.PENDING
            for e in entries
            if e.phase != PRESTAGE_PHASE
            for s in e.steps
        )

    def _entry_done(self, entry: PlanEntry) -> bool:
        return all(self._state.step(s.id).status in st.DONE_STEP for s in entry.steps)

    def _run_entry(self, entry: PlanEntry) -> None:
        if self._entry_done(entry):
            return
        self.emit(
            ev.NODE_STARTED,
            node=entry.node,
            phase=entry.phase,
            hop=entry.hop,
            role=entry.role,
            steps=len(entry.steps),
        )
        for step in entry.steps:
            self._run_step(step)
        self.emit(ev.NODE_FINISHED, node=entry.node, phase=entry.phase, hop=entry.hop)

    # ------------------------------------------------------------------ one step
    def _run_step(self, step: Step) -> None:
        rec = self._state.step(step.id)
        if rec.status in st.DONE_STEP:
            return
        if self._guard is not None:
            self._guard()  # e.g. the cluster Lease was lost: stop before the next step
        resumed = rec.status in (st.StepStatus.RUNNING, st.StepStatus.FAILED)
        if resumed:
            self.note(step.node, f"{step.id}: left {rec.status.value} by an earlier run")
        if step.kind == StepKind.UNCORDON and step.node in self._state.precordoned:
            reason = "it was cordoned before the run started; left cordoned"
            self.update(lambda s: st.skip_step(s, step.id, message=reason))
            self.note(step.node, f"{step.id}: skipped: {reason}")
            self.emit(ev.STEP_SKIPPED, **self.step_data(step), reason=reason)
            self.emit(ev.NODE_LEFT_CORDONED, node=step.node, step=step.id, reason=reason)
            return
        if step.kind == StepKind.UNCORDON and self._before_uncordon is not None:
            self._before_uncordon(step)  # --hold-uncordon: may raise PauseRun
        runner = runner_for(step.kind)
        if runner is None:
            self._fail(step, f"unknown step kind {step.kind!r}", retried=False)
            return
        first: Callable[[], str] | None = None
        if step.kind == StepKind.SHELL:
            if step.command is None:
                self._fail(step, "the step has no command for this node", retried=False)
            why = "resume" if resumed else "before"
            try:
                done, first = self._check_first(step, rec, why)
            except AttemptFailed as f:
                self._fail(step, str(f), retried=False)
            if done:
                self._succeed(step, "already done (check passed); command not run", None, True)
                return
        self._attempts(step, runner, first)

    def _check_first(
        self, step: Step, rec: st.StepRecord, why: str
    ) -> tuple[bool, Callable[[], str] | None]:
        """The done-check of a shell step before its first attempt: (done, the first
        attempt when it ran already). A step that runs as root sends the check and the
        command in one exec under the node lock (:func:`nodelock.wrap_checked`), recorded
        ``running`` before it is sent; when that exec cannot say what the check found (the
        lock busy, the session lost), the check runs alone, waiting for the lock."""
        if step.check is None:
            return False, None
        if step.sudo and step.command is not None:
            fused = self._check_and_run(step, rec, why)
            if fused is not None:
                return fused
        return self.check(step, rec.attempts, why), None

    def _check_and_run(
        self, step: Step, rec: st.StepRecord, why: str
    ) -> tuple[bool, Callable[[], str] | None] | None:
        """The check and, when it fails, the command, in one round trip; None when the
        exec's output holds no report of the check (then nothing is recorded but the
        exec in the transcript, and the step's record is as it was). ``step-checked``
        and ``step-started`` are said as the check's report arrives, before the command
        has run."""
        assert step.check is not None and step.command is not None
        token = secrets.token_hex(8)
        wait = self.options.lock_wait
        script = nodelock.wrap_checked(
            step.check, step.command, token, wait=wait, path=self.options.lock_path
        )
        timeout = min(step.timeout, CHECK_TIMEOUT) + step.timeout + wait
        self.update(lambda s: st.start_step(s, step.id))
        attempt = self._state.step(step.id).attempts
        watch = nodelock.CheckWatch(token)

        def heard(data: bytes) -> None:
            if watch.feed(data):
                self._checked_event(step, why, watch.exit_code == 0, watch.exit_code, None)
                if watch.exit_code != 0:
                    self.emit(ev.STEP_STARTED, **self.step_data(step), attempt=attempt)

        t0 = time.monotonic()
        with self._heartbeat(step, step.timeout):
            try:
                res = self._transports(step.node).run(
                    script, timeout=timeout, sudo=True, on_stderr=heard
                )
            except TransportError as e:
                res, err = None, str(e)
        took = time.monotonic() - t0
        label = _CHECK_LABELS.get(why, f"check {why}")
        if res is None:
            self._transcribe(step, label, rec.attempts, step.check, None, took, error=err)
            if watch.exit_code == 0:  # done; the session dropped as the script ended
                self.update(lambda s: st.restore_step(s, rec))
                return True, None
            if watch.exit_code is None:
                self._checked_event(step, why, False, None, err)
                self.emit(ev.STEP_STARTED, **self.step_data(step), attempt=attempt)
            # Lost on the way: the command may have started. A failed first attempt
            # without an exit status (its check or a retry decides what follows).
            return False, lambda: SHELL.outcome(self, step, attempt, None, err)
        parts = nodelock.split_checked(res.stdout, res.stderr, token)
        if parts is None and watch.exit_code is None:
            # the lock busy or unsafe, or the check never ended: nothing ran
            self.update(lambda s: st.restore_step(s, rec))
            if not nodelock.is_busy(res.exit_code, res.stderr):
                self._transcribe(step, label, rec.attempts, step.check, res, took)
            return None
        if parts is None:  # the report was heard, then dropped past the output cap
            rc = watch.exit_code
            ran = None if rc == 0 else nodelock.Part("", "", res.exit_code, None)
            parts = nodelock.Checked(nodelock.Part(res.stdout, res.stderr, rc, None), ran)
        return self._read_checked(step, rec, label, attempt, res, parts, took)

    def _read_checked(
        self,
        step: Step,
        rec: st.StepRecord,
        label: str,
        attempt: int,
        res: Result,
        parts: nodelock.Checked,
        took: float,
    ) -> tuple[bool, Callable[[], str] | None]:
        """The transcript of a joint exec, and what it means: done, or the first attempt."""
        assert step.check is not None and step.command is not None
        check, ran = parts.check, parts.command
        check_took = check.duration if check.duration is not None else took
        self._transcribe(step, label, rec.attempts, step.check, check, check_took)
        if ran is None:
            self.update(lambda s: st.restore_step(s, rec))
            return True, None
        duration = ran.duration if ran.duration is not None else max(0.0, took - check_took)
        timed_out = res.timed_out and ran.exit_code is None
        result = Result(step.command, ran.exit_code, ran.stdout, ran.stderr, duration, timed_out)
        self._transcribe(step, "run", attempt, step.command, result, duration)
        if ran.exit_code is None and not timed_out:  # the session ended without a status
            return False, lambda: SHELL.outcome(self, step, attempt, None, "no exit status")
        return False, lambda: SHELL.outcome(self, step, attempt, result, None)

    def _attempts(self, step: Step, runner: Runner, first: Callable[[], str] | None = None) -> None:
        """The attempts of ``step`` (tenacity: exponential backoff with jitter, another
        attempt only after :class:`Retryable`), then its outcome recorded. ``first``: the
        reading of a first attempt that ran already (with the check, in one exec)."""

        def before_sleep(rs: RetryCallState) -> None:
            exc = rs.outcome.exception() if rs.outcome is not None else None
            wait = rs.next_action.sleep if rs.next_action is not None else 0.0
            log.info(
                "%s: attempt %d of %s failed (%s); retrying in %.1fs",
                step.node,
                rs.attempt_number,
                step.id,
                exc,
                wait,
            )
            self.emit(
                ev.STEP_ATTEMPT_FAILED,
                **self.step_data(step),
                attempt=self._state.step(step.id).attempts,
                error=str(exc),
                will_retry=True,
                retry_in=wait,
            )

        retrying = Retrying(
            stop=stop_after_attempt(max(1, self.options.attempts)),
            wait=wait_exponential(
                multiplier=self.options.backoff_initial, max=self.options.backoff_max
            )
            + wait_random(0, self.options.backoff_initial),
            retry=retry_if_exception_type(Retryable),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            pending = [first] if first is not None else []
            message = retrying(lambda: pending.pop()() if pending else self._attempt(step, runner))
        except Done:
            self._succeed(step, "already done (check passed after a failed attempt)", None, True)
            return
        except AttemptFailed as f:
            self._fail(
                step,
                str(f),
                exit_code=f.exit_code,
                stderr=f.stderr,
                retried=self._state.step(step.id).attempts > 1,
            )
        self._succeed(step, message, runner.success_exit_code, False)

    def _attempt(self, step: Step, runner: Runner) -> str:
        """One attempt: record ``running`` (saved), run, classify. Returns a message on
        success; raises :class:`Retryable`, :class:`AttemptFailed` or :class:`Done`."""
        self.update(lambda s: st.start_step(s, step.id))
        attempt = self._state.step(step.id).attempts
        self.emit(ev.STEP_STARTED, **self.step_data(step), attempt=attempt)
        with self._heartbeat(step, runner.limit(self, step)):
            return runner.attempt(self, step, attempt)

    @contextmanager
    def _heartbeat(self, step: Step, limit: float) -> Iterator[None]:
        """While the attempt runs: whenever no event spoke for ``step`` for
        ``progress_every`` seconds, a ``step-waiting`` "still running after Ns; Ns of Ns
        left" (a thread; stopped and joined when the attempt ends)."""
        every = self.options.progress_every
        if every <= 0 or self._emit_fn is None:
            yield
            return
        stop = threading.Event()
        started = time.monotonic()

        def beat() -> None:
            while True:
                last = max(self._spoke.get(step.id, started), started)
                if stop.wait(max(0.0, last + every - time.monotonic())):
                    return
                now = time.monotonic()
                if now - max(self._spoke.get(step.id, started), started) < every:
                    continue  # the step spoke meanwhile
                ran = now - started
                left = (
                    f"{max(0.0, limit - ran):.0f}s of {limit:g}s left"
                    if limit > 0
                    else "no timeout"
                )
                self.emit(
                    ev.STEP_WAITING,
                    **self.step_data(step),
                    message=f"still running after {ran:.0f}s; {left}",
                )

        t = threading.Thread(target=beat, name=f"heartbeat {step.id}", daemon=True)
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join()

    # ------------------------------------------------------------------ shell steps
    def run_command(
        self, step: Step, command: str, label: str, attempt: int, timeout: float
    ) -> tuple[Result | None, str | None]:
        """(result, transport error text): exactly one of them is set. ``command`` runs
        under the node lock, waiting for it at most ``options.lock_wait`` seconds
        on top of ``timeout`` (see :func:`nodelock.is_busy` for the result when it could
        not take it). Transcripts show ``command`` as written in the plan."""
        t0 = time.monotonic()
        # Steps that run as root take the node lock; a ``sudo: false`` step runs as the SSH
        # user, who may not open a root-owned lock file (and cannot change packages or
        # kubeadm's state anyway).
        wait, wrapped = 0.0, command
        if step.sudo:
            wait = self.options.lock_wait
            wrapped = nodelock.wrap(command, wait=wait, path=self.options.lock_path)
        try:
            res = self._transports(step.node).run(wrapped, timeout=timeout + wait, sudo=step.sudo)
        except TransportError as e:
            took = time.monotonic() - t0
            self._transcribe(step, label, attempt, command, None, took, error=str(e))
            return None, str(e)
        self._transcribe(step, label, attempt, command, res, res.duration)
        return res, None

    def _transcribe(
        self,
        step: Step,
        label: str,
        attempt: int,
        command: str,
        res: Result | nodelock.Part | None,
        duration: float,
        error: str | None = None,
    ) -> None:
        """One command in the node's transcript, as written in the plan."""
        if self._transcripts is None:
            return
        if res is None:
            self._transcripts.command(
                step.node, step.id, label, attempt, command, None, duration, "", "", error=error
            )
            return
        self._transcripts.command(
            step.node,
            step.id,
            label,
            attempt,
            command,
            res.exit_code,
            duration,
            res.stdout,
            res.stderr,
            timed_out=isinstance(res, Result) and res.timed_out,
        )

    def announce_lock_wait(self, step: Step, stderr: str) -> float:
        """Say (transcript, event) that ``step`` waits for the node lock, naming who has the
        lock file open when the wrapper could tell (``stderr`` of the busy command, see
        :func:`nodelock.holder`); return when."""
        by = nodelock.holder(stderr)
        held = f"held by {by}" if by else "held"
        self.note(step.node, f"{step.id}: {self.options.lock_path} is {held}; waiting")
        self.emit(ev.STEP_LOCK_WAIT, **self.step_data(step), lock=self.options.lock_path, holder=by)
        return time.monotonic()

    def run_waiting(
        self,
        step: Step,
        command: str,
        label: str,
        attempt: int,
        timeout: float,
        since: float | None = None,
    ) -> tuple[Result | None, str | None]:
        """:meth:`run_command`, run again while another command holds the node lock, up to
        the step's timeout from the first time it was found held (``since``, when the caller
        found it held already and announced the wait); then :class:`AttemptFailed`."""
        while True:
            res, err = self.run_command(step, command, label, attempt, timeout)
            if res is None or not nodelock.is_busy(res.exit_code, res.stderr):
                return res, err
            now = time.monotonic()
            if since is None:
                since = self.announce_lock_wait(step, res.stderr)
            elif now - since >= step.timeout:
                by = nodelock.holder(res.stderr)
                who = f"open by {by}" if by else f"see `fuser -v {self.options.lock_path}` there"
                raise AttemptFailed(
                    f"another command has held the node lock {self.options.lock_path} for "
                    f"{now - since:.0f}s (a command of a killed run may still be running on "
                    f"the node; {who}), so {label!r} could not run",
                    retry=False,
                )

    def _checked_event(
        self, step: Step, why: str, done: bool, exit_code: int | None, error: str | None
    ) -> None:
        self.emit(
            ev.STEP_CHECKED,
            **self.step_data(step),
            done=done,
            why=why,
            resumed=why == "resume",
            exit_code=exit_code,
            error=error,
        )

    def check(self, step: Step, attempt: int, why: str, since: float | None = None) -> bool:
        """Run the step's check; True when it exits 0. A check that cannot run (node
        unreachable, timeout) counts as "not done". ``why``: ``before`` (a fresh step),
        ``resume`` (left running/failed by an earlier run), ``after-failure``,
        ``after-lock-wait``. Waits while another command holds the node lock."""
        assert step.check is not None
        label = _CHECK_LABELS.get(why, f"check {why}")
        res, err = self.run_waiting(
            step, step.check, label, attempt, min(step.timeout, CHECK_TIMEOUT), since
        )
        done = res is not None and res.ok
        problem = err or ("timed out" if res is not None and res.timed_out else None)
        self._checked_event(step, why, done, None if res is None else res.exit_code, problem)
        return done

    # ------------------------------------------------------------------ API steps
    def waiting(self, step: Step) -> Callable[[str], None]:
        """What a long wait of ``step`` calls to say what it waits for (``step-waiting``)."""
        return lambda text: self.emit(ev.STEP_WAITING, **self.step_data(step), message=text)

    # ------------------------------------------------------------------ outcomes
    def _succeed(self, step: Step, message: str, exit_code: int | None, already: bool) -> None:
        self.update(
            lambda s: st.finish_step(
                s, step.id, message=message, exit_code=exit_code, secrets=self._secrets
            )
        )
        rec = self._state.step(step.id)
        self.emit(
            ev.STEP_FINISHED,
            **self.step_data(step),
            attempts=rec.attempts,
            already_done=already,
            exit_code=exit_code,
            duration=_duration(rec),
            message=message,
        )

    def _fail(
        self,
        step: Step,
        message: str,
        *,
        exit_code: int | None = None,
        stderr: str | None = None,
        retried: bool,
    ) -> None:
        rec = self._state.step(step.id)
        attempts = f" after {rec.attempts} attempts" if retried and rec.attempts > 1 else ""
        self.update(
            lambda s: st.fail_step(
                s,
                step.id,
                message=message + attempts,
                exit_code=exit_code,
                stderr=stderr,
                secrets=self._secrets,
            )
        )
        rec = self._state.step(step.id)
        left = ""
        if step.node in self._state.cordoned_by_us:
            left = (
                f"; {step.node} is left cordoned (rerun the same command to resume: it "
                "finishes the node and uncordons it)"
            )
            self.emit(
                ev.NODE_LEFT_CORDONED,
                node=step.node,
                step=step.id,
                reason="the run stopped on this node",
            )
        self.emit(
            ev.STEP_FAILED,
            **self.step_data(step),
            attempts=rec.attempts,
            exit_code=exit_code,
            error=message + attempts,
            stderr_tail=rec.stderr_tail,
            duration=_duration(rec),
        )
        raise StepFailed(
            self.mask(f"node {step.node}: step {step.id} failed: {message}{attempts}{left}"),
            node=step.node,
            step=step.id,
        )


def _duration(rec: st.StepRecord) -> float | None:
    from datetime import datetime

    if rec.started is None or rec.stopped is None:
        return None
    try:
        return (
            datetime.fromisoformat(rec.stopped) - datetime.fromisoformat(rec.started)
        ).total_seconds()
    except ValueError:
        return None


def precordoned_nodes(kube: KubeOps, nodes: Iterable[str]) -> frozenset[str]:
    """The nodes among ``nodes`` that are cordoned right now (read before a run starts)."""
    return frozenset(n for n in dict.fromkeys(nodes) if kube.node_state(n).unschedulable)
