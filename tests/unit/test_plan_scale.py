"""The planning path at scale: the linear-time replacements of what grew faster than the
node count (the skew checks along the path, the node lookups, the brief's node lists,
template rendering) give exactly what the straightforward versions give.

Each fast function is compared with a reference copy of the code it replaced, over
generated inputs; the skew checks are also counted, so a quadratic walk cannot come back
unnoticed (no timing is asserted).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import replace
from datetime import date
from enum import IntEnum, StrEnum
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_path import cp, scenarios

from upgrader.core import jsontext
from upgrader.core import path as PATH
from upgrader.core.model import (
    ClusterFacts,
    Facts,
    Finding,
    NodeFacts,
    PlanEntry,
    Severity,
)
from upgrader.core.path import plan_path, simulate
from upgrader.core.playbook import Fragment, TemplateValue, render_template
from upgrader.core.policy import PolicyOptions, skew_findings
from upgrader.core.releases import load_release_data
from upgrader.core.render_brief import _node_list
from upgrader.core.versions import KubeVersion

V = KubeVersion.parse
R = load_release_data()
OPTS = PolicyOptions(today=date(2026, 11, 28))


# --------------------------------------------------------------------------- path checks


def _reference_check_path(
    facts: Facts,
    hops: tuple[KubeVersion, ...],
    strategy: Any,
    opts: PolicyOptions,
    known: set[tuple[str, str | None]],
) -> list[Finding]:
    """The check as it was: every event's full state through the whole skew policy."""
    out: list[Finding] = []
    seen = set(known)
    for ev in simulate(facts, hops, strategy):
        if ev.kind == "apply":
            where = f"kubeadm upgrade apply {ev.hop} (cluster at {ev.cluster})"
            found = PATH.kubeadm_apply_findings(ev.cluster, ev.hop, ev.hop, ev.kubelets, opts)
        elif ev.kind == "node":
            assert ev.node is not None
            where = f"kubeadm upgrade node on {ev.node} (hop {ev.hop})"
            found = PATH.kubeadm_node_findings(ev.cluster, ev.hop, ev.node, opts)
        else:
            what = "control plane" if ev.kind == "control-plane" else "kubelet"
            where = f"hop {ev.hop}, after the {what} of {ev.node} moved"
            found = skew_findings(ev.state)
        for f in found:
            key = (f.code, f.node)
            if key in seen or f.severity == Severity.INFO:
                continue
            seen.add(key)
            out.append(replace(f, message=f"{where}: {f.message}"))
    return out


def _same_as_reference(f: Facts, target: KubeVersion, strategy: str, opts: PolicyOptions) -> None:
    p = plan_path(f, target, R, opts, strategy)  # type: ignore[arg-type]
    if not p.hops:
        return
    for walked in ("per-hop", "drain-once"):
        for known in (set(), {(x.code, x.node) for x in skew_findings(_state(f))}):
            fast = PATH._check_path(f, p.hops, walked, opts, known)  # type: ignore[arg-type]
            slow = _reference_check_path(f, p.hops, walked, opts, known)
            assert fast == slow


def _state(f: Facts) -> Any:
    return PATH.state_from_facts(f)[0]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_path_check_is_the_full_check(item: tuple[Facts, KubeVersion, str, PolicyOptions]) -> None:
    _same_as_reference(*item)


