"""KubeVersion: the accepted shapes, the refused ones, ordering and minor arithmetic."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from upgrader.core.versions import KubeVersion, VersionError, parse_version

V = KubeVersion.parse


@pytest.mark.parametrize(
    ("text", "fields", "shown"),
    [
        ("v1.28.4", (1, 28, 4, None, None, None), "v1.28.4"),
        ("1.28.4", (1, 28, 4, None, None, None), "v1.28.4"),
        ("v1.29.0-rc.1", (1, 29, 0, "rc", 1, None), "v1.29.0-rc.1"),
        ("v1.29.0-beta.2", (1, 29, 0, "beta", 2, None), "v1.29.0-beta.2"),
        ("v1.30.0-alpha.0", (1, 30, 0, "alpha", 0, None), "v1.30.0-alpha.0"),
        ("v1.28.4+build", (1, 28, 4, None, None, "build"), "v1.28.4"),
        ("v1.29.0-rc.1+abc.12-x", (1, 29, 0, "rc", 1, "abc.12-x"), "v1.29.0-rc.1"),
        (" v1.28.4\n", (1, 28, 4, None, None, None), "v1.28.4"),  # `kubeadm version` output
        ("v0.0.0", (0, 0, 0, None, None, None), "v0.0.0"),
        ("v1.28.10", (1, 28, 10, None, None, None), "v1.28.10"),
    ],
)
def test_parse_accepts(text: str, fields: tuple[object, ...], shown: str) -> None:
    v = V(text)
    assert (v.major, v.minor, v.patch, v.pre, v.pre_num, v.build) == fields
    assert str(v) == shown
    assert parse_version(text) == v


@pytest.mark.parametrize(
    "text",
    [
        "1.28",  # packaging accepts it; we insist on MAJOR.MINOR.PATCH
        "v1.28",
        "1.28.4.5",  # packaging accepts it too
        "v1.28.04",  # leading zero: refused (Kubernetes never publishes one; ParseSemantic refuses)
        "v01.28.4",
        "v1.028.4",
        "v1.28.4-rc.01",
        "latest",
        "stable-1.28",
        "",
        "   ",
        "V1.28.4",
        "vv1.28.4",
        "v1.28.4-rc1",
        "v1.28.4-gamma.1",
        "v1.28.4-rc",
        "v1.28.4+",
        "v1.28.4+a..b",
        "v1.28.4 extra",
        "v1.28.4\nv1.29.0",
        "v-1.28.4",
        "v1.2\u0668.4",  # an Arabic-Indic digit: int() would take it, we do not
        "\uff11.28.4",  # a fullwidth digit
    ],
)
def test_parse_refuses(text: str) -> None:
    with pytest.raises(VersionError) as e:
        V(text)
    assert "\n" not in str(e.value)  # one line: repr() escapes the input
    assert "version" in str(e.value)


@pytest.mark.parametrize("value", [None, 1.28, 128, b"v1.28.4"])
def test_parse_refuses_non_strings(value: object) -> None:
    with pytest.raises(VersionError, match="string"):
        KubeVersion.parse(value)  # type: ignore[arg-type]


def test_version_error_is_a_value_error() -> None:
    assert issubclass(VersionError, ValueError)


@pytest.mark.parametrize(
    "ascending",
    [
        [
            "v1.28.9",
            "v1.28.10",
            "v1.29.0-alpha.1",
            "v1.29.0-alpha.2",
            "v1.29.0-beta.0",
            "v1.29.0-rc.1",
            "v1.29.0-rc.2",
            "v1.29.0-rc.10",
            "v1.29.0",
            "v1.29.1",
            "v1.30.0",
            "v2.0.0",
        ]
    ],
)
def test_ordering(ascending: list[str]) -> None:
    vs = [V(s) for s in ascending]
    assert sorted(reversed(vs)) == vs
    for a, b in itertools.pairwise(vs):
        assert a < b and b > a and a <= b and a != b


def test_rc_is_below_the_final_release() -> None:
    assert V("v1.29.0-rc.1") < V("v1.29.0")
    assert V("v1.29.0-rc.1") > V("v1.28.15")


def test_build_metadata_is_ignored_in_comparison() -> None:
    a, b, c = V("v1.28.4+a"), V("v1.28.4+b"), V("v1.28.4")
    assert a == b == c
    assert hash(a) == hash(b) == hash(c)
    assert not a < b and not b < a
    assert len({a, b, c}) == 1
    assert a.build == "a"  # kept for display


def test_comparison_with_other_types() -> None:
    text: object = "v1.28.4"
    assert V("v1.28.4") != text
    with pytest.raises(TypeError):
        _ = V("v1.28.4") < text


def test_minor_helpers() -> None:
    v = V("v1.28.4-rc.1+x")
    assert v.is_prerelease and not V("v1.28.4").is_prerelease
    assert v.minor_key == (1, 28)
    assert v.minor_str == "1.28"
    assert v.plain == "1.28.4-rc.1"
    assert V("v1.28.4+x").plain == "1.28.4"
    assert repr(V("1.28.4")) == "KubeVersion('v1.28.4')"
    assert V("v1.30.1").minor_diff(V("v1.28.9")) == 2
    assert V("v1.28.9").minor_diff(V("v1.30.1")) == -2
    assert V("v2.0.0").minor_diff(V("v1.99.0")) == 1000
    assert V("v1.28.0").same_minor(V("v1.28.9-rc.1"))
    assert not V("v1.28.0").same_minor(V("v1.29.0"))
    assert V("v1.28.4").bump_minor() == V("v1.29.0")
    assert V("v1.28.4").bump_minor(-2) == V("v1.26.0")
    assert KubeVersion.of(1, 28) == V("v1.28.0")
    with pytest.raises(VersionError):
        V("v0.1.0").bump_minor(-2)


@pytest.mark.parametrize(
    "args",
    [
        (1, 28, 4, "rc", None),
        (1, 28, 4, None, 1),
        (1, 28, 4, "gamma", 1),
        (1, -1, 4, None, None),
        (1, 28, -4, None, None),
        (1, 28, 4, "rc", -1),
    ],
)
def test_direct_construction_is_validated(args: tuple[object, ...]) -> None:
    with pytest.raises(VersionError):
        KubeVersion(*args)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- properties

nums = st.integers(min_value=0, max_value=300)
pres = st.one_of(st.none(), st.tuples(st.sampled_from(["alpha", "beta", "rc"]), nums))
builds = st.one_of(st.none(), st.from_regex(r"[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*", fullmatch=True))


@st.composite
def version_texts(draw: st.DrawFn) -> tuple[str, tuple[int, int, int, int, int]]:
    major, minor, patch = draw(nums), draw(nums), draw(nums)
    pre = draw(pres)
    text = f"{'v' if draw(st.booleans()) else ''}{major}.{minor}.{patch}"
    rank = (3, 0)
    if pre is not None:
        text += f"-{pre[0]}.{pre[1]}"
        rank = ({"alpha": 0, "beta": 1, "rc": 2}[pre[0]], pre[1])
    build = draw(builds)
    if build is not None:
        text += f"+{build}"
    return text, (major, minor, patch, *rank)


@given(version_texts())
def test_parse_round_trips(item: tuple[str, tuple[int, ...]]) -> None:
    text, _ = item
    v = V(text)
    assert V(str(v)) == v
    assert V("v" + v.plain) == v


@given(version_texts(), version_texts())
def test_order_matches_the_numeric_key(
    a: tuple[str, tuple[int, ...]], b: tuple[str, tuple[int, ...]]
) -> None:
    va, vb = V(a[0]), V(b[0])
    assert (va < vb) == (a[1] < b[1])
    assert (va == vb) == (a[1] == b[1])
