"""Run events as values, and the two files that record a run besides the state file.

Owns: the :class:`Event` value the engine emits (``run-started``, ``step-started``,
``step-finished``, ``step-failed``, ``step-waiting``, ``health-gate-waiting``,
``node-cordoned``, ... ``run-finished``), the JSON Lines
sink behind ``--events FILE`` and the per-node transcript files (every command with its
exit code, duration, stdout and stderr, secrets masked, escapes made visible, lines bounded).

Both files are opened through :mod:`upgrader.safefile` (no symlink followed, ``O_EXCL`` when
created, mode 0600 also on a file that existed; the transcripts directory private, 0700).

Must not: print to the terminal (that is ``progress.py``), decide anything about the run, or
write a secret: every text that leaves this module went through the redactor it was given
(:func:`upgrader.redact.make_redactor`; credential shapes are masked even without one).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from upgrader import safefile
from upgrader.core.sanitize import sanitize
from upgrader.redact import make_redactor, redact_obj

# Event kinds, in the order a run meets them. Kept as constants so that the progress
# display, the JSONL consumers and the tests agree on the spelling.
RUN_STARTED = "run-started"
NODE_STARTED = "node-started"
STEP_STARTED = "step-started"
STEP_ATTEMPT_FAILED = "step-attempt-failed"
STEP_CHECKED = "step-checked"
STEP_LOCK_WAIT = "step-waiting-for-node-lock"
STEP_WAITING = "step-waiting"  # a long wait says what it waits for (a drain held by a PDB)
# Between two nodes no step runs: the cluster health gate before the next batch says what
# fails and the time left with its own kind (``nodes``: the batch it holds back, ``node``:
# the first of them, ``message``), so that no consumer takes it for a step of that node.
GATE_WAITING = "health-gate-waiting"
STEP_FINISHED = "step-finished"
STEP_SKIPPED = "step-skipped"
STEP_FAILED = "step-failed"
# --drain-fallback delete: a drain deleted pods a PodDisruptionBudget still refused after
# --drain-timeout (``pods``: ns/name each, ``budgets``: the budgets overridden, ``message``)
DRAIN_FALLBACK = "drain-fallback"
NODE_CORDONED = "node-cordoned"
NODE_UNCORDONED = "node-uncordoned"
NODE_LEFT_CORDONED = "node-left-cordoned"
NODE_FINISHED = "node-finished"
# ``--window``: the window closed, the run stopped before its next node (``message`` says
# when the next window opens); a ``run-finished`` with ``ok`` false follows.
RUN_OUTSIDE_WINDOW = "run-outside-window"
RUN_FINISHED = "run-finished"
RUN_PAUSED = "run-paused"  # stopped on purpose (--canary, a declined pause): ``reason``

EVENT_KINDS = (
    RUN_STARTED,
    NODE_STARTED,
    STEP_STARTED,
    STEP_ATTEMPT_FAILED,
    STEP_CHECKED,
    STEP_LOCK_WAIT,
    STEP_WAITING,
    GATE_WAITING,
    STEP_FINISHED,
    STEP_SKIPPED,
    STEP_FAILED,
    DRAIN_FALLBACK,
    NODE_CORDONED,
    NODE_UNCORDONED,
    NODE_LEFT_CORDONED,
    NODE_FINISHED,
    RUN_OUTSIDE_WINDOW,
    RUN_FINISHED,
    RUN_PAUSED,
)

Masker = Callable[[str], str]


def utc_now() -> str:
    """An ISO-8601 UTC timestamp with milliseconds (``2026-11-28T09:53:51.123Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


no_mask: Masker = make_redactor(())  # credential shapes only: no known secret values


def make_masker(secrets: Iterable[str]) -> Masker:
    """:func:`upgrader.redact.make_redactor`: every secret value (any length) and every
    credential-shaped value replaced by ``***``."""
    return make_redactor(secrets)


@dataclass(frozen=True)
class Event:
    """One thing that happened during a run. ``data`` holds JSON-ready values only."""

    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)
    ts: str = field(default_factory=utc_now)

    @property
    def node(self) -> str | None:
        v = self.data.get("node")
        return v if isinstance(v, str) else None

    @property
    def step(self) -> str | None:
        v = self.data.get("step")
        return v if isinstance(v, str) else None

    def to_dict(self) -> dict[str, Any]:
        return {"ts": self.ts, "event": self.kind, **dict(self.data)}


EventHandler = Callable[[Event], None]


