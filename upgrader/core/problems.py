"""What is wrong with a file, as one line: the renderer every file format shares.

Owns the one-line error format ``<file>: <field path>: <problem>``, the rendering of a
pydantic ``ValidationError`` into it (first error only, ``loc`` as ``nodes[2].role``, or
``minors.1.30.eol`` with :func:`render_dotted`), :class:`FileModel` (the base of every
file schema: unknown keys refused) and :func:`fail_at` (a validator's error that names a
field below the one it checks, e.g. ``params.force`` from the ``params`` validator),
:func:`json_document` (a JSON syntax error as that one line) and the field types several
schemas share (:data:`Version`: a Kubernetes version string).

Must not: read files, or echo the value of anything that may hold a secret.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, PlainValidator, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from upgrader.core.versions import KubeVersion
from upgrader.errors import ConfigError

Loc = tuple[str | int, ...]
LocRenderer = Callable[[Loc], str]

_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_SECRETISH = ("password", "passphrase", "secret", "token")
# The error type of :func:`fail_at`: its message and the path below the field go in ctx.
_AT = "problem_at"


class FileModel(BaseModel):
    """The base of a file's schema: a key the schema does not name is an error. Built on
    first use, so a command pays only for the formats it reads."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


@functools.lru_cache(maxsize=1024)
def _parse_version(text: str) -> KubeVersion:
    return KubeVersion.parse(text)  # a frozen value: one instance per text is enough


def _version(value: object) -> KubeVersion:
    if not isinstance(value, str):
        raise ValueError("must be a version string like v1.30.4")
    return _parse_version(value)  # VersionError (a ValueError) says what is wrong


#: A Kubernetes version string (``v1.30.4``) read as a :class:`KubeVersion`.
Version = Annotated[KubeVersion, PlainValidator(_version)]


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


def render_dotted(loc: Loc) -> str:
    """``("minors", "1.30", "patches", 0)`` -> ``minors.1.30.patches[0]`` (keys as written)."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
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


def fail_at(message: str, *at: str | int) -> PydanticCustomError:
    """An error for a validator to raise: ``message`` at the checked field's path plus
    ``at`` (the message is kept as written, braces included)."""
    return PydanticCustomError(_AT, "{message}", {"message": message, "at": at})


def short(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def kind_of(value: object) -> str:
    """What a value is, in words: ``a mapping``, ``a string ('x')``, ``nothing (null)``."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, str):
        return f"a string ({short(value)})"
    return short(value)


def _secretish(loc: Loc) -> bool:
    if any(p in ("node_env", "upgrader_node_env") for p in loc):
        return True  # a proxy URL may carry a password
    return any(isinstance(p, str) and any(s in p.lower() for s in _SECRETISH) for p in loc)


def _bound(kind: str, ctx: dict[str, Any], loc: Loc, shown: str) -> Problem | None:
    for key, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if key in ctx and kind.startswith(("greater", "less")):
            bound = ctx[key]
            if isinstance(bound, float) and bound.is_integer():
                bound = int(bound)
            return Problem(loc, f"{shown} must be {word} {bound}")
    return None


_EXPECTED = {
    **dict.fromkeys(("int_type", "int_parsing", "int_from_float"), "an integer"),
    **dict.fromkeys(("float_type", "float_parsing"), "a number"),
    **dict.fromkeys(("bool_type", "bool_parsing"), "true or false"),
    "string_type": "a string",
    **dict.fromkeys(("list_type", "tuple_type"), "a list"),
    **dict.fromkeys(("dict_type", "model_type", "model_attributes_type"), "a mapping"),
    **dict.fromkeys(("path_type", "path_parsing"), "a file path"),
}


def problem_from_error(err: ErrorDetails) -> Problem:
    loc: Loc = tuple(err["loc"])
    if loc[-1:] == ("[key]",):  # pydantic's marker for "the key of this dict entry"
        loc = loc[:-1]
    kind = err["type"]
    value: Any = err.get("input")
    ctx = err.get("ctx") or {}
    shown = "the value" if _secretish(loc) else short(value)
    if kind == _AT:
        return Problem((*loc, *ctx["at"]), ctx["message"])
    if kind == "extra_forbidden":
        msg = "unknown key"
        if _secretish(loc[-1:]) and not str(loc[-1]).endswith("_env"):
            msg += " (secrets never go in the inventory: name an environment variable instead)"
        return Problem(loc, msg)
    if kind == "missing":
        return Problem(loc, "missing required key")
    if kind == "invalid_key":
        return Problem(loc, "keys must be strings")
    if kind in ("literal_error", "enum"):
        choices = ", ".join(re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
        return Problem(loc, f"{shown} is not one of {choices}")
    if kind == "value_error":
        return Problem(loc, str(ctx.get("error", err["msg"])))
    if kind in _EXPECTED:
        return Problem(loc, f"expected {_EXPECTED[kind]}, got {kind_of(value)}")
    if kind in ("too_short", "string_too_short"):
        return Problem(loc, "must not be empty")
    bounded = _bound(kind, ctx, loc, shown)
    if bounded is not None:
        return bounded
    return Problem(loc, err["msg"][:1].lower() + err["msg"][1:])


def first_problem(exc: ValidationError) -> Problem:
    errors = exc.errors(include_url=False)
    return problem_from_error(errors[0])


def json_document(text: str, origin: str) -> Any:
    """``text`` parsed as JSON, or one :class:`ConfigError` line naming ``origin`` and the
    line of the syntax error."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{origin}: invalid JSON at line {e.lineno}: {e.msg}") from None


M = TypeVar("M", bound=BaseModel)


def validate(
    model: type[M],
    data: object,
    source: str,
    render: LocRenderer = render_loc,
    problems: Sequence[Callable[[ErrorDetails], Problem | None]] = (),
) -> M:
    """``data`` as ``model``, or the first problem as one :class:`ConfigError` line naming
    ``source`` and the field. ``problems``: a format's own wordings, tried in order before
    the shared one (each returns None to pass)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        for own in problems:
            found = own(err)
            if found is not None:
                raise found.error(source, render) from None
        raise problem_from_error(err).error(source, render) from None
