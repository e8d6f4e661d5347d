"""Every file format read through its pydantic schema: one shared renderer gives one line
``<file>: <field path>: <problem>``; a key the format does not name is refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from state_steps import S

from upgrader.core.model import Facts, PlanEntry, Step
from upgrader.core.releases import parse_release_data
from upgrader.errors import ConfigError
from upgrader.execute import stored
from upgrader.state import JOURNAL_KEY, RunState, new_run, record_etcd_snapshot

DATA = Path(__file__).resolve().parents[1] / "data" / "facts"


def error_line(read: Callable[[], object], error: type[Exception] = ConfigError) -> str:
    """The one line ``read()`` fails with."""
    with pytest.raises(error) as ei:
        read()
    assert "\n" not in str(ei.value)
    return str(ei.value)


def facts_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DATA / "one-cp-two-workers.json").read_text())
    return doc


# --------------------------------------------------------------------------- facts


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(colour="red"), "f.json: colour: unknown key"),
        (
            lambda d: d["nodes"][1].update(kubelet="1.28"),
            "f.json: nodes[1].kubelet: invalid version",
        ),
        (lambda d: d["nodes"][1].update(kubelet=128), "nodes[1].kubelet: must be a version string"),
        (lambda d: d["nodes"][2].update(role="boss"), "nodes[2].role: 'boss' is not one of"),
        (lambda d: d["nodes"][0].update(name=""), "f.json: nodes[0].name: must not be empty"),
        (lambda d: d["nodes"][2].update(name="w-1"), "nodes[2].name: duplicate node 'w-1'"),
        (lambda d: d.update(nodes=[]), "f.json: nodes: must not be empty"),
        (lambda d: d.pop("cluster"), "f.json: cluster: missing required key"),
        (lambda d: d["cluster"].pop("version"), "f.json: cluster.version: missing required key"),
        (
            lambda d: d["nodes"][0]["packages"]["kubeadm"].pop("version"),
            "nodes[0].packages.kubeadm.version: missing required key",
        ),
        (
            lambda d: d["nodes"][0]["control_plane"].update(etcd_version="3.5"),
            "nodes[0].control_plane.etcd_version: unknown key",
        ),
    ],
)
def test_a_bad_facts_file_is_one_line_naming_the_field(mutate: Any, message: str) -> None:
    doc = facts_doc()
    mutate(doc)
    assert message in error_line(lambda: Facts.from_dict(doc, "f.json"), ValueError)


def test_facts_top_level_must_be_a_mapping() -> None:
    with pytest.raises(
        ValueError, match=r"^f\.json: \(top level\): expected a mapping, got a list"
    ):
        Facts.from_dict([1], "f.json")


# --------------------------------------------------------------------------- stored plan


def stored_doc() -> dict[str, Any]:
    step = Step("v1.28.4/w-1/worker/s", "shell", "w-1", "v1.28.4", "worker", "s", "d", "true")
    entry = PlanEntry("w-1", "worker", "worker", "v1.28.4", (step,))
    sp = stored.StoredPlan("r", "v1.27.8", "v1.28.4", ("v1.28.4",), "per-hop", (entry,))
    doc: dict[str, Any] = json.loads(json.dumps(sp.to_dict()))
    assert stored.from_dict(doc, "p.json") == sp
    return doc


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schema=2), "p.json: not a stored plan of this upgrader version"),
        (lambda d: d.update(extra=1), "p.json: extra: unknown key"),
        (lambda d: d.pop("run_id"), "p.json: run_id: missing required key"),
        (lambda d: d.update(hops="v1.28.4"), "p.json: hops: expected a list, got a string"),
        (
            lambda d: d["entries"][0]["steps"][0].update(kind="reboot"),
            "p.json: entries[0].steps[0].kind: 'reboot' is not one of shell, cordon",
        ),
        (
            lambda d: d["entries"][0]["steps"][0].update(timeout=True),
            "p.json: entries[0].steps[0].timeout: expected a number, got a boolean",
        ),
        (
            lambda d: d["entries"][0]["steps"][0].update(shell="x"),
            "p.json: entries[0].steps[0].shell: unknown key",
        ),
        (
            lambda d: d["entries"][0]["steps"].append(d["entries"][0]["steps"][0]),
            "p.json: entries[0]: duplicate step id 'v1.28.4/w-1/worker/s'",
        ),
    ],
)
def test_a_bad_stored_plan_is_one_line_naming_the_field(mutate: Any, message: str) -> None:
    doc = stored_doc()
    mutate(doc)
    assert error_line(lambda: stored.from_dict(doc, "p.json")).startswith(message)


# --------------------------------------------------------------------------- release data


def release_doc(**minor: Any) -> dict[str, Any]:
    m = {"released": "2024-04-17", "eol": "2025-06-28", "latest": "v1.30.1", **minor}
    return {"schema": 1, "generated": "2025-01-01", "minors": {"1.30": m}}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({**release_doc(), "colour": "blue"}, "r.json: colour: unknown key"),
        (release_doc(colour="blue"), "r.json: minors.1.30.colour: unknown key"),
        ({**release_doc(), "schema": 2}, "r.json: schema: unsupported version 2 (expected 1)"),
        ({**release_doc(), "minors": {}}, "r.json: minors: must not be empty"),
        (
            {**release_doc(), "minors": {"1.x": release_doc()["minors"]["1.30"]}},
            "r.json: minors.1.x: key '1.x' is not a MAJOR.MINOR minor like '1.30'",
        ),
        (release_doc(eol=20250628), "r.json: minors.1.30.eol: must be a YYYY-MM-DD date string"),
        (
            release_doc(released="2025-13-01"),
            "r.json: minors.1.30.released: invalid date '2025-13-01'",
        ),
        (release_doc(patches=["v1.30.1", "1.30"]), "r.json: minors.1.30.patches[1]: invalid"),
        (release_doc(patches=["v1.31.1"]), "r.json: minors.1.30.patches[0]: v1.31.1 is not a 1.30"),
    ],
)
def test_bad_release_data_is_one_line_naming_the_field(doc: Any, message: str) -> None:
    assert error_line(lambda: parse_release_data(doc, "r.json")).startswith(message)


# --------------------------------------------------------------------------- state file


def state_doc() -> dict[str, Any]:
    steps = [S("v1.28.4/w-1/worker/s", "w-1", "worker", "s")]
    run = new_run(
        cluster="c", inventory="i", fingerprint="f", target="v1.28.4", hops=["v1.28.4"],
        strategy="per-hop", steps=steps, run_id="r",
    )  # fmt: skip
    run = record_etcd_snapshot(run, {"node": "cp-1", "path": "/p", "sha256": "a", "size": 3})
    doc: dict[str, Any] = json.loads(json.dumps({**run.to_dict(), JOURNAL_KEY: "b"}))
    assert RunState.from_dict(doc) == run
    return doc


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(colour="red"), "s.json: colour: unknown key"),
        (
            lambda d: d["steps"]["v1.28.4/w-1/worker/s"].update(colour="red"),
            "s.json: steps.v1.28.4/w-1/worker/s.colour: unknown key",
        ),
        (lambda d: d.update(hops=[1]), "s.json: hops[0]: expected a string, got 1"),
        (lambda d: d.update(inputs={"x": 1}), "s.json: inputs.x: expected a string, got 1"),
        (lambda d: d["etcd_snapshot"].pop("sha256"), "s.json: etcd_snapshot.sha256: missing"),
        (
            lambda d: d.update(drain_fallbacks={"x": {"node": "w-1", "pods": []}}),
            "s.json: drain_fallbacks.x.budgets: missing required key",
        ),
    ],
)
def test_a_bad_state_file_is_one_line_naming_the_field(mutate: Any, message: str) -> None:
    doc = state_doc()
    mutate(doc)
    assert error_line(lambda: RunState.from_dict(doc, "s.json")).startswith(message)
