"""Release data: the packaged table, the loader's validation, the support window."""

from __future__ import annotations

import importlib.util
import json
from datetime import date, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from refusal import refusal

from upgrader.core.releases import (
    MinorRelease,
    ReleaseData,
    load_release_data,
    parse_release_data,
    release_data_from,
)
from upgrader.core.versions import KubeVersion
from upgrader.errors import ConfigError

V = KubeVersion.parse
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def packaged() -> ReleaseData:
    return load_release_data()


# --------------------------------------------------------------------------- packaged data


def test_packaged_data_covers_1_19_to_at_least_1_35(packaged: ReleaseData) -> None:
    keys = sorted(packaged.minors)
    assert keys[0] == (1, 19)
    assert packaged.newest_minor >= (1, 35)
    assert keys == [(1, m) for m in range(19, packaged.newest_minor[1] + 1)]  # no gaps
    assert packaged.source
    assert packaged.generated >= date(2026, 1, 1)


def test_packaged_data_is_consistent(packaged: ReleaseData) -> None:
    prev: MinorRelease | None = None
    for key, rel in packaged.minors.items():
        assert rel.minor == key
        assert rel.released < rel.eol
        assert rel.latest == rel.patches[-1]
        assert rel.patches == tuple(KubeVersion(key[0], key[1], p) for p in range(len(rel.patches)))
        assert not any(p.is_prerelease for p in rel.patches)
        if prev is not None:
            assert prev.released < rel.released
        prev = rel


@pytest.mark.parametrize(
    ("minor", "latest"),
    [((1, 19), "v1.19.16"), ((1, 24), "v1.24.17"), ((1, 28), "v1.28.15"), ((1, 30), "v1.30.14")],
)
def test_known_final_patches(packaged: ReleaseData, minor: tuple[int, int], latest: str) -> None:
    assert packaged.newest_patch(minor) == V(latest)
    assert packaged.newest_patch(V(latest)) == V(latest)  # a version works as the key too


def test_lookups(packaged: ReleaseData) -> None:
    assert packaged.get((1, 18)) is None
    assert packaged.newest_patch((1, 18)) is None
    assert packaged.newest_patch((1, 99)) is None
    rel = packaged.get((1, 30))
    assert rel is not None and rel.name == "1.30"
    assert packaged.oldest_minor == (1, 19)


@pytest.mark.parametrize(
    ("version", "known"),
    [
        ("v1.30.14", True),
        ("v1.30.0", True),
        ("v1.30.15", False),  # newer than the data
        ("v1.30.0-rc.1", False),  # pre-releases are never "known"
        ("v1.18.20", False),  # older than the data
        ("v1.99.0", False),
        ("v1.30.14+build", True),  # build metadata ignored
    ],
)
def test_knows(packaged: ReleaseData, version: str, known: bool) -> None:
    assert packaged.knows(V(version)) is known


# --------------------------------------------------------------------------- support window


def _rel(minor: int, released: date, eol: date, latest: int = 3) -> MinorRelease:
    return MinorRelease(
        minor=(1, minor),
        released=released,
        eol=eol,
        latest=KubeVersion(1, minor, latest),
        patches=tuple(KubeVersion(1, minor, p) for p in range(latest + 1)),
    )


D0 = date(2030, 1, 1)
WINDOW = release_data_from(
    [
        _rel(40, D0 - timedelta(days=500), D0 - timedelta(days=1)),  # ended yesterday
        _rel(41, D0 - timedelta(days=400), D0),  # ends today: still supported
        _rel(42, D0 - timedelta(days=300), D0 + timedelta(days=100)),
        _rel(43, D0 - timedelta(days=100), D0 + timedelta(days=300)),
        _rel(44, D0, D0 + timedelta(days=400)),  # released today
        _rel(45, D0 + timedelta(days=1), D0 + timedelta(days=500)),  # not yet released
    ],
    generated=D0,
)


@pytest.mark.parametrize(
    ("today", "window"),
    [
        (D0, [(1, 42), (1, 43), (1, 44)]),  # newest three of 41..44
        (D0 - timedelta(days=1), [(1, 41), (1, 42), (1, 43)]),  # 44 not released yet
        (D0 + timedelta(days=1), [(1, 43), (1, 44), (1, 45)]),
        (D0 + timedelta(days=450), [(1, 45)]),  # everything else ended
        (D0 + timedelta(days=501), []),
    ],
)
def test_supported_minors(today: date, window: list[tuple[int, int]]) -> None:
    assert WINDOW.supported_minors(today) == window


def test_eol_day_itself_is_inside_the_window() -> None:
    only = release_data_from([_rel(41, D0 - timedelta(days=9), D0)], generated=D0)
    assert only.supported_minors(D0) == [(1, 41)]
    assert only.supported_minors(D0 + timedelta(days=1)) == []
    assert only.is_supported(V("v1.41.2"), D0)
    assert not only.is_supported(V("v1.41.2"), D0 + timedelta(days=1))


def test_packaged_window_on_a_known_day(packaged: ReleaseData) -> None:
    assert packaged.supported_minors(date(2026, 11, 28)) == [(1, 35), (1, 36), (1, 37)]
    assert packaged.supported_minors(date(2025, 1, 15)) == [(1, 30), (1, 31), (1, 32)]


# --------------------------------------------------------------------------- loading files