class Fanout:
    """Sends each event to several handlers, in order; a failing handler is not allowed to
    stop the run (its error is re-raised only after every handler saw the event)."""

    def __init__(self, handlers: Iterable[EventHandler] = ()) -> None:
        self._handlers = list(handlers)
        self._lock = threading.Lock()

    def add(self, handler: EventHandler) -> None:
        self._handlers.append(handler)

    def __call__(self, event: Event) -> None:
        first: BaseException | None = None
        with self._lock:
            for h in self._handlers:
                try:
                    h(event)
                except Exception as e:
                    first = first or e
        if first is not None:
            raise first


class JsonlSink:
    """``--events FILE``: one JSON document per line, appended and flushed per event, so a
    reader tailing the file sees each event as it happens (and a killed run loses none)."""

    def __init__(self, path: Path, masker: Masker = no_mask) -> None:
        self.path = path
        self.masker = masker  # may be set later (the run's secrets are known after opening)
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        # 0600 like the transcripts: events carry step messages and stderr tails
        fd = safefile.open_fd(path, append=True)
        self._fh: IO[str] | None = os.fdopen(fd, "a", encoding="utf-8")

    def __call__(self, event: Event) -> None:
        doc = redact_obj(json.loads(json.dumps(event.to_dict(), default=str)), self.masker)
        line = json.dumps(doc, sort_keys=False)
        with self._lock:
            if self._fh is None:
                return
            self._fh.write(line + "\n")
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


# The longest transcript line kept whole; a longer one keeps its start and end.
TRANSCRIPT_LINE_CAP = 16 * 1024


def bound_lines(text: str, cap: int = TRANSCRIPT_LINE_CAP) -> str:
    """``text`` with every line longer than ``cap`` characters cut to its first and last
    ``cap // 2`` around a ``[... N chars dropped ...]`` marker."""
    if len(text) <= cap:
        return text
    lines = text.split("\n")
    if all(len(line) <= cap for line in lines):
        return text
    half = cap // 2
    return "\n".join(
        line
        if len(line) <= cap
        else f"{line[:half]}[... {len(line) - 2 * half} chars dropped ...]{line[-half:]}"
        for line in lines
    )


class TranscriptWriter:
    """Per-node transcript files ``DIR/<node>.log``: every command the run sent to a node,
    with its step id, attempt, exit code, duration, stdout and stderr, secrets masked.

    Files are appended to (a resumed run continues the same file) and created ``0600``:
    command output can hold cluster details the operator did not mean to share. What is
    written is masked, then sanitised (terminal escapes from the node shown as ``\\x1b``:
    an operator reads transcripts with ``cat`` and ``less``), and no line is longer than
    :data:`TRANSCRIPT_LINE_CAP` (each command's output is already capped by the transport).
    """

    def __init__(self, directory: Path, masker: Masker = no_mask) -> None:
        self.directory = directory
        self._mask = masker
        self._lock = threading.Lock()

    def path_for(self, node: str) -> Path:
        return self.directory / f"{_SAFE_NAME.sub('_', node)}.log"

    def _append(self, node: str, text: str) -> None:
        with self._lock:
            safefile.ensure_private_dir(self.directory, what="transcripts directory")
            path = self.path_for(node)
            fd = safefile.open_fd(path, append=True)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(bound_lines(sanitize(self._mask(text))))

    def note(self, node: str, message: str) -> None:
        """A line that is not a command (an API operation, a resume, a skip)."""
        self._append(node, f"== {utc_now()} {message}\n")

    def command(
        self,
        node: str,
        step: str,
        label: str,
        attempt: int,
        command: str,
        exit_code: int | None,
        duration: float,
        stdout: str,
        stderr: str,
        timed_out: bool = False,
        error: str | None = None,
    ) -> None:
        """One command run: ``label`` says which (``run``, ``check before``, ...); an
        ``attempt`` of 0 (a check before the first attempt) is not shown."""
        if error is not None:
            status = f"transport error: {error}"
        elif timed_out:
            status = "timed out"
        else:
            status = f"exit {exit_code}"
        tag = f"{label}, attempt {attempt}" if attempt > 0 else label
        parts = [
            f"== {utc_now()} {step} [{tag}]\n",
            f"$ {command}\n",
            f"-- {status} after {duration:.2f}s\n",
        ]
        if stdout:
            parts.append("-- stdout:\n" + stdout + ("" if stdout.endswith("\n") else "\n"))
        if stderr:
            parts.append("-- stderr:\n" + stderr + ("" if stderr.endswith("\n") else "\n"))
        self._append(node, "".join(parts))
