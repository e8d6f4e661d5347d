"""What the operator sees while ``upgrader apply`` runs.

Owns: turning engine events into terminal output: a rich live display (overall steps,
current node, current step) on a TTY, plain one-line-per-event output otherwise, nothing
but failures with ``--quiet``. ``NO_COLOR`` is honoured (rich reads it; plain output has no
colour at all).

Must not: decide anything about the run, write files, or be imported by anything but the
CLI and ``upgrader.apply`` (with ``upgrader.cli``, the only module allowed to import rich).
"""

from __future__ import annotations

import os
import sys
import threading
from typing import IO, Any

from upgrader.core.sanitize import sanitize
from upgrader.execute import events as ev
from upgrader.redact import redact


def _fmt_duration(seconds: Any) -> str:
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return ""
    if s < 60:
        return f"{s:.1f}s"
    m, s = divmod(int(s), 60)
    return f"{m}m{s:02d}s"


def describe(event: ev.Event) -> str | None:
    """One plain line for an event, or None for events that need no line of their own;
    credential-shaped values masked (:func:`upgrader.redact.redact`) whatever the event
    carries (the engine already masked the values it knows), terminal escapes made
    visible (:func:`upgrader.core.sanitize.sanitize`)."""
    line = _describe(event)
    return None if line is None else sanitize(redact(line))


_CORDON_WORDS = {
    ev.NODE_CORDONED: "cordoned",
    ev.NODE_UNCORDONED: "uncordoned",
    ev.NODE_LEFT_CORDONED: "left cordoned",
}


def _describe(event: ev.Event) -> str | None:
    d = event.data
    node = d.get("node", "")
    pos = ""
    if d.get("index") is not None and d.get("total") is not None:
        width = len(str(d["total"]))
        pos = f"[{int(d['index']):>{width}}/{d['total']}] "
    k = event.kind
    if k == ev.RUN_STARTED:
        resumed = d.get("done_steps") or 0
        tail = f", resuming with {resumed} already done" if resumed else ""
        return (
            f"run {d.get('run_id', '?')}: upgrade to {d.get('target', '?')}, "
            f"{d.get('total_steps', '?')} steps on {len(d.get('nodes') or ())} nodes{tail}"
        )
    if k == ev.NODE_STARTED:
        return f"-- {node} ({d.get('phase', '')}, {d.get('hop', '')})"
    if k == ev.STEP_STARTED:
        if int(d.get("attempt") or 1) > 1:
            return None
        return f"{pos}{node} {d.get('name', d.get('step', ''))} ..."
    if k == ev.STEP_FINISHED:
        how = " (already done)" if d.get("already_done") else ""
        return f"{pos}{node} {d.get('name', '')} ok{how} {_fmt_duration(d.get('duration'))}"
    if k == ev.STEP_SKIPPED:
        return f"{pos}{node} {d.get('name', '')} skipped: {d.get('reason', '')}"
    if k == ev.STEP_ATTEMPT_FAILED:
        nxt = " - checking before any retry" if d.get("will_check") else ""
        if d.get("will_retry"):
            nxt = f" - retrying in {_fmt_duration(d.get('retry_in'))}"
        return f"    attempt {d.get('attempt')} failed: {d.get('error', '')}{nxt}"
    if k == ev.STEP_CHECKED:
        if d.get("why") == "before":
            return None  # a fresh step: its outcome line says "already done" if it was
        res = "already done" if d.get("done") else "not done"
        when = "left unfinished by an earlier run" if d.get("why") == "resume" else "re-checked"
        return f"{pos}{node} {d.get('name', '')}: {when}; check says {res}"
    if k == ev.STEP_LOCK_WAIT:
        by = f"open by {d['holder']}" if d.get("holder") else "a command a killed run left running?"
        return (
            f"{pos}{node} {d.get('name', '')}: waiting: another command holds the node lock "
            f"{d.get('lock', '')} ({by})"
        )
    if k in (ev.STEP_WAITING, ev.DRAIN_FALLBACK):
        return f"{pos}{node} {d.get('name', '')}: {d.get('message', '')}"
    if k == ev.GATE_WAITING:
        before = ", ".join(str(n) for n in d.get("nodes") or ()) or node
        return f"    before {before}: {d.get('message', '')}"
    if k == ev.STEP_FAILED:
        return f"{pos}{node} {d.get('name', '')} FAILED: {d.get('error', '')}"
    if k in _CORDON_WORDS:
        reason = f": {d.get('reason', '')}" if k == ev.NODE_LEFT_CORDONED else ""
        return f"    {node} {_CORDON_WORDS[k]}{reason}"
    if k == ev.NODE_FINISHED:
        return f"-- {node} done ({d.get('phase', '')}, {d.get('hop', '')})"
    if k == ev.RUN_FINISHED:
        if d.get("ok"):
            return (
                f"run {d.get('run_id', '?')} finished: {d.get('done_steps', '?')} steps, "
                f"{_fmt_duration(d.get('duration'))}"
            )
        return f"run {d.get('run_id', '?')} stopped: {d.get('error', '')}"
    if k == ev.RUN_PAUSED:
        return f"run {d.get('run_id', '?')} paused: {d.get('reason', '')}"
    return None


