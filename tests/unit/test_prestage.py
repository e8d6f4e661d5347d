"""Pre-staging: one ``prestage`` visit per node before every other visit, at the hop of
the node's first visit (repository switched there, packages downloaded only; the images
are pulled in the control-plane visits, by the new kubeadm), and the engine's batching
that runs them all at once."""

from __future__ import annotations

import json
import shlex
from datetime import date
from pathlib import Path
from typing import Any

from upgrader.core.model import Facts, Plan
from upgrader.core.planner import PlanOptions, build_plan
from upgrader.core.playbook import load_playbooks, parse_playbook
from upgrader.core.policy import PolicyOptions
from upgrader.core.releases import load_release_data
from upgrader.core.versions import KubeVersion
from upgrader.execute.engine import batches

DATA = Path(__file__).resolve().parents[1] / "data" / "facts"


def _plan(name: str, target: str, **kw: Any) -> Plan:
    f = Facts.from_dict(json.loads((DATA / name).read_text()))
    return build_plan(
        f,
        KubeVersion.parse(target),
        kw.pop("playbook", None) or load_playbooks(),
        load_release_data(DATA / "releases.json"),
        PlanOptions(policy=PolicyOptions(today=date(2024, 6, 1)), **kw),
    )


def test_prestage_visits_come_first_one_per_node() -> None:
    p = _plan("one-cp-two-workers.json", "v1.28.4", prestage=True)
    head = [(e.node, e.phase, e.hop) for e in p.entries[:3]]
    assert head == [
        ("cp-1", "prestage", "v1.28.4"),
        ("w-1", "prestage", "v1.28.4"),
        ("w-2", "prestage", "v1.28.4"),
    ]
    assert all(e.phase != "prestage" for e in p.entries[3:])
    names = {e.node: [s.name for s in e.steps] for e in p.entries[:3]}
    # the repository is at 1.27 in the facts: switched here already; no images: the old
    # kubeadm would pull its own etcd/CoreDNS/pause tags (images.go), not the target's
    assert names["cp-1"] == ["package-repository", "download-packages"]
    assert names["w-1"] == ["package-repository", "download-packages"]
    dl = p.entries[1].steps[1].command
    assert dl is not None and "apt-get install --download-only -y" in dl
    assert 'kubeadm="$pkgver" kubelet="$pkgver" kubectl="$pkgver"' in dl
    shlex.split(dl)
    cp_visit = next(e for e in p.entries if e.phase == "first-control-plane")
    names_cp = [s.name for s in cp_visit.steps]
    assert names_cp.index("pull-images") == names_cp.index("kubeadm-package") + 1
    pull = cp_visit.steps[names_cp.index("pull-images")].command
    assert pull == (
        "kubeadm config images pull --kubernetes-version v1.28.4 --image-repository registry.k8s.io"
    )
    # nothing before the first drain downloads afterwards but what a visit itself needs
    first_drain = next(i for i, s in enumerate(p.steps) if s.kind == "drain")
    assert [s.phase for s in list(p.steps)[:first_drain]].count("prestage") == 6
    # without it: the plan as before
    plain = _plan("one-cp-two-workers.json", "v1.28.4")
    assert [e.phase for e in p.entries[3:]] == [e.phase for e in plain.entries]


def test_prestage_of_a_multi_minor_run_is_the_first_hop() -> None:
    p = _plan("multi-minor-apt.json", "v1.28.4", strategy="per-hop", prestage=True)
    pre = [e for e in p.entries if e.phase == "prestage"]
    assert pre and all(e.hop == str(p.hops[0]) for e in pre)
    assert len({e.node for e in pre}) == len(pre)


def test_prestage_follows_the_nodes_filter_and_an_optional_phase() -> None:
    p = _plan("one-cp-two-workers.json", "v1.28.4", prestage=True, nodes=("w-2",))
    assert [(e.node, e.phase) for e in p.entries] == [("w-2", "prestage"), ("w-2", "worker")]
    # a playbook without a prestage phase: no prestage visits, no error
    text = (Path(load_playbooks().sources[0])).read_text()
    cut = text[: text.index("\n  prestage:")] + "\n"
    pb = parse_playbook([("default.yaml", cut)])
    q = _plan("one-cp-two-workers.json", "v1.28.4", prestage=True, playbook=pb)
    assert not any(e.phase == "prestage" for e in q.entries)


def test_engine_batches_run_the_prestage_visits_at_once() -> None:
    p = _plan("one-cp-two-workers.json", "v1.28.4", prestage=True)
    groups = batches(p.entries, 1)
    assert [[e.node for e in g] for g in groups[:1]] == [["cp-1", "w-1", "w-2"]]
    assert all(len(g) == 1 for g in groups[1:])  # max_unavailable 1: one node at a time
    groups = batches(p.entries, 2)
    assert [e.phase for e in groups[0]] == ["prestage"] * 3
    assert [[e.node for e in g] for g in groups if g[0].phase == "worker"] == [["w-1", "w-2"]]
