"""What a stopped, refused or paused run says last.

Owns :func:`stop_report` (where a run stopped: the failed or running step, the next one, or
"before the first step; nothing was changed"; the nodes cordoned by the run and before it;
the command that resumes or re-runs it), the lead that says what to do first when a run is
refused (wait for the lock's holder, fix the blockers), :func:`pause_text` for a paused run
and :func:`continue_command`. The texts are pinned by golden files (tests/golden/stop-*).

Must not: read files, talk to nodes or the API, print, or decide exit codes.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from upgrader import state as st


def refused_lead(inventory: Path, *, resume: bool, lock: bool) -> str:
    """What a run refused before its first step says to do before the command that runs
    it again: wait for the lock's holder, or fix the blockers."""
    again = "resume with:" if resume else "re-run:"
    if lock and resume:  # the resume command is followed by where to see the run's state
        return f"once the run holding the lock has finished, {again}"
    if lock:
        status = f"upgrader status -i {shlex.quote(str(inventory))}"
        return f"once the run holding the lock has finished (`{status}` shows it), {again}"
    return f"fix the blockers above, then {again}"


def stop_report(
    state: st.RunState | None,
    inventory: Path,
    target: object,
    *,
    lead: str = "resume with:",
) -> str:
    """What a stopped run left, for the last lines of its output: where it stopped, which
    nodes are cordoned and by whom, and the command that resumes it (after ``lead``, which
    says what to do first when the run was refused: "fix the blockers above, then re-run:").
    ``state`` None: the run was refused before it recorded anything; nothing was changed."""
    inv = shlex.quote(str(inventory))
    lines = []
    if state is None:
        lines.append("stopped at: before the first step; nothing was changed on any node")
        lines.append("cordoned by this run: none")
    else:
        recs = list(state.steps.values())
        at = next((r for r in recs if r.status == st.StepStatus.FAILED), None) or next(
            (r for r in recs if r.status == st.StepStatus.RUNNING), None
        )
        if at is not None:
            failed = at.status == st.StepStatus.FAILED
            how = "failed" if failed else "was running (re-checked first)"
            lines.append(f"stopped at: step {at.id} on {at.node} {how}")
        else:
            nxt = next((r for r in recs if r.status == st.StepStatus.PENDING), None)
            if nxt is not None:
                lines.append(f"stopped at: before step {nxt.id} on {nxt.node} (not started)")
        ours = sorted(state.cordoned_by_us)
        lines.append(
            "cordoned by this run: "
            + (", ".join(ours) if ours else "none")
            + (
                f"; cordoned before it (left so): {', '.join(sorted(state.precordoned))}"
                if state.precordoned
                else ""
            )
        )
    command = f"{lead} upgrader apply -i {inv} --to {target}"
    if state is not None:
        command += f" (see `upgrader status -i {inv}` and the transcripts)"
    lines.append(command)
    return "\n".join(lines)


def continue_command(inventory: Path | str, target: object) -> str:
    return f"upgrader apply -i {shlex.quote(str(inventory))} --to {target}"


def pause_text(state: st.RunState, inventory: Path | str, target: object) -> str:
    """What a paused run prints last: why it paused and the command that continues it."""
    reason = state.paused or "paused"
    cont = continue_command(inventory, target)
    if reason.startswith(st.CANARY_PREFIX):
        done = reason.removeprefix(st.CANARY_PREFIX).removesuffix(" done")
        head = f"paused after canary {done}: inspect it, then continue with: {cont}"
    else:
        head = f"paused ({reason}): continue with: {cont}"
    ours = sorted(state.cordoned_by_us)
    tail = f"\ncordoned by this run: {', '.join(ours)}" if ours else ""
    return f"run {state.run_id} {head}{tail}\n"
