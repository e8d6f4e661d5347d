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

Rules the engine applies to a step (``check`` exit 0 = the effect is already there):
- recorded ``succeeded``/``skipped``: not touched again;
- a ``check`` passes before the command runs (a fresh step, or one left ``running`` or
  ``failed`` by an earlier run): recorded ``succeeded`` without running the command;
- ``retry_safe`` steps: up to ``attempts`` attempts on any failure (non-zero exit, timeout,
  dropped session, API error);
- other steps are never retried blindly: after a failed attempt their check runs; if it
  passes the step succeeded; a second attempt is made only when the first never reported
  an exit status (timeout, dropped session) *and* the check says the effect is not there;
  a step that exited non-zero, or has no check, fails at once.
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
import os
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
from upgrader.core import etcd as etcd_mod
from upgrader.core import nodelock
from upgrader.core.drain import fallback_text
from upgrader.core.model import ROLE_WORKER, PlanEntry, Step
from upgrader.core.vocab import API_KINDS, StepKind
from upgrader.errors import KubernetesError, OutsideWindow, StepFailed, TransportError
from upgrader.execute import events as ev
from upgrader.execute import snapshot as snap
from upgrader.execute.ops import DrainOptions, KubeOps
from upgrader.redact import make_redactor
from upgrader.transport.base import Result, Transport

log = logging.getLogger("upgrader.execute")

TransportFactory = Callable[[str], Transport]
Saver = Callable[[st.RunState], None]

PRESTAGE_PHASE = "prestage"
CHECK_TIMEOUT = 120.0  # seconds; a done-check is a quick read


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


