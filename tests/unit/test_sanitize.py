"""The one output sanitiser and the edges that apply it (CLI streams, log formatter,
progress lines, transcripts)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from upgrader.cli import _SafeFormatter, _SafeStream
from upgrader.core.playbook import hidden_character
from upgrader.core.sanitize import HIDDEN, sanitize, sanitize_line
from upgrader.execute import events as ev
from upgrader.execute.progress import describe

OSC52 = "\x1b]52;c;ZWNobyBwd25lZA==\x07"
CSI = "\x1b[2J\x1b[1;31m"
RLO = "\u202e"
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\u2066", "\r", "\x00", "\x7f")


def _clean(text: str) -> bool:
    return not any(c in text for c in RAW) and not HIDDEN.search(text.replace("\n", ""))


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text", "plain text"),
        ("two\nlines\twith tab", "two\nlines\twith tab"),
        (OSC52, "\\x1b]52;c;ZWNobyBwd25lZA==\\x07"),
        (CSI + "x", "\\x1b[2J\\x1b[1;31mx"),
        ("abc" + RLO + "gpj.exe", "abc\\u202egpj.exe"),
        ("a\u2066b\u2069c\u200fd", "a\\u2066b\\u2069c\\u200fd"),
        ("over\rwrite", "over\\x0dwrite"),
        ("nul\x00del\x7fc1\x9b", "nul\\x00del\\x7fc1\\x9b"),
        ("line\u2028sep", "line\\u2028sep"),
        ("ünïcødé ok ✓", "ünïcødé ok ✓"),
    ],
)
def test_sanitize_shows_hidden_characters_escaped(raw: str, shown: str) -> None:
    assert sanitize(raw) == shown
    assert sanitize(sanitize(raw)) == shown  # idempotent: escapes are printable text


def test_sanitize_line_escapes_newlines_and_tabs_too() -> None:
    assert sanitize_line("a\nb\tc" + OSC52) == "a\\x0ab\\x09c\\x1b]52;c;ZWNobyBwd25lZA==\\x07"


def test_every_hidden_character_is_escaped() -> None:
    every = "".join(chr(c) for c in range(0x110) if HIDDEN.match(chr(c))) + "\u202a\u202e"
    out = sanitize(every)
    assert set(out) - set("\\xu0123456789abcdef\n\t") == set()
    assert out.count("\n") == 1 and out.count("\t") == 1


def test_the_playbook_loader_refuses_the_same_characters() -> None:
    assert hidden_character("a" + RLO) is not None
    assert hidden_character("a\x1b[1m") is not None
    assert hidden_character(sanitize("a\x1b[1m" + RLO)) is None


def test_cli_stream_sanitises_everything_written() -> None:
    inner = io.StringIO()
    stream = _SafeStream(inner)
    stream.write("finding: dockerd on w-1 listens on tcp://0.0.0.0:2375" + OSC52 + RLO + "\n")
    stream.flush()
    out = inner.getvalue()
    assert _clean(out) and "\\x1b]52;c;" in out and "\\u202e" in out and out.endswith("\n")
    with pytest.raises(TypeError):  # click's probe for a binary stream must fail
        stream.write(b"")  # type: ignore[arg-type]


def test_log_formatter_sanitises_message_and_arguments() -> None:
    rec = logging.LogRecord(
        "paramiko.transport", logging.INFO, __file__, 1, "Auth banner: %s", (OSC52 + CSI,), None
    )
    out = _SafeFormatter("%(name)s: %(message)s").format(rec)
    assert _clean(out) and out.startswith("paramiko.transport: Auth banner: \\x1b]52")


def test_progress_lines_are_sanitised() -> None:
    e = ev.Event(
        ev.STEP_FAILED,
        {"node": "w-1", "step": "s", "name": "n", "error": "boom" + OSC52 + RLO, "attempt": 1},
    )
    line = describe(e)
    assert line is not None and _clean(line) and "\\x1b]52" in line


def test_transcripts_are_sanitised_and_lines_bounded(tmp_path: Path) -> None:
    w = ev.TranscriptWriter(tmp_path / "t")
    long = "x" * (ev.TRANSCRIPT_LINE_CAP * 3)
    w.command("w-1", "s", "run", 1, "cmd", 1, 0.1, "out" + OSC52 + "\n" + long + "\n", RLO + "err")
    text = w.path_for("w-1").read_text()
    assert _clean(text) and "\\x1b]52" in text and "\\u202eerr" in text
    assert max(len(line) for line in text.splitlines()) < ev.TRANSCRIPT_LINE_CAP + 100
    assert f"[... {ev.TRANSCRIPT_LINE_CAP * 2} chars dropped ...]" in text
