"""The fact script and section framing run through a real ``sh`` (no SSH)."""

from __future__ import annotations

import subprocess

import pytest

from upgrader.core.parsers import Section, parse_os_release, split_sections
from upgrader.core.probes import fact_probes, fact_script

pytestmark = pytest.mark.integration


def test_split_sections_round_trip_through_a_real_shell() -> None:
    script = (
        "echo '@@upgrader:a'\n{ printf 'one\\ntwo\\n'; } </dev/null 2>&1\n"
        "printf '\\n@@upgrader:rc=%s\\n' \"$?\"\n"
        "echo '@@upgrader:b'\n{ printf 'no newline'; exit_3() { return 3; }; exit_3; } 2>&1\n"
        "printf '\\n@@upgrader:rc=%s\\n' \"$?\"\n"
        "echo '@@upgrader:c'\n{ true; } 2>&1\n"
        "printf '\\n@@upgrader:rc=%s\\n' \"$?\"\n"
        "echo '@@upgrader:d'\n{ no-such-tool-xyz --version; } 2>&1\n"
        "printf '\\n@@upgrader:rc=%s\\n' \"$?\"\n"
    )
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
    got = split_sections(out)
    assert got["a"] == Section("a", "one\ntwo\n", 0)
    assert got["b"] == Section("b", "no newline", 3)
    assert got["c"] == Section("c", "", 0)
    assert got["d"].rc == 127 and got["d"].missing_tool


def test_fact_script_runs_every_probe_in_a_real_shell() -> None:
    """Whatever is (not) installed here, every probe yields a section with an rc."""
    out = subprocess.run(
        ["sh", "-c", fact_script("apt")], capture_output=True, text=True, timeout=60
    ).stdout
    got = split_sections(out)
    assert list(got) == [name for name, _ in fact_probes("apt")]
    assert all(s.rc is not None for s in got.values())
    assert parse_os_release(got["os_release"].output).id
