"""The label selector of ``--selector`` (upgrader/core/labelselector.py): every operator of
apimachinery's ``labels.Parse`` (``=``, ``==``, ``!=``, ``in``, ``notin``, existence, ``!``,
``>``/``<``), what each matches on a Node's labels, the canonical text, and a one-line
:class:`ConfigError` naming the flag for every malformed selector."""

from __future__ import annotations

import pytest

from upgrader.core.labelselector import parse
from upgrader.errors import ConfigError

ZONE = "topology.kubernetes.io/zone"
A = {ZONE: "a", "tier": "web", "gpu": "", "rank": "5"}
B = {ZONE: "b", "tier": "batch", "rank": "x"}
NONE: dict[str, str] = {}


def matches(text: str) -> list[str]:
    sel = parse(text)
    return [name for name, labels in (("A", A), ("B", B), ("NONE", NONE)) if sel.matches(labels)]


# --------------------------------------------------------------------------- operators


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{ZONE}=a", ["A"]),
        (f"{ZONE}==a", ["A"]),  # '==' is a synonym of '='
        (f"{ZONE}!=a", ["B", "NONE"]),  # '!=' also matches a node without the key
        (f"{ZONE} in (a,b)", ["A", "B"]),
        (f"{ZONE} in (b)", ["B"]),
        (f"{ZONE} notin (a)", ["B", "NONE"]),  # notin also matches without the key
        (f"{ZONE} notin (a, b)", ["NONE"]),
        (ZONE, ["A", "B"]),  # existence
        (f"!{ZONE}", ["NONE"]),  # non-existence
        ("gpu", ["A"]),  # a key with an empty value exists
        ("gpu=", ["A"]),  # 'k=' selects the empty value
        ("tier!=", ["A", "B", "NONE"]),  # no key: "!=" holds
        ("rank>3", ["A"]),  # integer comparison; B's 'x' is no integer
        ("rank<6", ["A"]),
        ("rank<5", []),
    ],
)
def test_every_operator_matches_as_apimachinery_does(text: str, expected: list[str]) -> None:
    assert matches(text) == expected


def test_requirements_are_anded() -> None:
    assert matches(f"{ZONE} in (a,b),tier=web") == ["A"]
    assert matches(f"{ZONE},!gpu") == ["B"]
    assert matches(f"{ZONE}=a,{ZONE}=b") == []


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("zone=a", "zone=a"),
        ("zone==a", "zone=a"),
        (" zone = a , tier != web ", "zone=a,tier!=web"),
        ("zone in ( a , b )", "zone in (a,b)"),
        ("zone notin (b,a,b)", "zone notin (b,a)"),  # duplicates once, order kept
        ("zone,!gpu", "zone,!gpu"),
        ("rank>3,rank<9", "rank>3,rank<9"),
        ("zone in (a,,b)", "zone in (a,,b)"),  # an empty identifier is the empty value
    ],
)
def test_canonical_text(text: str, canonical: str) -> None:
    assert str(parse(text)) == canonical
    assert str(parse(canonical)) == canonical  # the canonical text parses to itself


def test_empty_value_in_a_set() -> None:
    sel = parse("gpu in (,yes)")
    assert sel.matches({"gpu": ""}) and sel.matches({"gpu": "yes"})
    assert not sel.matches({"gpu": "no"}) and not sel.matches({})


def test_prefixed_keys_and_long_names() -> None:
    key = "example.com/" + "n" * 63
    assert parse(f"{key}=v").matches({key: "v"})
    assert parse(f"x={'v' * 63}").matches({"x": "v" * 63})


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty selector"),
        ("   ", "empty selector"),
        (",", "expected a label key"),
        ("zone=a,", "trailing ','"),
        ("zone=a,,tier=b", "expected a label key"),
        ("zone in a", "must be followed by '(values)'"),
        ("zone in (a b)", "expected ',' or ')'"),
        ("zone in (a,b", "expected ',' or ')'"),
        ("zone notin", "must be followed by '(values)'"),
        ("!", "'!' must be followed by a label key"),
        ("!zone=a", "expected ',' between requirements"),
        ("zone=a b", "expected ',' between requirements"),
        ("zone===a", "expected ',' between requirements"),
        ("k=v=w", "expected ',' between requirements"),
        ("zone=(a)", "expected ',' between requirements"),
        ("zone=~a", "invalid value '~a' for zone"),
        ("zone=-a", "invalid value '-a' for zone"),
        (f"zone={'v' * 64}", "at most 63 characters"),
        ("zone in (a,b_)", "invalid value 'b_' for zone"),
        ("-bad=a", "invalid label key '-bad'"),
        ("Zone.Example/x=a", "is not a DNS subdomain"),
        ("a/b/c=d", "is not a DNS subdomain"),
        ("/x=a", "the prefix before '/' is empty"),
        ("example.com/=a", "the name is empty"),
        ("n" * 64, "longer than 63 characters"),
        ("rank>a", "needs an integer"),
        ("rank<", "needs an integer"),
        ("zone ~ a", "unknown operator"),
    ],
)
def test_malformed_selectors_give_one_line_naming_the_flag(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text)
    msg = str(info.value)
    assert msg.startswith("--selector: ") and problem in msg
    assert "\n" not in msg


def test_the_source_names_the_inventory_field() -> None:
    with pytest.raises(ConfigError, match=r"^workers\.selector: .*trailing ','"):
        parse("zone=a,", "workers.selector")
