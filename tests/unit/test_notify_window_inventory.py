"""The inventory's ``notify:`` / ``window:`` / ``window_tz:`` keys: merged with apply's
flags, checked at the edge, and left out of the run's fingerprint and inputs (a new window
never blocks a resume)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from upgrader.apply import ApplyRequest, _windows_and_hooks, run_fingerprint, run_inputs
from upgrader.core.versions import KubeVersion
from upgrader.errors import ConfigError
from upgrader.inventory import load_inventory
from upgrader.inventory.model import Inventory
from upgrader.planning import PlanRequest


def base(**extra: Any) -> dict[str, Any]:
    return {
        "cluster": {"name": "demo"},
        "ssh": {"user": "root", "use_ssh_config": False},
        "nodes": [{"name": "cp-1", "address": "10.0.0.5", "role": "control-plane"}],
        **extra,
    }


def load(tmp_path: Path, data: dict[str, Any], name: str = "inv.yaml") -> Inventory:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_inventory(path, ssh_config_path=tmp_path / "no-ssh-config")


def request(**kw: Any) -> ApplyRequest:
    return ApplyRequest(
        inventory=Path("inv.yaml"), plan=PlanRequest(target=KubeVersion.parse("v1.28.4")), **kw
    )


def test_inventory_keys_merge_with_the_flags(tmp_path: Path) -> None:
    inv = load(
        tmp_path,
        base(
            notify=["https://hooks.example/a"],
            window=["Sat 01:00-05:00"],
            window_tz="Europe/Berlin",
        ),
    )
    windows, urls = _windows_and_hooks(
        request(notify=("http://127.0.0.1:9/b",), windows=("Sun 02:00-03:00 UTC",)), inv
    )
    assert urls == ["https://hooks.example/a", "http://127.0.0.1:9/b"]
    assert [(w.text, w.zone) for w in windows] == [
        ("Sat 01:00-05:00", "Europe/Berlin"),
        ("Sun 02:00-03:00 UTC", "UTC"),
    ]
    # --window-tz wins over the inventory's zone
    windows, _ = _windows_and_hooks(request(window_tz="UTC"), inv)
    assert windows[0].zone == "UTC"


def test_bad_inventory_url_named_without_its_token(tmp_path: Path) -> None:
    inv = load(tmp_path, base(notify=["http://hooks.example/x?token=abc"]))
    with pytest.raises(ConfigError) as e:
        _windows_and_hooks(request(), inv)
    assert str(e.value).startswith("inventory notify http://hooks.example/x?…: plain http")
    assert "abc" not in str(e.value)


def test_not_part_of_the_fingerprint_or_inputs(tmp_path: Path) -> None:
    plain = load(tmp_path, base(), "a.yaml")
    with_keys = load(
        tmp_path, base(notify=["https://hooks.example/a"], window=["daily 00:00-24:00"]), "b.yaml"
    )
    req = PlanRequest(target=KubeVersion.parse("v1.28.4"))
    assert plain.fingerprint() == with_keys.fingerprint()
    assert run_fingerprint(plain, req) == run_fingerprint(with_keys, req)
    assert run_inputs(plain, req) == run_inputs(with_keys, req)
