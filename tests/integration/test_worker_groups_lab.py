"""``--selector`` and ``--group-by`` end to end against the lab (1 control plane + 4
workers labelled by zone): ``apply --selector tier=canary`` upgrades the control plane and
exactly w-1 (the others stay at the old version, uncordoned, untouched; ``status`` names
the selection); then ``apply --group-by zone --max-unavailable-per-group 1`` upgrades the
other three with nodes of different zones down at the same time and never two of one zone
(from the events file). Real CLI in a subprocess, real sshd, the lab's API over HTTPS,
checked with the real ``kubectl`` (helpers of apply_kit)."""

from __future__ import annotations

from collections.abc import Callable

from apply_kit import TARGET, Lab, all_at, lab_node
from cli_run import cli

ZONES = {"w-1": "a", "w-2": "b", "w-3": "a", "w-4": "b"}


def _down_spans(lab: Lab) -> dict[str, list[tuple[int, int]]]:
    """Per node, the (cordoned, uncordoned) positions in the events file."""
    events = lab.events_list()
    start: dict[str, int] = {}
    spans: dict[str, list[tuple[int, int]]] = {}
    for i, e in enumerate(events):
        if e["event"] == "node-cordoned":
            start[e["node"]] = i
        elif e["event"] == "node-uncordoned":
            spans.setdefault(e["node"], []).append((start.pop(e["node"]), i))
    assert not start, f"left cordoned: {start}"
    return spans


def test_selector_then_groups_by_zone(make_lab: Callable[..., Lab]) -> None:
    labels = {w: {"zone": z} for w, z in ZONES.items()}
    labels["w-1"]["tier"] = "canary"
    lab = make_lab(
        {
            "version": "v1.27.8",
            "nodes": [
                lab_node("cp-1", "control-plane"),
                *(lab_node(w, labels=labels[w]) for w in ZONES),
            ],
        }
    )
    bad = lab.apply("--selector", "tier=none")
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "--selector: tier=none matches no worker" in bad.stderr
    assert "Traceback" not in bad.stderr and not lab.state.exists()

    r = lab.apply("--selector", "tier=canary")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Workers: 1 of 4 selected by tier=canary; order: inventory order" in r.stdout
    nodes = lab.nodes()
    assert nodes["cp-1"]["kubelet"] == TARGET and nodes["w-1"]["kubelet"] == TARGET
    for w in ("w-2", "w-3", "w-4"):
        assert nodes[w]["kubelet"] == "v1.27.8" and not nodes[w]["unschedulable"]
        assert lab.changes(w) == []
    status = cli("status", "-i", str(lab.inventory), timeout=120)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "Workers: 1 of 4 selected by tier=canary" in status.stdout

    lab.events.unlink()
    r = lab.apply("--group-by", "zone", "--max-unavailable-per-group", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "groups by zone: a (w-3), b (w-2, w-4); at most 1 down per group" in r.stdout
    all_at(lab)
    assert not any(v["unschedulable"] for v in lab.nodes().values())
    spans = _down_spans(lab)
    assert set(spans) == {"w-2", "w-3", "w-4"}
    flat = [(n, s) for n, ss in spans.items() for s in ss]
    overlaps = {
        (a, b) for a, (s1, e1) in flat for b, (s2, e2) in flat if a < b and s1 < e2 and s2 < e1
    }
    assert any(ZONES[a] != ZONES[b] for a, b in overlaps), spans  # zones side by side
    assert all(ZONES[a] != ZONES[b] for a, b in overlaps), spans  # never two of one zone
    assert sum("kubeadm upgrade node" in c for c in lab.calls("w-1")) == 1
