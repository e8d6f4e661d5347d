"""RFC 3339 timestamps as the Kubernetes API writes them (``2026-12-05T21:30:00Z``,
``metav1.Time``/``MicroTime``), read in one place.

Owns :func:`parse_rfc3339`: a string (or a ``datetime``, as the ``kubernetes`` client's
models hold them) to an aware ``datetime``; naive values are taken as UTC; anything else,
or a malformed string, is None (the callers treat "no time" as unknown, never as now).

Must not: read the clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def parse_rfc3339(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        t = value
    elif isinstance(value, str) and value:
        try:
            t = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)
