"""docs/LAB-SPEC.md documents every key of the lab spec, and its examples are valid specs.

Keys come from the pydantic models of :mod:`upgrader_lab.spec` (walked from ``LabSpec``
through every nested model) and from the keys the API server reads out of ``spec.json``
(:mod:`upgrader_lab.apiserver.spec`, :mod:`upgrader_lab.apiserver.metrics`), so a new key
without a line in the doc fails here. Every ``yaml`` block of the doc must parse with
:func:`upgrader_lab.spec.parse_spec`, resolve, and be accepted by the API server's reader."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from upgrader_lab import spec as labspec
from upgrader_lab.apiserver import metrics
from upgrader_lab.apiserver import spec as apispec

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "LAB-SPEC.md"


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside a field annotation (lists, unions, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        out += _models(arg)
    return out


def model_keys() -> dict[str, set[str]]:
    """Model name -> its field names, for LabSpec and every model reachable from it."""
    seen: dict[str, set[str]] = {}
    todo: list[type[BaseModel]] = [labspec.LabSpec]
    while todo:
        model = todo.pop()
        if model.__name__ in seen:
            continue
        seen[model.__name__] = set()
        for name, info in model.model_fields.items():
            seen[model.__name__].add(info.alias or name)
            todo += _models(info.annotation)
    return seen


def api_reader_keys() -> set[str]:
    """String keys the API server's spec reader looks up (``d.get("k"``, ``ctx.x(d, "k"``)."""
    text = Path(apispec.__file__).read_text()
    keys = set(re.findall(r"\.get\(\s*\"([A-Za-z_]+)\"", text))
    keys |= set(re.findall(r"ctx\.\w+\(\s*\w+,\s*\"([A-Za-z_]+)\"", text))
    return keys | {metrics.SPEC_KEY}


def documented() -> set[str]:
    return set(re.findall(r"`([A-Za-z_]+)`", DOC.read_text()))


def examples() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)


def test_the_walk_finds_the_nested_models() -> None:
    keys = model_keys()
    assert {"LabSpec", "NodeSpec", "KubeletConfig", "WorkloadSpec", "PDBSpec", "Delays"} <= set(
        keys
    )
    assert {"NodeFault", "ApiFault", "ApiFaultBody", "Rbac", "RbacRule"} <= set(keys)
    assert {"cgroup", "labels", "runtime"} <= keys["NodeSpec"]


def test_every_model_key_is_documented() -> None:
    doc = documented()
    missing = sorted(
        f"{model}.{key}" for model, keys in model_keys().items() for key in keys if key not in doc
    )
    assert missing == [], f"docs/LAB-SPEC.md lacks: {', '.join(missing)}"


def test_every_key_the_api_server_reads_is_documented() -> None:
    keys = api_reader_keys()
    assert {"runtime", "labels", "retry_after", "image"} <= keys  # the regexes still work
    missing = sorted(k for k in keys if k not in documented())
    # pod_startup is an API-server-only knob (not a key of the YAML spec: Delays forbids it)
    # and the aliases below spell documented keys differently
    missing = [
        k
        for k in missing
        if k not in {"pod_startup", "min_available", "max_unavailable", "resource_names"}
        and k not in {"groups", "apiGroups"}
    ]
    assert missing == [], f"docs/LAB-SPEC.md lacks: {', '.join(missing)}"


def test_the_doc_has_an_example_of_every_section() -> None:
    blocks = examples()
    assert len(blocks) >= 8
    text = "\n".join(blocks)
    for key in model_keys()["NodeSpec"] | model_keys()["NodeFault"] | model_keys()["Delays"]:
        assert re.search(rf"\b{key}\b", text), f"no example sets {key}"


@pytest.mark.parametrize("block", examples(), ids=lambda b: b.splitlines()[0][:40])
def test_each_example_is_a_valid_spec(block: str) -> None:
    data = yaml.safe_load(block)
    spec = labspec.parse_spec(data, "LAB-SPEC.md")
    resolved = labspec.resolve(spec, Path("/labs/doc"), lambda _: False)
    api = apispec.parse_spec(resolved, "spec.json")
    assert [n.name for n in api.nodes] == [n.name for n in spec.nodes]
