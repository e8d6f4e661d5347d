"""Golden files under tests/golden: compare a text with its file (``UPGRADER_UPDATE_GOLDEN=1``
rewrites the file instead), and normalise the variable parts of a command's output (run id,
addresses, ports, temporary paths, timestamps, pids, durations) to placeholders first.

Shared by the unit tests (rendered plans) and the integration tests (the stop messages of
``apply``). Must not: start anything, or know about one test's scenario."""

from __future__ import annotations

import os
import re
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent / "golden"


def check_golden(name: str, text: str) -> None:
    """Compare with tests/golden/<name>; UPGRADER_UPDATE_GOLDEN=1 rewrites it."""
    path = GOLDEN / name
    if os.environ.get("UPGRADER_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"missing golden file {name}; run with UPGRADER_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs (UPGRADER_UPDATE_GOLDEN=1 to accept)"


def normalise(text: str, **known: str | Path) -> str:
    """``text`` with the values of ``known`` replaced by ``<NAME>`` (the longest first, e.g.
    ``inventory=path`` -> ``<INVENTORY>``), then: a ReplicaSet pod's generated suffix ->
    ``<POD>``, a 12-hex run id -> ``<RUN>``, an ISO
    timestamp -> ``<TIME>``, a loopback address -> ``<ADDR>``, a port after it or a
    ``localhost:`` -> ``<PORT>``, ``pid N`` -> ``pid <PID>``, a duration ``1.5s`` ->
    ``<N>s``, ``on host H`` and ``(user U`` -> ``<HOST>``/``<USER>``, any other temporary
    path -> ``<TMP>``."""
    for key, value in sorted(known.items(), key=lambda kv: -len(str(kv[1]))):
        text = text.replace(str(value), f"<{key.upper()}>")
    rules = (
        # a ReplicaSet's pod: name-<template hash>-<suffix>
        (r"\b([a-z][a-z0-9-]*)-[0-9a-f]{8,10}-[a-z0-9]{5}\b", r"\1-<POD>"),
        (r"\b[0-9a-f]{12}\b", "<RUN>"),
        (r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?", "<TIME>"),
        (r"\b127(?:\.\d{1,3}){3}\b", "<ADDR>"),
        (r"(<ADDR>|localhost):\d+", r"\1:<PORT>"),
        (r"\bpid \d+", "pid <PID>"),
        (r"\bon host [^\s,;)]+", "on host <HOST>"),
        (r"\(user [^\s,;)]+", "(user <USER>"),
        (r"\b\d+(?:\.\d+)?s\b", "<N>s"),
        (r"/tmp/[^\s'\"`),;]+", "<TMP>"),
    )
    for pattern, repl in rules:
        text = re.sub(pattern, repl, text)
    return text


def stop_message(stderr: str) -> str:
    """The last lines of a stopped command's stderr: from its last ``error:`` line on."""
    lines = stderr.rstrip("\n").splitlines()
    start = max((i for i, x in enumerate(lines) if x.startswith("error: ")), default=None)
    assert start is not None, f"no error line in:\n{stderr}"
    return "\n".join(lines[start:]) + "\n"
