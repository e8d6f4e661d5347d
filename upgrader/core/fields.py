"""Fields copied by name: a file's model into the value it describes, a value into its JSON.

Owns :func:`built_from` (a dataclass built from the same-named fields of a pydantic model
or of another dataclass, the fields that differ given by the caller) and
:func:`field_values` (a dataclass's fields, in their order, as a mapping).

Must not: do I/O, or convert a value on its own (what must be converted is given, by name).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


def _declared(source: object) -> frozenset[str]:
    """The names of the fields ``source`` declares (a pydantic model or a dataclass)."""
    if isinstance(source, BaseModel):
        return frozenset(type(source).model_fields)
    if dataclasses.is_dataclass(source):
        return frozenset(f.name for f in dataclasses.fields(source))
    raise TypeError(f"{type(source).__name__} declares no fields")


def built_from(cls: type[T], source: object, /, **given: Any) -> T:
    """``cls`` (a dataclass) with each field ``source`` declares under the same name
    copied as it is, and ``given`` for the others and for those that need converting."""
    declared = _declared(source)
    copied = {
        f.name: getattr(source, f.name)
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.init and f.name in declared and f.name not in given
    }
    return cls(**copied, **given)


def field_values(value: object, /, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields of the dataclass ``value`` but ``skip``, in declaration order, as they are
    (the caller replaces the ones its JSON form writes otherwise)."""
    assert dataclasses.is_dataclass(value) and not isinstance(value, type)
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.name not in skip}