@st.composite
def wide_clusters(draw: st.DrawFn) -> tuple[Facts, KubeVersion]:
    """Up to 3 control planes and 40 workers with kubelets from 4 minors behind to one ahead
    of the cluster (skew findings on many nodes, some only after the path moves)."""
    cmin = draw(st.integers(min_value=24, max_value=33))
    cluster = R.newest_patch((1, cmin))
    assert cluster is not None
    nodes: list[NodeFacts] = []
    for i in range(draw(st.integers(1, 3))):
        api = cluster if i == 0 else R.newest_patch((1, cmin - draw(st.integers(0, 1))))
        assert api is not None
        nodes.append(cp(f"cp-{i + 1}", str(api)))
    for i in range(draw(st.integers(0, 40))):
        kubelet = R.newest_patch((1, cmin + draw(st.integers(-4, 1))))
        nodes.append(NodeFacts(f"w-{i + 1}", "worker", kubelet=kubelet, kubeadm=kubelet))
    target = R.newest_patch((1, cmin + draw(st.integers(1, 3))))
    assert target is not None
    return Facts(ClusterFacts("wide", cluster), tuple(nodes)), target


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wide_clusters(), st.booleans())
def test_path_check_is_the_full_check_on_wide_clusters(
    item: tuple[Facts, KubeVersion], force: bool
) -> None:
    f, target = item
    _same_as_reference(f, target, "auto", replace(OPTS, force=force))


def _cluster(workers: int, kubelet: str = "v1.27.8") -> Facts:
    v = V("v1.27.8")
    cps = tuple(cp(f"cp-{i}", str(v)) for i in (1, 2, 3))
    ws = tuple(
        NodeFacts(f"w-{i}", "worker", kubelet=V(kubelet), kubeadm=V(kubelet))
        for i in range(1, workers + 1)
    )
    return Facts(ClusterFacts("c", v), cps + ws)


