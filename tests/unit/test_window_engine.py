"""``--window`` between nodes: apply's ``before_batch`` (the window, then the health gate,
then the window again) plugged into the real engine. Steps are real shell commands run by
``LocalTransport``; the clock is a fixed sequence of moments."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from run_kit import two_worker_engine

from upgrader import state as st
from upgrader.apply import _in_window
from upgrader.core.window import parse_windows
from upgrader.errors import OutsideWindow
from upgrader.execute import events as ev
from upgrader.execute.engine import Engine

WINDOWS = parse_windows(["Sat 01:00-05:00"])
IN = datetime(2026, 12, 5, 4, 58, tzinfo=UTC)  # a Saturday, inside
OUT = datetime(2026, 12, 5, 5, 1, tzinfo=UTC)  # just after it closed


def run_engine(
    tmp_path: Path, moments: list[datetime], gate_calls: list[str], got: list[ev.Event]
) -> Engine:
    it: Iterator[datetime] = iter(moments)

    def gate(batch: Any) -> None:
        gate_calls.append(batch[0].node)

    return two_worker_engine(tmp_path, _in_window(WINDOWS, lambda: next(it), gate), got.append)


def test_window_closing_stops_before_the_next_node_and_a_rerun_resumes(tmp_path: Path) -> None:
    gate_calls: list[str] = []
    got: list[ev.Event] = []
    # w-1: inside before and after its gate; w-2: outside before its gate
    engine = run_engine(tmp_path, [IN, IN, OUT], gate_calls, got)
    with pytest.raises(OutsideWindow, match="the run stopped before its next node") as e:
        engine.run()
    assert "next window opens Sat 2026-12-12 01:00 UTC" in str(e.value)
    assert gate_calls == ["w-1"]  # the window is judged before the gate: w-2 not gated
    assert (tmp_path / "w-1" / "out").exists() and not (tmp_path / "w-2" / "out").exists()
    assert engine.state.status == st.RunStatus.INTERRUPTED
    kinds = [x.kind for x in got]
    assert kinds[-2:] == [ev.RUN_OUTSIDE_WINDOW, ev.RUN_FINISHED]
    assert got[-1].data["ok"] is False and "window closed" in got[-1].data["error"]

    # the gate may wait past the window's end: judged again after it
    gate_calls2: list[str] = []
    again = run_engine(tmp_path, [IN, OUT], gate_calls2, [])
    with pytest.raises(OutsideWindow):
        again.run()
    assert gate_calls2 == ["w-2"] and not (tmp_path / "w-2" / "out").exists()

    # inside again: the same run resumes at w-2
    last = run_engine(tmp_path, [IN, IN], [], [])
    assert last.run().status == st.RunStatus.SUCCEEDED
    assert (tmp_path / "w-2" / "out").exists()


def test_no_window_is_the_gate_alone() -> None:
    def gate(batch: Any) -> None:
        pass

    assert _in_window((), lambda: OUT, gate) is gate
