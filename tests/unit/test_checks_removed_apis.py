"""Removed APIs: the shipped table, the deprecated-API metric and last-applied annotations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from upgrader.core.checks.removed_apis import (
    AppliedObject,
    applied_as,
    check_removed_apis,
    hop_for,
    load_removed_apis,
    parse_deprecated_api_metric,
    removed_between,
    scan_targets,
)
from upgrader.core.model import Severity
from upgrader.core.versions import KubeVersion
from upgrader.errors import ConfigError

V = KubeVersion.parse
TABLE = load_removed_apis()

# As kube-apiserver v1.24 exposes it (label names sorted, HELP/TYPE lines first).
METRICS = (Path(__file__).parents[1] / "data" / "metrics" / "deprecated-apis.txt").read_text()


def test_table_matches_the_guide_on_known_rows() -> None:
    rows = {(r.group, r.version, r.kind): r for r in TABLE}
    assert rows[("policy", "v1beta1", "PodDisruptionBudget")].removed_in == (1, 25)
    assert rows[("policy", "v1beta1", "PodDisruptionBudget")].replacement == "policy/v1"
    assert rows[("policy", "v1beta1", "PodSecurityPolicy")].replacement is None
    assert rows[("flowcontrol.apiserver.k8s.io", "v1beta3", "FlowSchema")].removed_in == (1, 32)
    assert rows[("flowcontrol.apiserver.k8s.io", "v1beta2", "FlowSchema")].removed_in == (1, 29)
    assert rows[("storage.k8s.io", "v1beta1", "CSIStorageCapacity")].removed_in == (1, 27)
    assert rows[("autoscaling", "v2beta2", "HorizontalPodAutoscaler")].removed_in == (1, 26)
    assert rows[("extensions", "v1beta1", "Ingress")].removed_in == (1, 22)
    assert rows[("apps", "v1beta2", "Deployment")].removed_in == (1, 16)
    assert len(rows) == len(TABLE)  # one entry per group/version/kind


def test_removed_between_and_hops() -> None:
    got = {(r.api_version, r.kind) for r in removed_between(TABLE, V("v1.24.17"), V("v1.26.1"))}
    assert ("policy/v1beta1", "PodDisruptionBudget") in got
    assert ("autoscaling/v2beta2", "HorizontalPodAutoscaler") in got
    assert ("flowcontrol.apiserver.k8s.io/v1beta3", "FlowSchema") not in got
    assert removed_between(TABLE, V("v1.27.8"), V("v1.28.4")) == []
    assert hop_for((1, 26), [V("v1.25.16"), V("v1.26.1")]) == V("v1.26.1")
    assert hop_for((1, 30), [V("v1.25.16")]) is None
    assert ("policy", "poddisruptionbudgets") in scan_targets(TABLE, V("v1.24.0"), V("v1.25.0"))
    assert scan_targets(TABLE, V("v1.21.0"), V("v1.22.0"))[0][0] != "extensions"


def test_metric_parsing() -> None:
    got = parse_deprecated_api_metric(METRICS)
    assert [(r.api_version, r.resource, r.removed_release) for r in got] == [
        ("policy/v1beta1", "poddisruptionbudgets", "1.25"),
        ("flowcontrol.apiserver.k8s.io/v1beta1", "flowschemas", "1.26"),
        ("autoscaling/v1", "horizontalpodautoscalers", ""),
    ]
    assert parse_deprecated_api_metric("") == []


def test_metric_hits_within_the_hops_are_blockers() -> None:
    found = check_removed_apis(
        TABLE,
        V("v1.24.17"),
        [V("v1.25.16")],
        requests=parse_deprecated_api_metric(METRICS),
        objects=None,
    )
    assert [(f.code, f.severity) for f in found] == [("REMOVED_API_REQUESTED", Severity.BLOCKER)]
    assert "policy/v1beta1 poddisruptionbudgets" in found[0].message
    assert "v1.25.16" in found[0].message and "1.25" in found[0].message
    assert "policy/v1" in (found[0].fix or "")
    two_hops = check_removed_apis(
        TABLE,
        V("v1.24.17"),
        [V("v1.25.16"), V("v1.26.15")],
        requests=parse_deprecated_api_metric(METRICS),
        objects=None,
    )
    assert len(two_hops) == 2 and "v1.26.15" in two_hops[1].message


def _applied(api_version: str, kind: str) -> str:
    return json.dumps({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}})


def test_last_applied_annotations() -> None:
    objects = [
        AppliedObject(
            "PodDisruptionBudget",
            "default",
            "old",
            _applied("policy/v1beta1", "PodDisruptionBudget"),
        ),
        AppliedObject(
            "PodDisruptionBudget", "default", "new", _applied("policy/v1", "PodDisruptionBudget")
        ),
        AppliedObject("PodDisruptionBudget", "default", "none", None),
        AppliedObject(
            "PodSecurityPolicy", "", "restricted", _applied("policy/v1beta1", "PodSecurityPolicy")
        ),
    ]
    found = check_removed_apis(
        TABLE, V("v1.24.17"), [V("v1.25.16")], requests=None, objects=objects
    )
    assert [f.code for f in found] == ["REMOVED_API_APPLIED", "REMOVED_API_APPLIED"]
    assert "PodDisruptionBudget default/old" in found[0].message
    assert 'group "policy", version v1beta1' in found[0].message
    assert "PodSecurityPolicy restricted" in found[1].message
    assert "no replacement" in (found[1].fix or "")
    assert applied_as("not json") is None and applied_as('{"kind": "X"}') is None


def test_unchecked_only_when_something_is_removed() -> None:
    why = ("the metric (403 Forbidden)",)

    def check(current: str, hops: list[str]) -> list[tuple[str, Severity]]:
        found = check_removed_apis(
            TABLE, V(current), [V(h) for h in hops], requests=None, objects=None, unchecked=why
        )
        return [(f.code, f.severity) for f in found]

    assert check("v1.24.17", ["v1.25.16"]) == [("REMOVED_API_UNCHECKED", Severity.WARNING)]
    assert check("v1.27.8", ["v1.28.4"]) == []
    assert check("v1.27.8", []) == []


def test_refreshed_table_file(tmp_path: Path) -> None:
    p = tmp_path / "removed.json"
    p.write_text(
        json.dumps(
            {
                "removals": [
                    {
                        "removed_in": "1.40",
                        "group": "x.io",
                        "version": "v1beta1",
                        "kind": "Thing",
                        "resource": "things",
                        "replacement": "x.io/v1",
                    }
                ]
            }
        )
    )
    (row,) = load_removed_apis(p)
    assert row.removed_in == (1, 40) and row.api_version == "x.io/v1beta1"
    p.write_text(
        json.dumps(
            {
                "removals": [
                    {
                        "removed_in": "soon",
                        "group": "",
                        "version": "v1",
                        "kind": "K",
                        "resource": "ks",
                    }
                ]
            }
        )
    )
    with pytest.raises(ConfigError, match=r"removals\[0\].removed_in"):
        load_removed_apis(p)
    with pytest.raises(ConfigError, match="cannot read"):
        load_removed_apis(tmp_path / "missing.json")
