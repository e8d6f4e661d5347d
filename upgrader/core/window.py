"""Maintenance windows (``--window "Sat 01:00-05:00"``): parse them, and say whether a moment
is inside one and when the next one opens.

A window is ``DAYS HH:MM-HH:MM [ZONE]``: ``DAYS`` is a day (``Sat``), a range (``Mon-Fri``,
``Fri-Mon`` wraps), a comma list (``Sat,Sun``) or ``daily`` (also ``*``); the times are
local to ``ZONE`` (an IANA name such as ``Europe/Berlin``; without it the ``--window-tz``
given, else UTC). A window whose end is not after its start crosses midnight: ``Mon-Fri
22:00-06:00`` opens Monday 22:00 and closes Tuesday 06:00, ..., Friday 22:00 to Saturday
06:00 (the days name the day it opens). ``24:00`` is allowed as an end.

Must not: read the clock (every function takes the moment it judges) or do any other I/O
than the time zone database lookup of :class:`zoneinfo.ZoneInfo`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from upgrader.errors import ConfigError

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_LONG = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_TIME = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")


@dataclass(frozen=True)
class Window:
    """One weekly window: opens on each of ``days`` (0 = Monday) at ``start`` minutes past
    local midnight and stays open ``length`` minutes (up to 24h, may cross midnight)."""

    text: str
    days: frozenset[int]
    start: int  # minutes after local midnight
    length: int  # minutes, 1..1440
    zone: str

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.zone)

    def _openings(self, at: datetime) -> list[datetime]:
        """The openings (aware, in the window's zone) from the day before ``at`` to a week
        after it."""
        local = at.astimezone(self.tz)
        out = []
        for delta in range(-1, 9):
            day = (local + timedelta(days=delta)).date()
            if day.weekday() in self.days:
                opens = datetime.combine(
                    day, time(self.start // 60, self.start % 60), tzinfo=self.tz
                )
                out.append(opens)
        return out

    def contains(self, at: datetime) -> bool:
        """Whether the aware moment ``at`` is inside this window (start inclusive, end not)."""
        _aware(at)
        return any(o <= at < o + timedelta(minutes=self.length) for o in self._openings(at))

    def next_open(self, at: datetime) -> datetime:
        """``at`` itself when inside, else the next opening after it."""
        if self.contains(at):
            return at
        return min(o for o in self._openings(at) if o > at)

    def closes(self, at: datetime) -> datetime | None:
        """When the opening ``at`` is in closes (None when ``at`` is outside)."""
        for o in self._openings(at):
            end = o + timedelta(minutes=self.length)
            if o <= at < end:
                return end
        return None


def _aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("window: a moment without a time zone cannot be judged")


def _zone(name: str, what: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{what}: unknown time zone {name!r} (an IANA name such as Europe/Berlin or UTC)"
        ) from None
    return name


def _day(token: str, text: str) -> int:
    t = token.strip().lower()
    if t in DAY_NAMES:
        return DAY_NAMES.index(t)
    if t in _DAY_LONG:
        return _DAY_LONG.index(t)
    raise ConfigError(f"window {text!r}: {token!r} is not a day (Mon, Tue, ... Sun)")


def _days(spec: str, text: str) -> frozenset[int]:
    if spec.lower() in ("daily", "*", "every"):
        return frozenset(range(7))
    out: set[int] = set()
    for part in spec.split(","):
        if "-" in part:
            a, _, b = part.partition("-")
            first, last = _day(a, text), _day(b, text)
            d = first
            while True:
                out.add(d)
                if d == last:
                    break
                d = (d + 1) % 7
        else:
            out.add(_day(part, text))
    return frozenset(out)


def _minutes(token: str, text: str) -> int:
    m = _TIME.match(token.strip())
    if m is None or (int(m.group(1)) == 24 and m.group(2) != "00"):
        raise ConfigError(f"window {text!r}: {token!r} is not a time HH:MM (00:00 to 24:00)")
    return int(m.group(1)) * 60 + int(m.group(2))


def parse_window(text: str, default_zone: str | None = None) -> Window:
    """``"Sat 01:00-05:00"``, ``"Mon-Fri 22:00-06:00 Europe/Berlin"`` -> :class:`Window`.
    Raises :class:`ConfigError` naming the window and the part that is wrong."""
    parts = text.split()
    if len(parts) not in (2, 3):
        raise ConfigError(
            f"window {text!r}: expected 'DAYS HH:MM-HH:MM [ZONE]', e.g. 'Sat 01:00-05:00' "
            "or 'Mon-Fri 22:00-06:00 Europe/Berlin'"
        )
    days = _days(parts[0], text)
    a, sep, b = parts[1].partition("-")
    if not sep:
        raise ConfigError(f"window {text!r}: {parts[1]!r} is not a time range HH:MM-HH:MM")
    start, end = _minutes(a, text), _minutes(b, text)
    if start == 24 * 60:
        raise ConfigError(f"window {text!r}: a window cannot open at 24:00")
    if start == end:
        raise ConfigError(f"window {text!r}: opens and closes at the same time")
    length = end - start if end > start else end + 24 * 60 - start
    zone = _zone(parts[2], f"window {text!r}") if len(parts) == 3 else default_zone or "UTC"
    if len(parts) == 2 and default_zone is not None:
        _zone(default_zone, "window time zone")
    return Window(text=text, days=days, start=start, length=length, zone=zone)


def parse_windows(texts: Sequence[str], default_zone: str | None = None) -> tuple[Window, ...]:
    if default_zone is not None:
        _zone(default_zone, "window time zone")
    return tuple(parse_window(t, default_zone) for t in texts)


def inside(windows: Sequence[Window], at: datetime) -> bool:
    """True when there is no window (no restriction) or ``at`` is inside one."""
    _aware(at)
    return not windows or any(w.contains(at) for w in windows)


def next_opening(windows: Sequence[Window], at: datetime) -> datetime:
    """The earliest moment at or after ``at`` inside one of ``windows`` (``at`` when inside)."""
    if not windows:
        return at
    return min(w.next_open(at) for w in windows)


def describe_next(windows: Sequence[Window], at: datetime) -> str:
    """``"Sat 2026-12-12 01:00 CET (in 6d 11h 50m), window 'Sat 01:00-05:00 Europe/Berlin'"``."""
    best = min(windows, key=lambda w: w.next_open(at))
    opens = best.next_open(at).astimezone(best.tz)
    left = int((opens - at).total_seconds() // 60)
    d, rest = divmod(left, 24 * 60)
    h, m = divmod(rest, 60)
    span = " ".join(p for p in (f"{d}d" if d else "", f"{h}h" if h else "", f"{m}m") if p)
    return f"{opens.strftime('%a %Y-%m-%d %H:%M %Z')} (in {span}), window {best.text!r}"
