"""What a hostile node can send back, end to end against the lab (real sshd, real shell,
the real CLI in a subprocess): a probe reading a 1 GiB file costs the operator no memory
(the fact script cuts each probe on the node, the transport caps each stream), and
terminal escapes in node output (a daemon.json host, an SSH server's banner lines, a
failing step's stderr) reach neither the CLI's stdout/stderr (plan, the failing step's
error line, ``status``) nor the transcripts raw."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_run import cli, cli_env
from labkit import fast_playbooks, lab_down, lab_up

from bench.security import EVIL_OUTPUT, EVIL_SHOWN, RSS_WRAPPER, banner_server
from upgrader.core.parsers import FACT_SECTION_CAP

pytestmark = pytest.mark.integration

TARGET = "v1.28.4"
FAST = {"kubelet_ready": 0.3, "package_install": 0.0, "pod_termination": 0.1, "download": 0.0}
# OSC 52 (writes the operator's clipboard), CSI (clears the screen), RLO (reverses text)
EVIL = EVIL_OUTPUT
RAW = ("\x1b", "\x07", "\u202e")
SHOWN = EVIL_SHOWN  # what the operator sees instead (and \\u202e)


def _cli_rss(*args: str) -> tuple[subprocess.CompletedProcess[str], int]:
    """The CLI run in a subprocess; (its result, its peak RSS in bytes)."""
    r = subprocess.run(
        [sys.executable, "-c", RSS_WRAPPER, sys.executable, "-m", "upgrader", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
    )
    err, _, rss = r.stderr.rstrip("\n").rpartition("\n")
    return subprocess.CompletedProcess(r.args, r.returncode, r.stdout, err), int(rss) * 1024


def _raw_free(*texts: str) -> None:
    for text in texts:
        for c in RAW:
            assert c not in text, f"raw {c!r} reached the operator: {text[-2000:]!r}"


def test_hostile_node_output_is_bounded_and_shown_escaped(tmp_path: Path) -> None:
    spec: dict[str, Any] = {
        "delays": FAST,
        "version": "v1.27.8",
        "nodes": [
            {"name": "cp-1", "role": "control-plane"},
            {"name": "w-1", "role": "worker"},
            {"name": "w-2", "role": "worker"},
        ],
        "faults": [
            {"node": "cp-1", "match": "kubeadm upgrade plan", "times": 9, "exit": 1, "stderr": EVIL}
        ],
    }
    lab = tmp_path / "lab"
    fast_playbooks(tmp_path / "playbooks")
    lab_up(lab, spec)
    inv = str(lab / "inventory.yaml")
    try:
        # w-1: a dockerd host address carrying escapes (DOCKERD_TCP_NO_TLS quotes it)
        docker = lab / "nodes" / "w-1" / "root" / "etc" / "docker"
        docker.mkdir(parents=True)
        hosts = {"hosts": ["unix:///var/run/docker.sock", "tcp://0.0.0.0:2375" + EVIL]}
        (docker / "daemon.json").write_text(json.dumps(hosts))

        base, base_rss = _cli_rss("plan", "-i", inv, "--to", TARGET)
        assert base.returncode == 0, base.stdout + base.stderr
        _raw_free(base.stdout, base.stderr)
        line = next(x for x in base.stdout.splitlines() if "DOCKERD_TCP_NO_TLS" in x)
        assert SHOWN in line and "\\u202e" in line, line

        # w-2 behind an SSH server whose banner lines (before any version line) carry them
        doc = yaml.safe_load((lab / "inventory.yaml").read_text())
        w2 = next(n for n in doc["nodes"] if n["name"] == "w-2")
        with banner_server(str(w2["address"]), "hello" + EVIL) as port:
            w2["port"] = port
            (lab / "inventory-banner.yaml").write_text(yaml.safe_dump(doc))
            r = cli("plan", "-i", str(lab / "inventory-banner.yaml"), "--to", TARGET, "-vv")
        # w-2 unreachable: a blocker (exit 3; 4 once unreachable nodes have their own code)
        assert r.returncode in (3, 4), r.stdout + r.stderr
        _raw_free(r.stdout, r.stderr)
        line = next(x for x in r.stdout.splitlines() if "NODE_UNREACHABLE [w-2]" in x)
        assert SHOWN in line, line
        assert "Banner: hello" + SHOWN in r.stderr  # paramiko's debug log, escaped too

        # w-2: a probe reads a 1 GiB file (sparse: no disk used)
        big = lab / "nodes" / "w-2" / "root" / "etc" / "docker" / "daemon.json"
        big.parent.mkdir(parents=True)
        with big.open("wb") as fh:
            fh.truncate(1024**3)
        huge, huge_rss = _cli_rss("plan", "-i", inv, "--to", TARGET)
        big.unlink()
        assert huge.returncode == 3, huge.stdout + huge.stderr  # a blocker stands
        line = next(x for x in huge.stdout.splitlines() if "FACT_TOO_LARGE" in x)
        assert "w-2" in line and "'docker_daemon'" in line and str(FACT_SECTION_CAP) in line
        # the 1 GiB never crossed the network: at most the probe's cap did
        assert huge_rss - base_rss < 64 * 1024 * 1024, (base_rss, huge_rss)

        # a failing step whose stderr carries the escapes: error line, status, transcript
        run = cli(
            "apply",
            "-i",
            inv,
            "--to",
            TARGET,
            "--yes",
            "--playbooks",
            str(tmp_path / "playbooks"),
            timeout=400,
        )
        assert run.returncode == 1, run.stdout + run.stderr
        _raw_free(run.stdout, run.stderr)
        assert "FAILED" in run.stdout + run.stderr and SHOWN in run.stdout + run.stderr
        status = cli("status", "-i", inv)
        assert status.returncode == 0, status.stderr
        _raw_free(status.stdout, status.stderr)
        assert "failed at step" in status.stdout and SHOWN in status.stdout
        transcript = next((lab / ".upgrader").rglob("cp-1.log")).read_text()
        _raw_free(transcript)
        assert SHOWN in transcript
    finally:
        lab_down(lab)
