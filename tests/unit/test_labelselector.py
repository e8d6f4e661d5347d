"""The label selector parser and matcher (upgrader.core.labelselector), operator by
operator, and its one-line errors (apimachinery's labels.Parse semantics)."""

from __future__ import annotations

import pytest

from upgrader.core.labelselector import parse
from upgrader.errors import ConfigError

A = {"zone": "a", "tier": "web", "rank": "3"}
B = {"zone": "b", "spot": "true", "rank": "10"}
NONE: dict[str, str] = {}


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
def test_each_operator_matches_as_kubectl_does(text: str, a: bool, b: bool, none: bool) -> None:
    s = parse(text)
    assert (s.matches(A), s.matches(B), s.matches(NONE)) == (a, b, none)


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
    with pytest.raises(ConfigError) as info:
        parse(text, "--selector")
    message = str(info.value)
    assert message.startswith("--selector: ") and "\n" not in message
    assert problem in message
