"""RFC 3339 as the API writes it, read in one place (upgrader.core.timestamps)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from upgrader.core.timestamps import parse_rfc3339


def test_api_times_with_z_offsets_and_fractions() -> None:
    assert parse_rfc3339("2026-12-05T21:30:00Z") == datetime(2026, 12, 5, 21, 30, tzinfo=UTC)
    micro = parse_rfc3339("2026-12-05T21:30:00.123456Z")  # metav1.MicroTime (Lease renewTime)
    assert micro is not None and micro.microsecond == 123456
    plus = parse_rfc3339("2026-12-05T22:30:00+01:00")
    assert plus == datetime(2026, 12, 5, 21, 30, tzinfo=UTC)
    assert plus is not None and plus.utcoffset() == timedelta(hours=1)


def test_naive_values_are_utc_and_datetimes_pass_through() -> None:
    assert parse_rfc3339("2026-12-05T21:30:00") == datetime(2026, 12, 5, 21, 30, tzinfo=UTC)
    naive = datetime(2026, 12, 5, 21, 30)
    assert parse_rfc3339(naive) == naive.replace(tzinfo=UTC)
    cet = datetime(2026, 12, 5, 22, 30, tzinfo=timezone(timedelta(hours=1)))
    assert parse_rfc3339(cet) is cet


def test_missing_or_malformed_is_none() -> None:
    for v in (None, "", "yesterday", "2026-13-45T00:00:00Z", 1733434200, {"t": 1}):
        assert parse_rfc3339(v) is None, v
