"""Turning what is wrong with an inventory into one line, and the cross-field rules.

Owns the checks that span fields or nodes (duplicate names/addresses, a control-plane node
exists, repository settings agree); the one-line format ``<file>: <field path>: <problem>``
and the rendering of a pydantic ``ValidationError`` into it are the shared ones of
:mod:`upgrader.core.problems`, re-exported here.

Must not: read files, or echo the value of anything that may hold a secret.
"""

from __future__ import annotations

from collections.abc import Sequence

from upgrader.core.problems import (
    Loc,
    LocRenderer,
    Problem,
    first_problem,
    one_line,
    problem_from_error,
    render_loc,
)
from upgrader.inventory.schema import InventoryDocument

# The renderer is shared with every other file format (upgrader.core.problems); these names
# stay importable from here for the inventory's modules.
__all__ = [
    "Loc",
    "LocRenderer",
    "Problem",
    "check_document",
    "first_problem",
    "one_line",
    "problem_from_error",
    "render_loc",
]


# --------------------------------------------------------------------------- cross-field rules


def _endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def check_document(doc: InventoryDocument) -> Sequence[Problem]:
    """Rules spanning several fields, in file order. Empty when the document is sound."""
    problems: list[Problem] = []
    pk = doc.packages
    if pk.mirror is not None and pk.repository != "pkgs.k8s.io":
        problems.append(
            Problem(
                ("packages", "mirror"),
                f"only used with repository: pkgs.k8s.io (repository is {pk.repository}; "
                "with custom, url_template already names the whole URL)",
            )
        )
    if pk.repository == "custom" and pk.url_template is None:
        problems.append(Problem(("packages", "url_template"), "required when repository is custom"))
    if pk.repository != "custom" and pk.url_template is not None:
        problems.append(
            Problem(
                ("packages", "url_template"),
                f"only used with repository: custom (repository is {pk.repository})",
            )
        )
    names: dict[str, int] = {}
    endpoints: dict[tuple[str, int], int] = {}
    for i, node in enumerate(doc.nodes):
        if node.name in names:
            problems.append(
                Problem(
                    ("nodes", i, "name"),
                    f"duplicate node name {node.name!r}",
                    ("nodes", names[node.name]),
                )
            )
        names.setdefault(node.name, i)
        port = node.port if node.port is not None else doc.ssh.port
        key = (node.address.lower(), port)
        if key in endpoints:
            problems.append(
                Problem(
                    ("nodes", i, "address"),
                    f"duplicate address {_endpoint(node.address, port)}",
                    ("nodes", endpoints[key]),
                )
            )
        endpoints.setdefault(key, i)
    if not any(n.is_control_plane for n in doc.nodes):
        problems.append(Problem(("nodes",), "no control-plane node"))
    return problems