def _doc(**minor: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "released": "2024-04-17",
        "eol": "2025-06-28",
        "latest": "v1.30.2",
        "patches": ["v1.30.0", "v1.30.1", "v1.30.2"],
    }
    m.update(minor)
    if m["patches"] is None:  # patches=None: leave the field out
        del m["patches"]
    return {"schema": 1, "generated": "2025-01-01", "source": "test", "minors": {"1.30": m}}


def _write(tmp_path: Path, doc: Any) -> Path:
    p = tmp_path / "releases.json"
    p.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return p


def test_load_from_a_path(tmp_path: Path) -> None:
    r = load_release_data(_write(tmp_path, _doc()))
    assert r.newest_patch((1, 30)) == V("v1.30.2")
    assert r.generated == date(2025, 1, 1)
    assert r.origin.endswith("releases.json")


def test_patches_default_to_every_patch_up_to_latest(tmp_path: Path) -> None:
    doc = _doc()
    del doc["minors"]["1.30"]["patches"]
    r = load_release_data(_write(tmp_path, doc))
    assert r.minors[(1, 30)].patches == (V("v1.30.0"), V("v1.30.1"), V("v1.30.2"))


def test_round_trip_through_to_dict(packaged: ReleaseData) -> None:
    again = parse_release_data(packaged.to_dict())
    assert again.minors == packaged.minors
    assert again.generated == packaged.generated


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ("{not json", "invalid JSON"),
        ([], "top level"),
        ({"minors": {}}, "generated"),
        ({**_doc(), "schema": 2}, "schema"),
        ({**_doc(), "generated": "2025-13-01"}, "generated"),
        ({**_doc(), "minors": {}}, "minors"),
        ({**_doc(), "minors": {"1.x": {}}}, "minors.1.x"),
        ({**_doc(), "minors": {"1.30": []}}, "minors.1.30"),
        (_doc(released="someday"), "minors.1.30.released"),
        (_doc(eol="2020-01-01"), "minors.1.30.eol"),
        (_doc(latest="1.30"), "minors.1.30.latest"),
        (_doc(latest="v1.31.0", patches=["v1.31.0"]), "minors.1.30.latest"),
        (_doc(latest="v1.30.0-rc.1", patches=None), "minors.1.30.latest"),
        (_doc(patches=["v1.30.0", "v1.30.1"]), "minors.1.30.latest"),
        (_doc(patches=["v1.30.2", "v1.30.2"]), "minors.1.30.patches"),
        (_doc(patches=["v1.30.1-rc.1", "v1.30.2"]), "minors.1.30.patches[0]"),
        (_doc(patches="v1.30.2"), "minors.1.30.patches"),
        (_doc(patches=[]), "minors.1.30.patches"),
        (_doc(colour="blue"), "colour"),
        ({**_doc(), "minors": {"1.30": {"released": "2024-04-17"}}}, "minors.1.30.eol"),
    ],
)
def test_bad_files_fail_with_one_line_naming_file_and_field(
    tmp_path: Path, doc: Any, field: str
) -> None:
    p = _write(tmp_path, doc)
    msg = refusal(load_release_data, p)
    assert msg.startswith(str(p))
    assert field in msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.json: cannot read"):
        load_release_data(tmp_path / "nope.json")


def test_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "r.json"
    p.write_bytes(b"\xff\xfe{")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_release_data(p)


# --------------------------------------------------------------------------- refresh script


def _refresh_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "refresh_releases", ROOT / "scripts" / "refresh_releases.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_packaged_file_is_in_the_refresh_layout(packaged: ReleaseData) -> None:
    mod = _refresh_module()
    text = (ROOT / "upgrader" / "data" / "releases.json").read_text()
    assert mod.render(packaged.to_dict()) == text


def test_refresh_converts_endoflife_data_offline(tmp_path: Path) -> None:
    """The conversion only (no network): an endoflife.date-shaped file in, our schema out."""
    mod = _refresh_module()
    cycles = [
        {"cycle": "1.38", "releaseDate": "2026-12-16", "eol": "2028-02-28", "latest": "1.38.1"},
        {"cycle": "1.30", "releaseDate": "2024-04-17", "eol": "2025-06-28", "latest": "1.30.14"},
        {"cycle": "1.18", "releaseDate": "2020-03-25", "eol": "2021-06-18", "latest": "1.18.20"},
        {"cycle": "1.39", "releaseDate": "2027-04-01", "eol": False, "latest": "1.39.0"},
    ]
    src = tmp_path / "kubernetes.json"
    src.write_text(json.dumps(cycles))
    out = tmp_path / "releases.json"
    assert mod.main(["--input", str(src), "-o", str(out)]) == 0
    r = load_release_data(out)
    assert r.newest_patch((1, 38)) == V("v1.38.1")
    assert r.knows(V("v1.38.0"))
    assert r.get((1, 18)) is None  # older than we support: dropped
    assert r.get((1, 39)) is None  # no EOL date: skipped
    assert r.get((1, 19)) is not None  # kept from the packaged data


def test_refresh_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mod = _refresh_module()
    src = tmp_path / "kubernetes.json"
    src.write_text(json.dumps([{"cycle": "1.38", "releaseDate": "x", "eol": "y", "latest": "2"}]))
    assert mod.main(["--input", str(src), "-o", str(tmp_path / "out.json")]) == 2
    assert "latest" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()
    assert mod.main(["--url", "http://example.invalid/x", "-o", str(tmp_path / "o.json")]) == 2
