"""Bounded output through the real transports: a command printing 200 MiB on stdout or
stderr (the local transport, and the SSH transport against a real OpenSSH sshd) costs the
operator's process a few MiB, not 200; and the fact script cuts a probe reading a huge
file on the node itself (a real shell)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sshd import SSHServer

from upgrader.core.parsers import FACT_SECTION_CAP, frame_probe, split_sections
from upgrader.transport.bounded import DEFAULT_OUTPUT_CAP

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
PRINTED = 200 * MIB
# peak RSS may grow by the two capped streams, their text and a few chunks: well under
# what was printed
MAX_GROWTH = 48 * MIB

# argv: transport kind ("local" | JSON of an SSHTarget), command. Prints the result's
# shape and the peak RSS (KiB) before and after the command.
_CHILD = """
import json, resource, sys
from upgrader.transport.base import SSHTarget
from upgrader.transport.local import LocalTransport
from upgrader.transport.ssh import SSHTransport
kind, command = sys.argv[1], sys.argv[2]
t = LocalTransport("local") if kind == "local" else SSHTransport(SSHTarget(**json.loads(kind)))
t.run("true", timeout=60, sudo=False)  # connected, every module imported
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
r = t.run(command, timeout=600, sudo=False)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t.close()
print(json.dumps({"before": before * 1024, "after": after * 1024, "exit": r.exit_code,
    "stdout_dropped": r.stdout_dropped, "stderr_dropped": r.stderr_dropped,
    "stdout": r.stdout[:64] + "|" + r.stdout[-64:], "stderr": r.stderr[:64] + "|" + r.stderr[-64:],
    "stdout_len": len(r.stdout), "stderr_len": len(r.stderr)}))
"""


def _peak(kind: str, command: str) -> dict[str, object]:
    p = subprocess.run(
        [sys.executable, "-c", _CHILD, kind, command],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    got: dict[str, object] = json.loads(p.stdout.strip().splitlines()[-1])
    return got


def _flood(stream: str) -> str:
    redirect = " >&2" if stream == "stderr" else ""
    flood = f"head -c {PRINTED} /dev/zero | tr '\\000' x"
    return f"echo first{redirect}; {flood}{redirect}; echo last{redirect}"


def _check(got: dict[str, object], stream: str) -> None:
    other = "stderr" if stream == "stdout" else "stdout"
    assert got["exit"] == 0
    dropped = got[f"{stream}_dropped"]
    assert isinstance(dropped, int) and dropped > PRINTED - DEFAULT_OUTPUT_CAP
    assert got[f"{other}_dropped"] == 0
    text = str(got[stream])
    assert text.startswith("first\nxxx") and text.endswith("xxxlast\n")
    length = got[f"{stream}_len"]
    assert isinstance(length, int) and length < DEFAULT_OUTPUT_CAP + 100  # + the marker line
    growth = int(str(got["after"])) - int(str(got["before"]))
    assert growth < MAX_GROWTH, f"peak RSS grew by {growth // MIB} MiB for {PRINTED // MIB} MiB"


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_local_transport_memory_stays_flat(stream: str) -> None:
    _check(_peak("local", _flood(stream)), stream)


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_ssh_transport_memory_stays_flat(
    sshd_server: SSHServer, tmp_path: Path, stream: str
) -> None:
    known = sshd_server.write_known_hosts(tmp_path / "known_hosts")
    target = dataclasses.asdict(sshd_server.target("node-a", known))
    target.pop("jump", None)
    _check(_peak(json.dumps(target), _flood(stream)), stream)


def test_the_marker_says_how_much_was_dropped() -> None:
    from upgrader.transport.local import LocalTransport

    r = LocalTransport("n").run("printf 'a%.0s' $(seq 1 100); echo", max_output=20)
    assert r.stdout == "a" * 10 + "\n[... 81 bytes dropped ...]\n" + "a" * 9 + "\n"
    assert r.stdout_dropped == 81 and r.exit_code == 0


def test_a_probe_reading_a_huge_file_is_cut_on_the_node(tmp_path: Path) -> None:
    big = tmp_path / "big"
    with big.open("wb") as fh:
        fh.truncate(1024 * MIB)  # sparse
    script = "exec 4>&1\n" + frame_probe("big", f"cat {big}") + frame_probe("small", "echo ok")
    out = subprocess.run(["sh", "-c", script], capture_output=True, timeout=120, check=True)
    # the node sent the cap and one byte, not the gigabyte
    assert len(out.stdout) < FACT_SECTION_CAP + 200
    got = split_sections(out.stdout.decode())
    assert got["big"].capped and got["big"].rc is not None
    assert got["small"].output == "ok\n" and got["small"].rc == 0 and not got["small"].capped