_QUIET_KINDS = frozenset({ev.STEP_FAILED, ev.NODE_LEFT_CORDONED})


class PlainReporter:
    """One line per event, flushed at once (good for logs and CI)."""

    def __init__(
        self, stream: IO[str] | None = None, quiet: bool = False, timestamps: bool = False
    ) -> None:
        self._out = stream or sys.stdout
        self._quiet = quiet
        self._timestamps = timestamps  # each line starts with the event's UTC time
        self._lock = threading.Lock()

    def __call__(self, event: ev.Event) -> None:
        if self._quiet and event.kind not in _QUIET_KINDS:
            return
        line = describe(event)
        if line is None:
            return
        if self._timestamps:
            line = f"{event.ts[:19]}Z {line}"
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()

    def close(self) -> None:
        return None


class RichProgress:
    """A live display: one bar for the whole run, labelled with the node and step in hand.
    Finished nodes, failures and cordon changes are printed above it."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = Console(file=stream or sys.stdout, highlight=False)
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self._overall: Any = None
        self._target = ""
        self._lock = threading.Lock()
        self._started = False

    def _print(self, text: str, style: str | None = None) -> None:
        from rich.text import Text

        self.console.print(Text(text, style=style or ""))

    def __call__(self, event: ev.Event) -> None:
        with self._lock:
            self._handle(event)

    def _handle(self, event: ev.Event) -> None:
        d = event.data
        k = event.kind
        if k == ev.RUN_STARTED:
            line = describe(event)
            if line:
                self._print(line, "bold")
            if not self._started:
                self._progress.start()
                self._started = True
            self._target = str(d.get("target", "?"))
            self._overall = self._progress.add_task(
                f"{self._target}: starting",
                total=int(d.get("total_steps") or 0),
                completed=int(d.get("done_steps") or 0),
            )
            return
        if k == ev.STEP_STARTED and self._overall is not None:
            current = sanitize(f"{d.get('node', '')}: {d.get('name', '')}")
            self._progress.update(self._overall, description=f"{self._target} {current[:40]:<40}")
            return
        if k in (ev.STEP_FINISHED, ev.STEP_SKIPPED) and self._overall is not None:
            self._progress.advance(self._overall)
            return
        if k == ev.STEP_FAILED:
            self._print(describe(event) or "", "bold red")
            return
        if k in (
            ev.STEP_ATTEMPT_FAILED,
            ev.STEP_LOCK_WAIT,
            ev.STEP_WAITING,
            ev.GATE_WAITING,
            ev.DRAIN_FALLBACK,
        ):
            self._print(describe(event) or "", "yellow")
            return
        if k in (ev.NODE_FINISHED, ev.NODE_CORDONED, ev.NODE_UNCORDONED):
            self._print(describe(event) or "", "green" if k == ev.NODE_FINISHED else None)
            return
        if k == ev.NODE_LEFT_CORDONED:
            self._print(describe(event) or "", "yellow")
            return
        if k in (ev.RUN_FINISHED, ev.RUN_PAUSED):
            if self._overall is not None:
                self._progress.update(self._overall, description=f"{self._target} {'':<40}")
            self.close()
            ok = d.get("ok") or k == ev.RUN_PAUSED
            self._print(describe(event) or "", "bold green" if ok else "bold red")

    def close(self) -> None:
        if self._started:
            self._progress.stop()
            self._started = False


def make_reporter(
    quiet: bool = False, stream: IO[str] | None = None, force_plain: bool = False
) -> PlainReporter | RichProgress:
    """The rich display when the output is a terminal (and not ``--quiet``), else plain."""
    out = stream or sys.stdout
    is_tty = bool(getattr(out, "isatty", lambda: False)())
    if quiet or force_plain or not is_tty or os.environ.get("TERM") == "dumb":
        return PlainReporter(out, quiet=quiet, timestamps=True)
    # the CLI's sanitising stream (``inner``) would escape rich's own colour sequences;
    # every text rich shows here passed sanitize() already
    return RichProgress(getattr(out, "inner", out))
