"""The brief plan (what ``plan`` and ``apply`` print by default): golden files for 1-, 7- and
50-node clusters and a two-hop plan, its size (one line per extra worker), that it shows
every distinct command of the plan exactly once, and that a folded command is the same
command."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from dataclasses import replace
from typing import Any

import pytest
from golden_check import check_golden
from test_render import DATA, plan

from upgrader.core.model import Facts, Finding, Plan, Severity
from upgrader.core.render import describe_step
from upgrader.core.render_brief import (
    OVERLONG,
    WIDTH,
    _split_top_level_and,
    _split_words,
    fold_command,
    render_brief,
)


def cluster(control_planes: int, workers: int, base: str = "one-cp-two-workers.json") -> Facts:
    """A cluster like ``base`` with ``control_planes`` copies of its first control-plane node
    (cp-1, cp-2, ...) and ``workers`` copies of its first worker (w-1, w-2, ...)."""
    doc = json.loads((DATA / base).read_text())
    cp = next(n for n in doc["nodes"] if n["role"] == "control-plane")
    worker = next(n for n in doc["nodes"] if n["role"] == "worker")
    nodes: list[dict[str, Any]] = []
    for i in range(1, control_planes + 1):
        nodes.append({**copy.deepcopy(cp), "name": f"cp-{i}"})
    for i in range(1, workers + 1):
        nodes.append({**copy.deepcopy(worker), "name": f"w-{i}"})
    doc["nodes"] = nodes
    return Facts.from_dict(doc, source=f"{control_planes}cp-{workers}w")


def brief(f: Facts | str, target: str = "v1.28.4", **kw: Any) -> str:
    return render_brief(plan(f, target, prestage=True, **kw))


@pytest.mark.parametrize(
    ("control_planes", "workers", "target", "golden"),
    [
        (1, 0, "v1.28.4", "brief-1-node.txt"),
        (3, 4, "v1.28.4", "brief-7-nodes.txt"),
        (3, 47, "v1.28.4", "brief-50-nodes.txt"),
        (3, 4, "v1.29.5", "brief-7-nodes-two-hops.txt"),
    ],
)
def test_golden_brief(control_planes: int, workers: int, target: str, golden: str) -> None:
    check_golden(golden, brief(cluster(control_planes, workers), target))


def test_seven_nodes_fit_a_screen_and_a_half_and_each_worker_adds_one_line() -> None:
    seven = brief(cluster(3, 4)).splitlines()
    fifty = brief(cluster(3, 47)).splitlines()
    assert 45 <= len(seven) <= 75, len(seven)  # a screen and a half
    assert len(fifty) - len(seven) == 43  # one line per extra worker, nothing else grows
    # the detailed layout of the same 7-node plan is over three times as long
    from upgrader.core.render import render_text

    detail = render_text(plan(cluster(3, 4), "v1.28.4", prestage=True)).splitlines()
    assert len(detail) > 2.5 * len(seven)


def test_every_distinct_command_is_shown_once_and_nothing_else_is() -> None:
    p: Plan = plan(cluster(3, 4), "v1.28.4", prestage=True)
    text = brief(cluster(3, 4))
    commands = {describe_step(s) for s in p.steps if s.kind == "shell"}
    for c in commands:
        folded = fold_command(c, width=WIDTH - 8)
        block = "\n".join([f"    $ {folded[0]}", *(f"        {x}" for x in folded[1:])])
        assert text.count(block + "\n") == 1, c
    shown = [line for line in text.splitlines() if line.startswith("    $ ")]
    assert len(shown) == len(commands)
    assert "skipped when" not in text  # skip checks are for --detail


def test_nodes_are_listed_in_run_order_one_line_each() -> None:
    lines = brief(cluster(3, 4)).splitlines()
    order = lines[lines.index("Order:") :]
    workers = [ln.split()[0] for ln in order if ln.startswith("    w-")]
    assert workers == ["w-1", "w-2", "w-3", "w-4"]
    assert "    w-2   (the same steps)" in order
    cps = [ln.split()[0] for ln in order if ln.startswith("    cp-")]
    assert cps == ["cp-1", "cp-2", "cp-3", "cp-1", "cp-2", "cp-3"]  # apply/node, then kubelets


def test_a_node_not_reached_is_named_without_its_steps_or_commands() -> None:
    p = plan(cluster(1, 2), "v1.28.4", prestage=True)
    lost = Finding("NODE_UNREACHABLE", Severity.BLOCKER, "connection refused", node="w-2")
    text = render_brief(replace(p, findings=(*p.findings, lost)))
    assert "    w-2   (not reached, NODE_UNREACHABLE: its steps are not listed)" in text
    assert "on w-1:" in text  # commands are listed for the nodes that were reached only
    assert "w-2:" not in text.replace("[w-2]:", "")
    assert text.splitlines()[-1].startswith("Cannot run: 1 blocker.")


@pytest.mark.parametrize(
    ("command", "pieces"),
    [
        ("a && b", 2),
        ("x=$(a && b) && { c && d; } && echo 'p && q' && echo \"r && s\" && `t && u` && v", 6),
        ("printf '%s\\n' a > /etc/x \\&& y && z", 2),
    ],
)
def test_fold_splits_only_at_top_level_and(command: str, pieces: int) -> None:
    parts = _split_top_level_and(command)
    assert len(parts) == pieces
    assert " && ".join(parts) == command


def _joined(folded: list[str]) -> str:
    """What the shell reads: each backslash-newline and the next line's indent removed."""
    return re.sub(r" \\\n *", " ", "\n".join(folded))


