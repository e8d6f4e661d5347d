"""Fields copied by name: a file's model into the value it describes, a value into its JSON.

Owns :func:`built_from` (a dataclass built from the same-named fields of a pydantic model
or of another dataclass, the fields that differ given by the caller) and
:func:`field_values` (a dataclass's fields, in their order, as a mapping). The names are
worked out once per type; a conversion made once per step of a large plan or run (a
step's or a step record's JSON) stays spelled out, which is about twice as fast.

Must not: do I/O, or convert a value on its own (what must be converted is given, by name).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


_COPIED: dict[tuple[type, type], tuple[str, ...]] = {}
_NAMES: dict[tuple[type, tuple[str, ...]], tuple[str, ...]] = {}


def _copied(cls: type, source: type) -> tuple[str, ...]:
    """The fields of ``cls`` that ``source`` (a pydantic model or a dataclass) declares too,
    in ``cls``'s order (worked out once per pair of types)."""
    names = _COPIED.get((cls, source))
    if names is not None:
        return names
    if issubclass(source, BaseModel):
        declared = set(source.model_fields)
    elif dataclasses.is_dataclass(source):
        declared = {f.name for f in dataclasses.fields(source)}
    else:
        raise TypeError(f"{source.__name__} declares no fields")
    names = _COPIED[(cls, source)] = tuple(
        f.name for f in dataclasses.fields(cls) if f.init and f.name in declared
    )
    return names


def _names(cls: type, skip: tuple[str, ...]) -> tuple[str, ...]:
    names = _NAMES.get((cls, skip))
    if names is None:
        names = _NAMES[(cls, skip)] = tuple(
            f.name for f in dataclasses.fields(cls) if f.name not in skip
        )
    return names


def built_from(cls: type[T], source: object, /, **given: Any) -> T:
    """``cls`` (a dataclass) with each field ``source`` declares under the same name
    copied as it is, and ``given`` for the others and for those that need converting."""
    copied = {n: getattr(source, n) for n in _copied(cls, type(source)) if n not in given}
    return cls(**copied, **given)


def field_values(value: object, /, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields of the dataclass ``value`` but ``skip``, in declaration order, as they are
    (the caller replaces the ones its JSON form writes otherwise)."""
    return {n: getattr(value, n) for n in _names(type(value), skip)}
