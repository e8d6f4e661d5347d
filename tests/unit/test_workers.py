"""``--nodes`` is checked by one rule, against the inventory and against the facts."""

from __future__ import annotations

import pytest

from upgrader.core.workers import check_node_names
from upgrader.errors import ConfigError


def test_node_names_one_rule_for_the_inventory_and_the_facts() -> None:
    roles = {"cp-1": True, "w-1": False, "w-2": False}
    check_node_names(("w-2", "w-1"), roles, "the facts")  # workers: fine
    with pytest.raises(ConfigError) as ei:
        check_node_names(("w-9",), roles, "the inventory", known=True)
    assert (
        str(ei.value) == "--nodes: unknown node 'w-9' (not in the inventory; known: cp-1, w-1, w-2)"
    )
    with pytest.raises(ConfigError) as ei:
        check_node_names(("w-1", "cp-1"), roles, "the facts")
    assert str(ei.value) == (
        "--nodes: cp-1 is a control-plane node; --nodes limits a run to workers"
    )
    with pytest.raises(ConfigError, match="no node names given"):
        check_node_names((), roles, "the facts")