class _AttemptFailed(Exception):
    """One attempt failed; ``retry`` says whether another attempt may follow."""

    def __init__(
        self,
        message: str,
        *,
        retry: bool,
        exit_code: int | None = None,
        stderr: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retry = retry
        self.exit_code = exit_code
        self.stderr = stderr


class _Retryable(_AttemptFailed):
    pass


class _Done(Exception):
    """The step's effect is there (its check passed after a failed attempt)."""


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

    def _update(self, fn: Callable[[st.RunState], st.RunState]) -> st.RunState:
        with self._lock:
            new = fn(self._state)
            if new is not self._state:
                self._save(new)
                self._state = new
            return new

    def _mask(self, text: str) -> str:
        return self._redact(text)

    def _emit(self, kind: str, /, **data: Any) -> None:
        if self._emit_fn is None:
            return
        clean = {k: self._mask(v) if isinstance(v, str) else v for k, v in data.items()}
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
        self._emit(ev.GATE_WAITING, node=nodes[0] if nodes else None, nodes=nodes, message=message)

    def _step_data(self, step: Step) -> dict[str, Any]:
        return {
            "node": step.node,
            "step": step.id,
            "name": step.name,
            "kind": step.kind,
            "index": self._index.get(step.id),
            "total": self._total,
        }

    def _note(self, node: str, message: str) -> None:
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
        self._emit(
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
        parts = (
            [self.entries] if stop is None else [self.entries[: stop[0]], self.entries[stop[0] :]]
        )
        try:
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
        except PauseRun as p:
            reason = str(p)
            self._update(lambda s: st.pause(s, reason))
            self._emit(
                ev.RUN_PAUSED,
                reason=reason,
                duration=time.monotonic() - started,
                done_steps=self.done_steps(),
            )
            return self._state
        except StepFailed as e:
            self._emit(
                ev.RUN_FINISHED,
                ok=False,
                error=str(e),
                node=e.node,
                step=e.step,
                duration=time.monotonic() - started,
                done_steps=self.done_steps(),
            )
            raise
        except BaseException as e:
            # SIGINT, SIGTERM made one by the CLI, or the --window closed before a node
            if isinstance(e, KeyboardInterrupt | OutsideWindow):
                self._update(lambda s: st.set_status(s, st.RunStatus.INTERRUPTED))
            if isinstance(e, OutsideWindow):
                self._emit(ev.RUN_OUTSIDE_WINDOW, message=str(e), done_steps=self.done_steps())
            self._emit(
                ev.RUN_FINISHED,
                ok=False,
                error=str(e)
                if isinstance(e, OutsideWindow)
                else f"interrupted: {type(e).__name__}: {e}".rstrip(": "),
                duration=time.monotonic() - started,
                done_steps=self.done_steps(),
            )
            raise
        self._update(lambda s: st.set_status(s, st.RunStatus.SUCCEEDED))
        self._emit(
            ev.RUN_FINISHED,
            ok=True,
            duration=time.monotonic() - started,
            done_steps=self.done_steps(),
        )
        return self._state

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
        self._emit(
            ev.NODE_STARTED,
            node=entry.node,
            phase=entry.phase,
            hop=entry.hop,
            role=entry.role,
            steps=len(entry.steps),
        )
        for step in entry.steps:
            self._run_step(step)
        self._emit(ev.NODE_FINISHED, node=entry.node, phase=entry.phase, hop=entry.hop)

    # ------------------------------------------------------------------ one step
    def _run_step(self, step: Step) -> None:
        rec = self._state.step(step.id)
        if rec.status in st.DONE_STEP:
            return
        if self._guard is not None:
            self._guard()  # e.g. the cluster Lease was lost: stop before the next step
        resumed = rec.status in (st.StepStatus.RUNNING, st.StepStatus.FAILED)
        if resumed:
            self._note(step.node, f"{step.id}: left {rec.status.value} by an earlier run")
        if step.kind == StepKind.UNCORDON and step.node in self._state.precordoned:
            reason = "it was cordoned before the run started; left cordoned"
            self._update(lambda s: st.skip_step(s, step.id, message=reason))
            self._note(step.node, f"{step.id}: skipped: {reason}")
            self._emit(ev.STEP_SKIPPED, **self._step_data(step), reason=reason)
            self._emit(ev.NODE_LEFT_CORDONED, node=step.node, step=step.id, reason=reason)
            return
        if step.kind == StepKind.UNCORDON and self._before_uncordon is not None:
            self._before_uncordon(step)  # --hold-uncordon: may raise PauseRun
        if step.kind == StepKind.SHELL:
            if step.command is None:
                self._fail(step, "the step has no command for this node", retried=False)
            why = "resume" if resumed else "before"
            try:
                done = step.check is not None and self._check(step, rec.attempts, why)
            except _AttemptFailed as f:
                self._fail(step, str(f), retried=False)
            if done:
                self._succeed(step, "already done (check passed); command not run", None, True)
                return
        elif step.kind not in (*API_KINDS, StepKind.ETCD_SNAPSHOT):
            self._fail(step, f"unknown step kind {step.kind!r}", retried=False)
        retry_safe = step.retry_safe
        attempts = max(1, self.options.attempts)

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
            self._emit(
                ev.STEP_ATTEMPT_FAILED,
                **self._step_data(step),
                attempt=self._state.step(step.id).attempts,
                error=str(exc),
                will_retry=True,
                retry_in=wait,
            )

        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(
                multiplier=self.options.backoff_initial, max=self.options.backoff_max
            )
            + wait_random(0, self.options.backoff_initial),
            retry=retry_if_exception_type(_Retryable),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            message = retrying(self._attempt, step, retry_safe)
        except _Done:
            self._succeed(step, "already done (check passed after a failed attempt)", None, True)
            return
        except _AttemptFailed as f:
            self._fail(
                step,
                str(f),
                exit_code=f.exit_code,
                stderr=f.stderr,
                retried=self._state.step(step.id).attempts > 1,
            )
        self._succeed(step, message, 0 if step.kind == StepKind.SHELL else None, False)

    def _attempt(self, step: Step, retry_safe: bool) -> str:
        """One attempt: record ``running`` (saved), run, classify. Returns a message on
        success; raises :class:`_Retryable`, :class:`_AttemptFailed` or :class:`_Done`."""
        self._update(lambda s: st.start_step(s, step.id))
        attempt = self._state.step(step.id).attempts
        self._emit(ev.STEP_STARTED, **self._step_data(step), attempt=attempt)
        with self._heartbeat(step):
            if step.kind == StepKind.SHELL:
                return self._shell_attempt(step, attempt, retry_safe)
            if step.kind == StepKind.ETCD_SNAPSHOT:
                return self._snapshot_attempt(step, attempt)
            return self._api_attempt(step, attempt)

    def _limit(self, step: Step) -> float:
        """How long one attempt of ``step`` may take (its timeout, as the engine applies it)."""
        if step.kind == StepKind.DRAIN:
            return float(self._drain_options(step).timeout)
        if step.kind in (StepKind.WAIT_READY, StepKind.WAIT_CONTROL_PLANE):
            return float(self._wait_timeout(step))
        return float(step.timeout)

    @contextmanager
    def _heartbeat(self, step: Step) -> Iterator[None]:
        """While the attempt runs: whenever no event spoke for ``step`` for
        ``progress_every`` seconds, a ``step-waiting`` "still running after Ns; Ns of Ns
        left" (a thread; stopped and joined when the attempt ends)."""
        every = self.options.progress_every
        if every <= 0 or self._emit_fn is None:
            yield
            return
        stop = threading.Event()
        started = time.monotonic()
        limit = self._limit(step)

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
                self._emit(
                    ev.STEP_WAITING,
                    **self._step_data(step),
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
    def _run_command(
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
            dur = time.monotonic() - t0
            if self._transcripts is not None:
                self._transcripts.command(
                    step.node, step.id, label, attempt, command, None, dur, "", "", error=str(e)
                )
            return None, str(e)
        if self._transcripts is not None:
            self._transcripts.command(
                step.node,
                step.id,
                label,
                attempt,
                command,
                res.exit_code,
                res.duration,
                res.stdout,
                res.stderr,
                timed_out=res.timed_out,
            )
        return res, None

    def _announce_lock_wait(self, step: Step, stderr: str) -> float:
        """Say (transcript, event) that ``step`` waits for the node lock, naming who has the
        lock file open when the wrapper could tell (``stderr`` of the busy command, see
        :func:`nodelock.holder`); return when."""
        by = nodelock.holder(stderr)
        held = f"held by {by}" if by else "held"
        self._note(step.node, f"{step.id}: {self.options.lock_path} is {held}; waiting")
        self._emit(
            ev.STEP_LOCK_WAIT, **self._step_data(step), lock=self.options.lock_path, holder=by
        )
        return time.monotonic()

    def _run_waiting(
        self,
        step: Step,
        command: str,
        label: str,
        attempt: int,
        timeout: float,
        since: float | None = None,
    ) -> tuple[Result | None, str | None]:
        """:meth:`_run_command`, run again while another command holds the node lock, up to
        the step's timeout from the first time it was found held (``since``, when the caller
        found it held already and announced the wait); then :class:`_AttemptFailed`."""
        while True:
            res, err = self._run_command(step, command, label, attempt, timeout)
            if res is None or not nodelock.is_busy(res.exit_code, res.stderr):
                return res, err
            now = time.monotonic()
            if since is None:
                since = self._announce_lock_wait(step, res.stderr)
            elif now - since >= step.timeout:
                by = nodelock.holder(res.stderr)
                who = f"open by {by}" if by else f"see `fuser -v {self.options.lock_path}` there"
                raise _AttemptFailed(
                    f"another command has held the node lock {self.options.lock_path} for "
                    f"{now - since:.0f}s (a command of a killed run may still be running on "
                    f"the node; {who}), so {label!r} could not run",
                    retry=False,
                )

    def _check(self, step: Step, attempt: int, why: str, since: float | None = None) -> bool:
        """Run the step's check; True when it exits 0. A check that cannot run (node
        unreachable, timeout) counts as "not done". ``why``: ``before`` (a fresh step),
        ``resume`` (left running/failed by an earlier run), ``after-failure``,
        ``after-lock-wait``. Waits while another command holds the node lock."""
        assert step.check is not None
        label = {"before": "check", "resume": "check on resume"}.get(why, f"check {why}")
        res, err = self._run_waiting(
            step, step.check, label, attempt, min(step.timeout, CHECK_TIMEOUT), since
        )
        done = res is not None and res.ok
        problem = err or ("timed out" if res is not None and res.timed_out else None)
        self._emit(
            ev.STEP_CHECKED,
            **self._step_data(step),
            done=done,
            why=why,
            resumed=why == "resume",
            exit_code=None if res is None else res.exit_code,
            error=problem,
        )
        return done

    def _shell_attempt(self, step: Step, attempt: int, retry_safe: bool) -> str:
        assert step.command is not None
        res, err = self._run_command(step, step.command, "run", attempt, step.timeout)
        if res is not None and res.ok:
            return f"exit 0 in {res.duration:.1f}s"
        if res is not None and nodelock.is_busy(res.exit_code, res.stderr):
            self._lock_was_busy(step, attempt, retry_safe, res.stderr)
        if res is None:
            message = f"SSH session failed: {err}"
            exit_code, stderr, no_status = None, None, True
        elif res.timed_out:
            message = f"timed out after {step.timeout:g}s"
            exit_code, stderr, no_status = None, res.stderr, True
        else:
            last = st.tail(res.stderr, 1) or st.tail(res.stdout, 1)
            message = f"exit {res.exit_code}" + (f": {last}" if last else "")
            exit_code, stderr, no_status = res.exit_code, res.stderr, False
        message = self._mask(message)
        if retry_safe:
            raise _Retryable(message, retry=True, exit_code=exit_code, stderr=stderr)
        # Not safe to repeat blindly: ask the node whether the effect is there.
        if step.check is None:
            raise _AttemptFailed(
                message + " (not retried: the step is not safe to repeat and has no check)",
                retry=False,
                exit_code=exit_code,
                stderr=stderr,
            )
        self._emit(
            ev.STEP_ATTEMPT_FAILED,
            **self._step_data(step),
            attempt=attempt,
            error=message,
            will_retry=False,
            will_check=True,
        )
        if self._check(step, attempt, "after-failure"):
            raise _Done()
        if no_status:
            raise _Retryable(
                message + " (check: not done)", retry=True, exit_code=exit_code, stderr=stderr
            )
        raise _AttemptFailed(
            message + " (not retried: the step is not safe to repeat)",
            retry=False,
            exit_code=exit_code,
            stderr=stderr,
        )

    def _lock_was_busy(self, step: Step, attempt: int, retry_safe: bool, stderr: str) -> None:
        """The command did not run: another command held the node lock (one a killed run
        left running, perhaps this very step's). Never start it blindly after that one:
        wait for the lock through the check (its effect may now be there) or, for a
        retry-safe step without a check, through an empty command; then raise."""
        message = f"not run: another command held the node lock {self.options.lock_path}"
        by = nodelock.holder(stderr)
        if by:
            message += f" (open by {by})"
        since = self._announce_lock_wait(step, stderr)
        if step.check is not None:
            if self._check(step, attempt, "after-lock-wait", since=since):
                raise _Done()
            raise _Retryable(message + " (check: not done)", retry=True)
        if not retry_safe:
            raise _AttemptFailed(
                message + "; the step is not safe to repeat and has no check: look at "
                "the node, then run the same command again",
                retry=False,
            )
        self._run_waiting(step, ":", "wait for the node lock", attempt, CHECK_TIMEOUT, since)
        raise _Retryable(message, retry=True)

    # ------------------------------------------------------------------ etcd snapshot
    def _snapshot_attempt(self, step: Step, attempt: int) -> str:
        """Save, check and hash a snapshot inside the node's etcd container (crictl exec),
        stream it here as root over the exec channel, compare size and sha256, record it
        in the state. Any failure may be retried (a new snapshot)."""
        run_id = self._state.run_id
        directory = self.options.snapshot_dir
        if directory is None:
            raise _AttemptFailed("no local directory for the etcd snapshot", retry=False)
        try:
            command = snap.save_command(run_id)
        except snap.SnapshotError as e:
            raise _AttemptFailed(str(e), retry=False) from None
        res, err = self._run_command(step, command, "run", attempt, step.timeout)
        if res is None:
            raise _Retryable(self._mask(f"SSH session failed: {err}"), retry=True)
        if res.timed_out:
            raise _Retryable(f"timed out after {step.timeout:g}s", retry=True, stderr=res.stderr)
        if not res.ok:
            last = st.tail(res.stderr, 1) or st.tail(res.stdout, 1)
            # no crictl / no etcd static pod: a retry cannot help
            retry = res.exit_code not in (etcd_mod.RC_NO_CRICTL, etcd_mod.RC_NO_STATIC_POD)
            raise _Retryable(
                self._mask(f"exit {res.exit_code}" + (f": {last}" if last else "")),
                retry=retry,
                exit_code=res.exit_code,
                stderr=res.stderr,
            )
        try:
            saved = snap.parse_save_output(res.stdout, run_id)
            fetch = snap.fetch_command(saved.remote)
        except snap.SnapshotError as e:
            raise _Retryable(str(e), retry=True) from None
        transport = self._transports(step.node)
        stream = getattr(transport, "stream_to", None)
        if not callable(stream):
            raise _AttemptFailed(f"the transport to {step.node} cannot stream files", retry=False)
        snap.prepare_dir(directory)
        local = snap.local_path(directory, step.node, run_id)
        try:
            got_res = stream(fetch, local, timeout=step.timeout)
        except TransportError as e:
            raise _Retryable(self._mask(str(e)), retry=True) from None
        if not got_res.ok:
            last = st.tail(got_res.stderr, 1)
            why = "timed out" if got_res.timed_out else f"exit {got_res.exit_code}"
            raise _Retryable(
                self._mask(f"copying {saved.remote}: {why}" + (f": {last}" if last else "")),
                retry=True,
            )
        os.chmod(local, 0o600)
        got = snap.file_sha256(local)
        size = local.stat().st_size
        if got != saved.sha256 or size != saved.size:
            local.unlink(missing_ok=True)
            raise _Retryable(
                f"the copy of {saved.remote} has sha256 {got} ({size} bytes), the node's "
                f"file {saved.sha256} ({saved.size} bytes)",
                retry=True,
            )
        record = snap.Snapshot(
            node=step.node,
            path=str(local.resolve()),
            remote=saved.remote,
            sha256=saved.sha256,
            revision=saved.status.get("revision"),
            size=size,
            taken=st.now_iso(),
            etcd_version=saved.etcd_version,
        ).to_dict()
        self._update(lambda s: st.record_etcd_snapshot(s, record))
        self._note(
            step.node,
            f"{step.id}: etcd {saved.etcd_version} snapshot (checked with {saved.tool} snapshot "
            f"status) copied to {local} (sha256 {saved.sha256})",
        )
        return (
            f"etcd snapshot {local} (sha256 {saved.sha256}, revision "
            f"{saved.status.get('revision')}, etcd {saved.etcd_version})"
        )

    # ------------------------------------------------------------------ API steps
    def _drain_options(self, step: Step) -> DrainOptions:
        p = step.params
        o = self.options
        timeout = o.drain_timeout if o.drain_timeout is not None else p.get("timeout", 600)
        grace = o.grace_period if o.grace_period is not None else p.get("grace_period")
        fallback = str(p.get("fallback") or "none")
        selector = str(p["pod_selector"]) if p.get("pod_selector") else None
        if o.drain_overrides and step.node in o.drain_overrides:
            fallback, selector = o.drain_overrides[step.node]
        return DrainOptions(
            timeout=float(timeout),
            grace_period=None if grace is None else int(grace),
            delete_emptydir_data=o.delete_emptydir_data or bool(p.get("delete_emptydir_data")),
            force=o.force or bool(p.get("allow_unmanaged")),
            disable_eviction=o.disable_eviction,
            pod_selector=selector,
            fallback=fallback,
            on_fallback=self._fallback_reporter(step),
            retry_interval=float(p.get("retry_interval", 5)),
            on_progress=self._waiting(step),
            progress_every=o.progress_every,
        )

    def _fallback_reporter(self, step: Step) -> Callable[[tuple[str, ...], tuple[str, ...]], None]:
        """What the drain fallback calls before it deletes pods a budget still refuses:
        recorded in the state (for the summary), the node's transcript and an event."""

        def report(pods: tuple[str, ...], budgets: tuple[str, ...]) -> None:
            text = fallback_text(pods, budgets)
            self._update(lambda s: st.record_drain_fallback(s, step.id, step.node, pods, budgets))
            self._note(step.node, f"{step.id}: {text}")
            self._emit(
                ev.DRAIN_FALLBACK,
                **self._step_data(step),
                pods=list(pods),
                budgets=list(budgets),
                message=text,
            )

        return report

    def _waiting(self, step: Step) -> Callable[[str], None]:
        """What a long wait of ``step`` calls to say what it waits for (``step-waiting``)."""
        return lambda text: self._emit(ev.STEP_WAITING, **self._step_data(step), message=text)

    def _poll(self, step: Step) -> float:
        if self.options.poll_interval is not None:
            return self.options.poll_interval
        return float(step.params.get("poll_interval", 5))

    def _wait_timeout(self, step: Step) -> float:
        return self.options.ready_timeout if self.options.ready_timeout else step.timeout

    def _cordon(self, step: Step) -> None:
        """Cordon the node and record it as ours unless it was cordoned before the run."""
        changed = self._kube.cordon(step.node)
        if step.node in self._state.precordoned:
            self._note(step.node, f"{step.id}: node was cordoned before the run")
            return
        if changed:
            self._note(step.node, f"{step.id}: cordoned")
            self._emit(ev.NODE_CORDONED, node=step.node, step=step.id)
        if step.node not in self._state.cordoned_by_us:
            self._update(lambda s: st.mark_cordoned(s, step.node, step.id))

    def _uncordon_ours(self, step: Step, why: str) -> bool:
        """Uncordon the node if this run cordoned it; True if it did."""
        if step.node not in self._state.cordoned_by_us:
            return False
        try:
            self._kube.uncordon(step.node)
        except KubernetesError as e:
            log.error("%s: could not uncordon after %s: %s", step.node, why, e)
            self._note(step.node, f"{step.id}: uncordon after {why} failed: {e}")
            return False
        self._update(lambda s: st.mark_uncordoned(s, step.node))
        self._note(step.node, f"{step.id}: uncordoned (we had cordoned it) after {why}")
        self._emit(ev.NODE_UNCORDONED, node=step.node, step=step.id, reason=why)
        return True

    def _api_attempt(self, step: Step, attempt: int) -> str:
        t0 = time.monotonic()
        try:
            message = self._api_call(step)
        except StepFailed as e:
            # The operation gave up for good (drain refused/timed out, a wait timed out).
            self._note(step.node, f"{step.id} [attempt {attempt}] failed: {e}")
            extra = ""
            if step.kind == StepKind.DRAIN and self._uncordon_ours(step, "the failed drain"):
                extra = f"; {step.node} uncordoned again (we had cordoned it)"
            raise _AttemptFailed(self._mask(str(e)) + extra, retry=False) from e
        except KubernetesError as e:
            self._note(step.node, f"{step.id} [attempt {attempt}] API error: {e}")
            raise _Retryable(self._mask(str(e)), retry=True) from e
        dur = time.monotonic() - t0
        self._note(step.node, f"{step.id} [attempt {attempt}] {message} ({dur:.1f}s)")
        return f"{message} in {dur:.1f}s"

    def _api_call(self, step: Step) -> str:
        node = step.node
        if step.kind == StepKind.CORDON:
            self._cordon(step)
            return "cordoned"
        if step.kind == StepKind.DRAIN:
            self._cordon(step)
            return "drained: " + self._kube.drain(node, self._drain_options(step))
        if step.kind == StepKind.UNCORDON:
            changed = self._kube.uncordon(node)
            self._update(lambda s: st.mark_uncordoned(s, node))
            if changed:
                self._emit(ev.NODE_UNCORDONED, node=node, step=step.id)
            return "uncordoned" if changed else "was not cordoned"
        if step.kind == StepKind.WAIT_READY:
            version = str(step.params.get("kubelet_version") or step.hop)
            self._kube.wait_ready(
                node,
                version,
                self._wait_timeout(step),
                self._poll(step),
                on_progress=self._waiting(step),
                progress_every=self.options.progress_every,
            )
            return f"Ready at kubelet {version}"
        if step.kind == StepKind.WAIT_CONTROL_PLANE:
            version = str(step.params.get("version") or step.hop)
            self._kube.wait_control_plane(
                node,
                version,
                self._wait_timeout(step),
                self._poll(step),
                on_progress=self._waiting(step),
                progress_every=self.options.progress_every,
            )
            return f"control plane at {version}"
        raise StepFailed(f"unknown step kind {step.kind!r}", node=node, step=step.id)

    # ------------------------------------------------------------------ outcomes
    def _succeed(self, step: Step, message: str, exit_code: int | None, already: bool) -> None:
        self._update(
            lambda s: st.finish_step(
                s, step.id, message=message, exit_code=exit_code, secrets=self._secrets
            )
        )
        rec = self._state.step(step.id)
        self._emit(
            ev.STEP_FINISHED,
            **self._step_data(step),
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
        self._update(
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
            self._emit(
                ev.NODE_LEFT_CORDONED,
                node=step.node,
                step=step.id,
                reason="the run stopped on this node",
            )
        self._emit(
            ev.STEP_FAILED,
            **self._step_data(step),
            attempts=rec.attempts,
            exit_code=exit_code,
            error=message + attempts,
            stderr_tail=rec.stderr_tail,
            duration=_duration(rec),
        )
        raise StepFailed(
            self._mask(f"node {step.node}: step {step.id} failed: {message}{attempts}{left}"),
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
