"""Operator pauses of ``upgrader apply``: ``--pause-between`` and ``--hold-uncordon``.

Owns the hooks the engine calls between nodes (``before_batch``) and before a node's
uncordon step (``before_uncordon``), the text they show and their refusal without a
terminal. A declined question raises :class:`upgrader.execute.engine.PauseRun` (the run is
recorded ``paused``; the same command continues). Must not touch nodes or the cluster
itself: what it shows comes from the ``describe`` callable it is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from upgrader.core.model import PlanEntry, Step
from upgrader.errors import ConfigError
from upgrader.execute.engine import PRESTAGE_PHASE, PauseRun

Describe = Callable[[str], tuple[list[tuple[str, str, str]], list[tuple[str, str, str, str]]]]


@dataclass(frozen=True)
class PauseBetween:
    """``--pause-between``: ``ask`` before each node after the first, or wait ``seconds``."""

    ask: bool = False
    seconds: float = 0.0


def parse_pause_between(text: str | None) -> PauseBetween | None:
    """``ask`` or a number of seconds (0 to 86400); anything else a one-line ConfigError."""
    if text is None:
        return None
    if text.strip().lower() == "ask":
        return PauseBetween(ask=True)
    try:
        secs = float(text)
    except ValueError:
        secs = -1.0
    if not 0 <= secs <= 86400 or secs != secs:
        raise ConfigError(
            f"--pause-between: {text!r} is neither 'ask' nor a number of seconds (0-86400)"
        )
    return PauseBetween(seconds=secs)


def refuse_without_tty(pause: PauseBetween | None, hold_uncordon: bool, tty: bool) -> None:
    """The questions need a terminal: refused before anything runs when there is none."""
    if tty:
        return
    if hold_uncordon:
        raise ConfigError(
            "--hold-uncordon asks before each uncordon and needs a terminal (stdin is not one)"
        )
    if pause is not None and pause.ask:
        raise ConfigError(
            "--pause-between ask needs a terminal (stdin is not one); give a number of seconds"
        )


def _nodes(batch: Sequence[PlanEntry]) -> str:
    return ", ".join(dict.fromkeys(e.node for e in batch))


def between_question(batch: Sequence[PlanEntry]) -> str:
    return f"Upgrade {_nodes(batch)} next? (no: the run pauses here; the same command continues)"


def uncordon_text(
    node: str, pods: list[tuple[str, str, str]], events: list[tuple[str, str, str, str]]
) -> str:
    """What ``--hold-uncordon`` shows before uncordoning ``node``: its pods and events."""
    lines = [f"{node} is upgraded and still cordoned. Pods on it ({len(pods)}):"]
    lines += [f"  {name}  {phase}  {ready}" for name, phase, ready in pods] or ["  (none)"]
    lines.append(f"Recent events of node {node} ({len(events)}):")
    lines += [
        f"  {when}  {etype}  {reason}: {message}" for when, etype, reason, message in events
    ] or ["  (none)"]
    return "\n".join(lines) + "\n"


def uncordon_question(node: str) -> str:
    return f"Uncordon {node}? (no: the run pauses with {node} cordoned; the same command continues)"


def before_batch_hook(
    inner: Callable[[Sequence[PlanEntry]], None] | None,
    pause: PauseBetween | None,
    *,
    confirm: Callable[[str], bool] | None,
    show: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> Callable[[Sequence[PlanEntry]], None] | None:
    """``inner`` (the health gate) before each batch that changes a node, preceded, from
    the second node visit on, by the pause. A pre-staging batch only downloads packages,
    right after preflight read the same health (nodes, control-plane pods, etcd): neither
    gate nor pause before it; the gate runs before the first node that changes."""
    if inner is None and pause is None:
        return None
    seen = [False]

    def hook(batch: Sequence[PlanEntry]) -> None:
        if all(e.phase == PRESTAGE_PHASE for e in batch):
            return
        if pause is not None and seen[0]:
            if pause.ask:
                if confirm is None or not confirm(between_question(batch)):
                    raise PauseRun(f"stopped before {_nodes(batch)} (--pause-between ask)")
            elif pause.seconds > 0:
                show(f"pausing {pause.seconds:g}s before {_nodes(batch)} (--pause-between)\n")
                sleep(pause.seconds)
        seen[0] = True
        if inner is not None:
            inner(batch)

    return hook


def before_uncordon_hook(
    describe: Describe,
    *,
    confirm: Callable[[str], bool] | None,
    show: Callable[[str], None],
) -> Callable[[Step], None]:
    """``--hold-uncordon``: show the node's pods and events, ask; no pauses the run."""

    def hook(step: Step) -> None:
        pods, events = describe(step.node)
        show(uncordon_text(step.node, pods, events))
        if confirm is None or not confirm(uncordon_question(step.node)):
            raise PauseRun(f"{step.node} left cordoned (--hold-uncordon)")

    return hook
