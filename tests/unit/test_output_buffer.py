"""Bounded output: the transports' OutputBuffer, the fact script's per-probe cap."""

from __future__ import annotations

from upgrader.core.model import Severity
from upgrader.core.parsers import FACT_SECTION_CAP, Section, split_sections
from upgrader.core.probes import fact_probes
from upgrader.gather import fact_output_cap, interpret_sections
from upgrader.transport.bounded import DEFAULT_OUTPUT_CAP, OutputBuffer, dropped_marker


def test_small_output_is_kept_whole() -> None:
    b = OutputBuffer(100)
    for chunk in (b"one\n", b"two\n", b""):
        b.write(chunk)
    assert (b.text(), b.dropped, b.total) == ("one\ntwo\n", 0, 8)


def test_exactly_the_cap_is_kept_whole() -> None:
    b = OutputBuffer(10)
    b.write(b"0123456789")
    assert (b.text(), b.dropped) == ("0123456789", 0)


def test_past_the_cap_head_and_tail_kept_middle_counted() -> None:
    b = OutputBuffer(10)
    for chunk in (b"abc", b"defgh", b"ijklmnop", b"q"):
        b.write(chunk)
    assert b.dropped == 7 and b.total == 17
    assert b.text() == "abcde" + dropped_marker(7) + "mnopq"
    assert "[... 7 bytes dropped ...]" in b.text()


def test_one_huge_chunk_keeps_only_its_end_as_tail() -> None:
    b = OutputBuffer(8)
    b.write(b"HEAD")
    b.write(b"x" * 1000 + b"TAIL")
    assert b.text() == "HEAD" + dropped_marker(1000) + "TAIL"


def test_memory_never_exceeds_the_cap() -> None:
    b = OutputBuffer(1024)
    chunk = b"y" * 65536
    for _ in range(200):  # 12.5 MiB fed
        b.write(chunk)
        assert len(b._head) + len(b._tail) <= 1024
    assert b.dropped == 200 * 65536 - 1024


def test_default_cap_is_4_mib() -> None:
    assert DEFAULT_OUTPUT_CAP == 4 * 1024 * 1024


def test_a_section_past_its_cap_is_marked_capped() -> None:
    big = "z" * (FACT_SECTION_CAP + 1)
    out = f"@@upgrader:a\nsmall\n@@upgrader:rc=0\n@@upgrader:b\n{big}\n@@upgrader:rc=141\n"
    got = split_sections(out)
    assert got["a"] == Section("a", "small", 0)
    assert got["b"].capped and got["b"].rc == 141
    assert len(got["b"].output.encode()) == FACT_SECTION_CAP


def test_a_capped_section_is_a_blocker_naming_node_probe_and_cap() -> None:
    sections = split_sections(
        "@@upgrader:os_release\nID=debian\n@@upgrader:rc=0\n"
        f"@@upgrader:kubelet_config\n{'k' * (FACT_SECTION_CAP + 1)}\n@@upgrader:rc=141\n"
    )
    probe = interpret_sections("w-1", "apt", sections)
    big = [f for f in probe.findings if f.code == "FACT_TOO_LARGE"]
    assert len(big) == 1 and big[0].severity is Severity.BLOCKER and big[0].node == "w-1"
    assert "node w-1" in big[0].message and "'kubelet_config'" in big[0].message
    assert str(FACT_SECTION_CAP) in big[0].message
    assert probe.extra["kubelet_config"] is None  # the cut text is not used


def test_the_fact_script_cap_holds_every_probe_at_its_cap() -> None:
    for pm in ("apt", "dnf", "yum", "dnf5"):
        assert fact_output_cap(pm) > len(fact_probes(pm)) * (FACT_SECTION_CAP + 64)


def test_a_stderr_tail_keeps_no_megabyte_line() -> None:
    from upgrader.state import TAIL_LINE_CAP, tail

    got = tail("first\n" + "e" * (2 * 1024 * 1024) + "rror\n")
    assert got.startswith("first\neee") and got.endswith("eeerror")
    assert max(len(line) for line in got.splitlines()) < TAIL_LINE_CAP + 50
    assert tail("short\nlines\n") == "short\nlines"
