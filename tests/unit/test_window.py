"""The maintenance window parser and its judgement of fixed moments (no clock read)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from refusal import refusal

from upgrader.core.window import describe_next, inside, next_opening, parse_window, parse_windows
from upgrader.errors import ConfigError

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)  # type: ignore[misc]


def test_saturday_window_in_utc_by_default() -> None:
    w = parse_window("Sat 01:00-05:00")
    assert w.zone == "UTC"
    # 2026-12-05 is a Saturday
    assert w.contains(utc(2026, 12, 5, 1, 0))
    assert w.contains(utc(2026, 12, 5, 4, 59))
    assert not w.contains(utc(2026, 12, 5, 5, 0))  # the end is excluded
    assert not w.contains(utc(2026, 12, 5, 0, 59))
    assert not w.contains(utc(2026, 12, 6, 2, 0))  # Sunday
    assert w.next_open(utc(2026, 12, 5, 13, 0)) == utc(2026, 12, 12, 1, 0)
    assert w.next_open(utc(2026, 12, 5, 2, 0)) == utc(2026, 12, 5, 2, 0)  # inside: now


def test_weekdays_crossing_midnight() -> None:
    w = parse_window("Mon-Fri 22:00-06:00")
    assert w.contains(utc(2026, 11, 30, 22, 0))  # Monday 22:00
    assert w.contains(utc(2026, 12, 1, 5, 59))  # Tuesday early: Monday's window
    assert w.contains(utc(2026, 12, 5, 3, 0))  # Saturday early: Friday's window
    assert not w.contains(utc(2026, 11, 30, 3, 0))  # Monday early: Sunday opened none
    assert not w.contains(utc(2026, 12, 5, 22, 30))  # Saturday evening
    assert not w.contains(utc(2026, 12, 2, 12, 0))  # Wednesday noon
    # Saturday noon -> Monday 22:00
    assert w.next_open(utc(2026, 12, 5, 12, 0)) == utc(2026, 12, 7, 22, 0)


def test_zone_suffix_and_default_zone() -> None:
    w = parse_window("Sat 01:00-05:00 Europe/Berlin")
    assert w.zone == "Europe/Berlin"
    # Sat 01:30 in Berlin (CET, UTC+1) is Sat 00:30 UTC
    assert w.contains(utc(2026, 12, 5, 0, 30))
    assert not w.contains(utc(2026, 12, 5, 4, 30))  # 05:30 Berlin
    d = parse_window("Sat 01:00-05:00", default_zone="Europe/Berlin")
    assert d.zone == "Europe/Berlin" and d.contains(utc(2026, 12, 5, 0, 30))
    # a suffix wins over the default
    assert parse_window("Sat 01:00-05:00 UTC", default_zone="Europe/Berlin").zone == "UTC"
    # summer time: Sat 01:00 Berlin is Fri 23:00 UTC in July
    assert w.contains(utc(2026, 7, 3, 23, 0))
    assert w.next_open(utc(2026, 7, 4, 12, 0)) == datetime(2026, 7, 11, 1, 0, tzinfo=BERLIN)


def test_day_lists_ranges_daily_and_24() -> None:
    assert parse_window("Sat,Sun 00:00-24:00").days == frozenset({5, 6})
    assert parse_window("Fri-Mon 01:00-02:00").days == frozenset({4, 5, 6, 0})
    w = parse_window("daily 02:00-03:00")
    assert w.days == frozenset(range(7))
    assert w.next_open(utc(2026, 12, 5, 3, 0)) == utc(2026, 12, 6, 2, 0)
    assert parse_window("Sunday 00:00-24:00").contains(utc(2026, 12, 6, 23, 59))


def test_several_windows() -> None:
    ws = parse_windows(["Sat 01:00-05:00", "Wed 12:00-13:00"])
    assert inside(ws, utc(2026, 12, 2, 12, 30))
    assert not inside(ws, utc(2026, 12, 2, 13, 30))
    assert next_opening(ws, utc(2026, 12, 2, 13, 30)) == utc(2026, 12, 5, 1, 0)
    assert inside((), utc(2026, 12, 2, 13, 30))  # no window: no restriction
    text = describe_next(ws, utc(2026, 12, 2, 13, 30))
    assert text.startswith("Sat 2026-12-05 01:00 UTC (in 2d 11h 30m)")
    assert "'Sat 01:00-05:00'" in text


def test_naive_moment_refused() -> None:
    with pytest.raises(ValueError):
        parse_window("Sat 01:00-05:00").contains(datetime(2026, 12, 5, 2, 0))


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("Sat", "expected 'DAYS HH:MM-HH:MM [ZONE]'"),
        ("Sat 01:00-05:00 Europe/Berlin extra", "expected"),
        ("Sam 01:00-05:00", "'Sam' is not a day"),
        ("Sat 1:00", "is not a time range"),
        ("Sat 25:00-05:00", "'25:00' is not a time"),
        ("Sat 01:00-05:61", "'05:61' is not a time"),
        ("Sat 24:30-05:00", "is not a time"),
        ("Sat 03:00-03:00", "opens and closes at the same time"),
        ("Sat 01:00-05:00 Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    ],
)
def test_bad_windows_name_the_part(text: str, says: str) -> None:
    msg = refusal(parse_window, text)
    assert says in msg and text in msg


def test_bad_default_zone() -> None:
    with pytest.raises(ConfigError, match="unknown time zone 'Nowhere'"):
        parse_windows(["Sat 01:00-05:00"], default_zone="Nowhere")