@pytest.mark.parametrize("width", [1, 20, 40, 80])
def test_a_piece_too_long_for_the_width_is_folded_at_spaces_outside_quotes(width: int) -> None:
    command = (
        "rc=0; for b in kubeadm=aaaa kubelet=bbbb; do name=${b%%=*}; done && "
        'echo \'one two three four\' "five six" `seven eight` && test -n "$x"'
    )
    folded = fold_command(command, width=width, overlong=width)
    assert _joined(folded) == command
    for line in folded:  # a line is longer only when it is one unbreakable word
        body = line.removesuffix(" \\")
        assert len(line) <= width or len(_split_words(body)) == 1 or body.startswith("&& "), line
    assert any("'one two three four'" in line for line in folded)  # a quoted word stays whole
    for text in (command, "\n".join(folded)):
        r = subprocess.run(["bash", "-n", "-c", text], capture_output=True, text=True)
        assert r.returncode == 0, (text, r.stderr)


def test_only_command_lines_pass_the_width_and_none_passes_the_overlong_limit() -> None:
    for text in (brief(cluster(3, 4)), brief(cluster(1, 50))):
        # the findings stay one line each (grep finds a finding whole), so they are not counted
        lines = re.split(r"\n(?=[A-Z][a-z]+ \(\d+\):\n)", text, maxsplit=1)[0].splitlines()
        assert any(ln.startswith("Commands (") for ln in lines)
        commands = [ln for ln in lines if ln.startswith(("    $ ", "        "))]
        assert all(len(ln) <= WIDTH for ln in lines if ln not in commands)
        assert all(len(ln) <= OVERLONG + len("        ") for ln in commands)


def test_folded_commands_of_a_real_plan_parse_as_the_same_shell_command() -> None:
    p = plan(cluster(1, 1, "three-cp-dnf.json"), "v1.28.4", prestage=True)
    for s in p.steps:
        if s.kind != "shell" or not s.command:
            continue
        folded = "\n".join(fold_command(s.command))
        for text in (s.command, folded):
            r = subprocess.run(["bash", "-n", "-c", text], capture_output=True, text=True)
            assert r.returncode == 0, (text, r.stderr)
        # bash's own reading of both: the same command once the continuations are joined
        assert _joined(folded.splitlines()) == s.command


def test_a_finding_several_nodes_share_is_one_entry_naming_them() -> None:
    p = plan(cluster(3, 1), "v1.28.4", prestage=True)
    fs = tuple(
        Finding(
            "CERT_EXPIRY_UNKNOWN",
            Severity.INFO,
            f"no certificate could be read on {n} (cp-10 is another node)",
            node=n,
            fix="kubeadm certs check-expiration",
        )
        for n in ("cp-1", "cp-2", "cp-3")
    )
    other = Finding("CERT_EXPIRY_UNKNOWN", Severity.INFO, "something else on w-1", node="w-1")
    text = render_brief(replace(p, findings=(*fs, other)))
    assert "Notes (4):\n" in text
    assert (
        "  - CERT_EXPIRY_UNKNOWN [cp-1, cp-2, cp-3]: no certificate could be read on the node "
        "(cp-10 is another node)\n      fix: kubeadm certs check-expiration\n"
    ) in text
    assert "  - CERT_EXPIRY_UNKNOWN [w-1]: something else on w-1\n" in text
    # the detailed layout keeps one entry per node
    from upgrader.core.render import render_text

    assert render_text(replace(p, findings=fs)).count("CERT_EXPIRY_UNKNOWN [cp-") == 3
