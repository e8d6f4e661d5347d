"""``--to`` forms: exact versions unchanged, ``vX.Y`` and ``latest`` resolved against the
release data, unknown or malformed targets named with the nearest valid ones."""

from __future__ import annotations

from datetime import date

import pytest

from upgrader.core.releases import MinorRelease, ReleaseData, release_data_from
from upgrader.core.target_spec import latest, resolve
from upgrader.core.versions import KubeVersion, VersionError

V = KubeVersion.parse


def _minor(minor: int, released: date, eol: date, *patches: str) -> MinorRelease:
    vs = tuple(V(p) for p in patches)
    return MinorRelease((1, minor), released, eol, max(vs), vs)


DATA: ReleaseData = release_data_from(
    [
        _minor(28, date(2023, 8, 15), date(2024, 10, 28), "v1.28.0", "v1.28.4", "v1.28.15"),
        _minor(29, date(2023, 12, 13), date(2025, 2, 28), "v1.29.0", "v1.29.10"),
        _minor(30, date(2024, 4, 17), date(2025, 6, 28), "v1.30.0", "v1.30.6"),
        _minor(31, date(2024, 8, 13), date(2025, 10, 28), "v1.31.2"),
        # released after TODAY: not "latest" yet
        _minor(32, date(2025, 12, 11), date(2027, 2, 28), "v1.32.0"),
    ],
    generated=date(2025, 1, 1),
)
TODAY = date(2025, 1, 10)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("v1.28.4", "v1.28.4"),
        ("1.28.4", "v1.28.4"),
        (" v1.29.0-rc.1 ", "v1.29.0-rc.1"),
        ("v1.40.0", "v1.40.0"),  # exact versions are not second-guessed here
        ("v1.29", "v1.29.10"),
        ("1.29", "v1.29.10"),
        ("v1.29.x", "v1.29.10"),
        ("1.28.X", "v1.28.15"),
        ("1.30.*", "v1.30.6"),
        ("latest", "v1.31.2"),
        ("LATEST", "v1.31.2"),
    ],
)
def test_forms_resolve(given: str, expected: str) -> None:
    assert resolve(given, DATA, TODAY).version == V(expected)


def test_shorthands_say_what_they_mean_and_exact_versions_say_nothing() -> None:
    assert resolve("v1.29", DATA, TODAY).describe() == (
        "--to v1.29 means v1.29.10 (the newest patch the release data knows)"
    )
    assert resolve("latest", DATA, TODAY).describe() == (
        "--to latest means v1.31.2 (the newest patch of the newest supported minor)"
    )
    assert not resolve("1.28.4", DATA, TODAY).expanded
    assert resolve("v1.28.4", DATA, TODAY).describe() == ""


def test_latest_follows_the_support_window() -> None:
    # on 2026-01-01 only 1.32 is live (1.31 ended 2025-10-28)
    assert latest(DATA, date(2026, 1, 1)) == V("v1.32.0")
    # when nothing is supported any more: the newest minor the data has
    assert latest(DATA, date(2030, 1, 1)) == V("v1.32.0")


def test_an_unknown_minor_names_the_nearest_and_latest() -> None:
    with pytest.raises(VersionError) as e:
        resolve("v1.40", DATA, TODAY)
    msg = str(e.value)
    assert "has no v1.40 series" in msg and "knows v1.28 to v1.32" in msg
    assert "the nearest is v1.32 (= v1.32.0)" in msg and "latest is v1.31.2" in msg
    with pytest.raises(VersionError, match=r"nearest is v1\.28 \(= v1\.28\.15\)"):
        resolve("1.20", DATA, TODAY)


@pytest.mark.parametrize("given", ["1.28.4.5", "v1", "", "newest", "v1.28.4-gamma.1", "1.x"])
def test_malformed_targets_list_every_form_with_real_examples(given: str) -> None:
    with pytest.raises(VersionError) as e:
        resolve(given, DATA, TODAY)
    msg = str(e.value)
    assert msg.startswith(f"invalid version {given!r}; expected vMAJOR.MINOR.PATCH")
    assert "(e.g. v1.31.2)" in msg and "(v1.31 = v1.31.2)" in msg and "latest (= v1.31.2)" in msg
    assert "\n" not in msg
