"""The label selector of ``--selector`` (upgrader/core/labelselector.py): every operator of
apimachinery's ``labels.Parse`` (``=``, ``==``, ``!=``, ``in``, ``notin``, existence, ``!``,
``>``/``<``), what each matches on a Node's labels, the canonical text, and a one-line
:class:`ConfigError` naming the flag for every malformed selector."""

from __future__ import annotations

import pytest
from refusal import refusal

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
    msg = refusal(parse, text)
    assert msg.startswith("--selector: ") and problem in msg


def test_the_source_names_the_inventory_field() -> None:
    with pytest.raises(ConfigError, match=r"^workers\.selector: .*trailing ','"):
        parse("zone=a,", "workers.selector")


# --------------------------------------------------------------------------- more cases

A2 = {"zone": "a", "tier": "web", "rank": "3"}
B2 = {"zone": "b", "spot": "true", "rank": "10"}


@pytest.mark.parametrize(
    ("text", "a", "b", "none"),
    [
        ("zone=a", True, False, False),
        ("zone==a", True, False, False),
        ("zone!=a", False, True, True),  # absent counts as "not a"
        ("zone in (a,c)", True, False, False),
        ("zone notin (a,c)", False, True, True),  # absent counts as "not in"
        ("spot", False, True, False),
        ("!spot", True, False, True),
        ("rank>5", False, True, False),
        ("rank<5", True, False, False),
        ("zone in (a,b),!spot", True, False, False),  # every requirement holds
        ("  zone = a , tier  ", True, False, False),  # whitespace between tokens
        ("tier=", False, False, False),  # k= selects an empty value
    ],
)
def test_each_operator_on_plain_keys(text: str, a: bool, b: bool, none: bool) -> None:
    s = parse(text)
    assert (s.matches(A2), s.matches(B2), s.matches(NONE)) == (a, b, none)


def test_canonical_text_and_prefixed_keys() -> None:
    s = parse("topology.kubernetes.io/zone in (b, a, a),!node.kubernetes.io/spot,x==1")
    assert str(s) == "topology.kubernetes.io/zone in (b,a),!node.kubernetes.io/spot,x=1"
    assert s.matches({"topology.kubernetes.io/zone": "a", "x": "1"})
    assert not s.matches(
        {"topology.kubernetes.io/zone": "a", "x": "1", "node.kubernetes.io/spot": ""}
    )
    assert parse("tier=").matches({"tier": ""})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty selector"),
        ("   ", "empty selector"),
        ("zone=a,", "trailing ','"),
        (",zone=a", "expected a label key, found ','"),
        ("zone in ()", "empty set of values after 'zone in'"),
        ("zone in a", "must be followed by '(values)'"),
        ("zone in (a b)", "expected ',' or ')'"),
        ("zone in (a", "expected ',' or ')'"),
        ("zone a", "unknown operator 'a' after zone"),
        ("zone=a=b", "expected ',' between requirements"),
        ("!", "'!' must be followed by a label key"),
        ("!zone=a", "expected ',' between requirements"),
        ("zone ~ a", "unknown operator '~' after zone"),
        ("~zone", "invalid label key '~zone'"),
        ("rank>x", "needs an integer"),
        ("zone=a b", "expected ',' between requirements"),
        ("-zone=a", "invalid label key '-zone'"),
        ("Bad_Prefix.io/zone=a", "is not a DNS subdomain"),
        ("/zone", "the prefix before '/' is empty"),
        (f"{'k' * 64}=a", "longer than 63"),
        ("zone=-a", "invalid value '-a' for zone"),
        (f"zone={'v' * 64}", "invalid value"),
    ],
)
def test_malformed_selectors_give_one_line_naming_the_source(text: str, problem: str) -> None:
    message = refusal(parse, text, "--selector")
    assert message.startswith("--selector: ")
    assert problem in message
