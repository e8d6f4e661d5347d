"""Turning what is wrong with an inventory into one line, and the cross-field rules.

Owns the one-line error format ``<file>: <field path>: <problem>``, the rendering of a
pydantic ``ValidationError`` into it (first error only, ``loc`` as ``nodes[2].role``), and
the checks that span fields or nodes (duplicate names/addresses, a control-plane node
exists, repository settings agree).

Must not: read files, or echo the value of anything that may hold a secret.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from upgrader.errors import ConfigError
from upgrader.inventory.schema import InventoryDocument

Loc = tuple[str | int, ...]
LocRenderer = Callable[[Loc], str]

_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_SECRETISH = ("password", "passphrase", "secret", "token")


def render_loc(loc: Loc) -> str:
    """``("nodes", 2, "role")`` -> ``nodes[2].role``; odd keys are quoted (one line)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENT_RE.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out or "(top level)"


@dataclass(frozen=True)
class Problem:
    """One thing wrong, at ``loc``; ``also`` points at the other half of a conflict."""

    loc: Loc
    message: str
    also: Loc | None = None

    def error(self, source: str, render: LocRenderer = render_loc) -> ConfigError:
        message = self.message
        if self.also is not None:
            message += f" (also {render(self.also)})"
        return ConfigError(one_line(f"{source}: {render(self.loc)}: {message}"))


def one_line(text: str) -> str:
    return " ".join(text.split()) if ("\n" in text or "\r" in text) else text


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, str):
        return f"a string ({_short(value)})"
    return _short(value)


def _secretish(loc: Loc) -> bool:
    if any(p in ("node_env", "upgrader_node_env") for p in loc):
        return True  # a proxy URL may carry a password
    return any(isinstance(p, str) and any(s in p.lower() for s in _SECRETISH) for p in loc)


def problem_from_error(err: ErrorDetails) -> Problem:
    loc: Loc = tuple(err["loc"])
    if loc[-1:] == ("[key]",):  # pydantic's marker for "the key of this dict entry"
        loc = loc[:-1]
    kind = err["type"]
    value: Any = err.get("input")
    ctx = err.get("ctx") or {}
    shown = "the value" if _secretish(loc) else _short(value)
    if kind == "extra_forbidden":
        msg = "unknown key"
        if _secretish(loc[-1:]) and not str(loc[-1]).endswith("_env"):
            msg += " (secrets never go in the inventory: name an environment variable instead)"
        return Problem(loc, msg)
    if kind == "missing":
        return Problem(loc, "missing required key")
    if kind == "invalid_key":
        return Problem(loc, "keys must be strings")
    if kind == "literal_error":
        choices = ", ".join(re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
        return Problem(loc, f"{shown} is not one of {choices}")
    if kind == "value_error":
        return Problem(loc, str(ctx.get("error", err["msg"])))
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return Problem(loc, f"expected an integer, got {_kind(value)}")
    if kind in ("float_type", "float_parsing"):
        return Problem(loc, f"expected a number, got {_kind(value)}")
    if kind in ("bool_type", "bool_parsing"):
        return Problem(loc, f"expected true or false, got {_kind(value)}")
    if kind == "string_type":
        return Problem(loc, f"expected a string, got {_kind(value)}")
    if kind in ("list_type", "tuple_type"):
        return Problem(loc, f"expected a list, got {_kind(value)}")
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return Problem(loc, f"expected a mapping, got {_kind(value)}")
    if kind in ("path_type", "path_parsing"):
        return Problem(loc, f"expected a file path, got {_kind(value)}")
    if kind in ("too_short", "string_too_short"):
        return Problem(loc, "must not be empty")
    for key, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if key in ctx and kind.startswith(("greater", "less")):
            bound = ctx[key]
            if isinstance(bound, float) and bound.is_integer():
                bound = int(bound)
            return Problem(loc, f"{shown} must be {word} {bound}")
    return Problem(loc, err["msg"][:1].lower() + err["msg"][1:])


def first_problem(exc: ValidationError) -> Problem:
    errors = exc.errors(include_url=False)
    return problem_from_error(errors[0])


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
