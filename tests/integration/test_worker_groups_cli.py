"""``--selector``/``--group-by`` at the real CLI's edge: bad input is one line and exit 2
before anything is read from a node (``plan --facts``; ``apply`` refuses before it opens
the inventory), and ``plan --facts --json`` carries the selection, the groups and the order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_run import cli, one_line_error

FACTS = Path(__file__).parents[1] / "data/facts/one-cp-two-workers.json"
BASE = ("plan", "--facts", str(FACTS), "--to", "v1.28.4")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--selector", "zone in (a"), ("--selector:", "expected ',' or ')'")),
        (("--selector", "zone=a"), ("--selector: zone=a matches no worker", "w-1, w-2")),
        (("--group-by", "bad key"), ("--group-by: invalid label key 'bad key'",)),
        (("--order-by", "a/b/c"), ("--order-by: invalid label key",)),
        (("--max-unavailable-per-group", "2"), ("--max-unavailable-per-group: needs --group-by",)),
    ],
)
def test_bad_worker_options_are_one_line_exit_2(
    args: tuple[str, ...], words: tuple[str, ...]
) -> None:
    one_line_error(cli(*BASE, *args), *words)


def test_apply_refuses_group_by_with_max_unavailable_before_reading_anything(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "no-such-inventory.yaml"
    r = cli(
        "apply", "-i", str(missing), "--to", "v1.28.4", "--yes",
        "--group-by", "zone", "--max-unavailable", "2",
    )  # fmt: skip
    one_line_error(r, "--group-by: not with --max-unavailable")


def test_plan_json_carries_the_groups_and_the_order(tmp_path: Path) -> None:
    doc = json.loads(FACTS.read_text())
    for n, zone in (("w-1", "b"), ("w-2", "a")):
        next(x for x in doc["nodes"] if x["name"] == n)["labels"] = {"zone": zone, "r": "1"}
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps(doc))
    r = cli(
        "plan", "--facts", str(facts), "--to", "v1.28.4", "--json",
        "-l", "r in (1)", "--group-by", "zone",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    plan = json.loads(r.stdout)
    assert plan["workers"]["groups"] == {"a": ["w-2"], "b": ["w-1"]}
    assert plan["workers"]["selector"] == "r in (1)"
    assert [n["name"] for n in plan["nodes"] if n["phase"] == "worker"] == ["w-2", "w-1"]