@pytest.mark.parametrize("workers", [10, 100, 400])
def test_the_skew_policy_reads_each_kubelet_a_bounded_number_of_times(
    workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catch-up hop and two minors, per-hop: the kubelets the skew checks read along the
    whole path grow linearly with the workers (the full check read every kubelet at every
    event: 1.3 million reads at 400 workers, against about 12,000 now)."""
    read = [0]

    def counting(state: Any) -> list[Finding]:
        read[0] += len(state.kubelets)
        return skew_findings(state)

    monkeypatch.setattr(PATH, "skew_findings", counting)
    f = _cluster(workers, kubelet="v1.26.11")
    p = plan_path(f, V("v1.29.0"), R, OPTS, "per-hop")
    assert len(p.hops) == 3
    assert read[0] <= 40 * (workers + 3), read[0]  # about 30 a node; was about 3 hops x n


# --------------------------------------------------------------------------- node lookup


def test_facts_node_finds_by_name_first_of_a_repeated_one_and_refuses_unknown() -> None:
    a, b = NodeFacts("w-1", "worker"), NodeFacts("w-1", "control-plane")
    f = Facts(ClusterFacts("c", V("v1.27.8")), (NodeFacts("cp-1", "control-plane"), a, b))
    assert f.node("w-1") is a
    assert f.node("cp-1").role == "control-plane"
    assert f.has_node("w-1") and not f.has_node("w-2")
    with pytest.raises(KeyError, match="w-2"):
        f.node("w-2")
    assert f == Facts(f.cluster, f.nodes)  # the index is no field: equality as before
    assert replace(f, nodes=(b,)).node("w-1") is b  # a changed copy has its own index


# --------------------------------------------------------------------------- brief


def _reference_node_list(names: list[str], entries: list[PlanEntry]) -> str:
    every = list(dict.fromkeys(e.node for e in entries))
    workers = [n for n in every if any(e.node == n and e.role == "worker" for e in entries)]
    cps = [n for n in every if n not in workers]
    chosen = set(names)
    if len(names) > 1 and chosen == set(every):
        return f"all {len(every)} nodes"
    if len(names) > 1 and chosen == set(workers):
        return f"all {len(workers)} workers"
    if len(names) > 1 and chosen == set(cps):
        return f"all {len(cps)} control-plane nodes"
    if len(names) <= 6:
        return ", ".join(names)
    return f"{', '.join(names[:5])} and {len(names) - 5} more ({len(names)} nodes)"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([f"n-{i}" for i in range(12)]), st.booleans()),
        min_size=1,
        max_size=30,
    ),
    st.data(),
)
def test_node_list_names_the_same_groups(visits: list[tuple[str, bool]], data: Any) -> None:
    entries = [
        PlanEntry(n, "worker" if w else "control-plane", "worker", "v1.28.4", ()) for n, w in visits
    ]
    every = list(dict.fromkeys(n for n, _ in visits))
    names = data.draw(st.lists(st.sampled_from(every), unique=True))
    if data.draw(st.booleans()):  # also exactly a group
        workers = {e.node for e in entries if e.role == "worker"}
        names = data.draw(st.sampled_from([every, [n for n in every if n in workers]]))
    plan = SimpleNamespace(entries=entries)
    assert _node_list(names, plan) == _reference_node_list(names, entries)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- templates

_PLACEHOLDER = re.compile(r"\{\{|\{([a-z][a-z0-9_]*)\}")


def _reference_render(template: str, values: dict[str, TemplateValue], quote: bool) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name is None:
            return "{"
        value = values[name]
        if isinstance(value, Fragment):
            return value.text if quote else value.display
        return shlex.quote(value) if quote else value

    return _PLACEHOLDER.sub(sub, template)


_VALUES: dict[str, TemplateValue] = {
    "node": "w-1",
    "version": "1.28.4",
    "cluster": "it's a cluster",
    "pkg_resolve": Fragment("pkgver=$(x) && ", ""),
    "pkg_version": Fragment('"$pkgver"', "1.28.4-*"),
    "minor": "",
}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from([f"{{{k}}}" for k in _VALUES] + ["{{", "}", "{", "$", "{{node}}"]),
            st.text(alphabet="ab {}$'\"\\\n", max_size=6),
        ),
        max_size=12,
    ),
    st.booleans(),
)
def test_render_template_is_the_regex_substitution(pieces: list[str], quote: bool) -> None:
    template = "".join(pieces)
    try:
        expected = _reference_render(template, _VALUES, quote)
    except KeyError as e:
        with pytest.raises(KeyError, match=str(e)):
            render_template(template, _VALUES, quote=quote)
        return
    assert render_template(template, _VALUES, quote=quote) == expected


# --------------------------------------------------------------------------- JSON text


class _Kind(StrEnum):
    A = "a\u00e9"


class _Num(IntEnum):
    ONE = 1


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),  # any code point: control characters, non-ASCII, surrogates
    st.sampled_from([_Kind.A, _Num.ONE]),
)
_keys = st.one_of(
    st.text(max_size=5),
    st.integers(-5, 5),
    st.floats(allow_nan=False),
    st.sampled_from([True, False, None, _Kind.A]),
)
_docs = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(_keys, inner, max_size=4),
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(_docs, st.sampled_from([2, 0, 4]))
def test_json_text_is_json_dumps_with_indent(doc: Any, indent: int) -> None:
    assert jsontext.dumps(doc, indent) == json.dumps(doc, indent=indent)


def test_json_text_comes_in_pieces_and_refuses_what_json_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doc = {"nodes": [{"name": f"w-{i}", "steps": [1, 2.5, None, True]} for i in range(50)]}
    monkeypatch.setattr(jsontext, "FLUSH_PIECES", 16)
    pieces: list[str] = []
    jsontext.write_json(doc, pieces.append)
    assert len(pieces) > 10 and "".join(pieces) == json.dumps(doc, indent=2)
    with pytest.raises(TypeError, match="set is not JSON serializable"):
        jsontext.dumps({"a": {1}})
    with pytest.raises(TypeError, match="keys must be"):
        jsontext.dumps({(1, 2): 3})
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular"):
        jsontext.dumps(loop)


def test_plan_json_is_the_golden_plan_json() -> None:
    from golden_check import check_golden
    from test_render import plan

    doc = plan("one-cp-two-workers.json", "v1.28.4").to_dict()
    check_golden("plan-one-cp-two-workers-apt.json", jsontext.dumps(doc) + "\n")
