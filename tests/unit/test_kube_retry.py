"""The API retry policy: what counts as transient, bounded backoff, Retry-After, logging,
and one-line error texts. No network: the failures are the client's own exception types."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from upgrader.errors import KubernetesError
from upgrader.kube.retry import (
    ApiError,
    RetryPolicy,
    call_with_retry,
    describe,
    is_transient,
    to_api_error,
    with_retry,
)

NONE: Any = None  # the pool/connection the urllib3 errors would name
FAST = RetryPolicy(attempts=4, max_time=3600, initial=0.1, max_delay=1.0, jitter=0.1)


def api_exc(status: int, message: str = "", headers: dict[str, str] | None = None) -> ApiException:
    e = ApiException(status=status, reason={429: "Too Many Requests"}.get(status, "Reason"))
    e.body = json.dumps({"kind": "Status", "message": message}) if message else None
    e.headers = headers
    return e


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (api_exc(500), True),
        (api_exc(503), True),
        (api_exc(429), True),
        (api_exc(404), False),
        (api_exc(409), False),
        (api_exc(403), False),
        (ApiException(status=0, reason="SSLError\ncertificate verify failed"), False),
        (
            urllib3.exceptions.MaxRetryError(
                NONE, "/x", urllib3.exceptions.NewConnectionError(NONE, "refused")
            ),
            True,
        ),
        (
            urllib3.exceptions.MaxRetryError(NONE, "/x", urllib3.exceptions.SSLError("bad cert")),
            False,
        ),
        (urllib3.exceptions.ReadTimeoutError(NONE, "/x", "read timed out"), True),
        (urllib3.exceptions.ProtocolError("Connection aborted."), True),
        (ConnectionResetError(), True),
        (TimeoutError(), True),
        (ValueError("bug"), False),
        (ApiError("x", 503), True),
        (ApiError("x", None), True),
        (ApiError("x", 422), False),
    ],
)
def test_is_transient(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_retries_transient_then_succeeds_and_logs_each_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) < 3:
            raise api_exc(503, "etcdserver: leader changed")
        return x * 2

    caplog.set_level(logging.DEBUG, logger="upgrader.kube")
    assert call_with_retry(flaky, 21, what="GET node w-1", policy=FAST, sleep=sleeps.append) == 42
    assert calls == [21, 21, 21]
    assert len(sleeps) == 2
    assert all(0 < s <= FAST.max_delay + FAST.jitter for s in sleeps)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert (
        "GET node w-1: attempt 1/4 failed (503 Reason: etcdserver: leader changed)" in warnings[0]
    )
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert debug == [f"GET node w-1: attempt {i}/4" for i in (1, 2, 3)]


def test_non_transient_fails_at_once() -> None:
    calls = []

    def nope() -> None:
        calls.append(1)
        raise api_exc(403, 'nodes "w-1" is forbidden')

    with pytest.raises(ApiException):
        call_with_retry(nope, policy=FAST, sleep=lambda s: None)
    assert calls == [1]


def test_attempts_are_bounded_and_last_error_raised() -> None:
    calls = []

    def down() -> None:
        calls.append(1)
        raise api_exc(503)

    with pytest.raises(ApiException) as ei:
        call_with_retry(down, policy=FAST, sleep=lambda s: None)
    assert ei.value.status == 503
    assert len(calls) == FAST.attempts


def test_retry_after_is_honoured() -> None:
    sleeps: list[float] = []
    n = []

    def busy() -> str:
        n.append(1)
        if len(n) == 1:
            raise api_exc(429, "too many requests", headers={"Retry-After": "7"})
        return "ok"

    assert call_with_retry(busy, policy=FAST, sleep=sleeps.append) == "ok"
    assert sleeps and sleeps[0] >= 7


def test_decorator() -> None:
    n = []

    @with_retry("list pods", FAST)
    def f() -> int:
        n.append(1)
        if len(n) == 1:
            raise ConnectionResetError()
        return 5

    # default sleep is real; keep the one wait tiny
    assert f() == 5
    assert f.__name__ == "f"


def test_error_texts_are_one_line() -> None:
    e = to_api_error(api_exc(404, 'nodes "w-9" not found'), "GET node w-9")
    assert isinstance(e, KubernetesError)
    assert str(e) == 'GET node w-9: 404 Reason: nodes "w-9" not found'
    assert e.not_found and e.status == 404
    forbidden = to_api_error(api_exc(403, "forbidden"), "PATCH node w-1")
    assert "lacks this permission" in str(forbidden)
    tls = to_api_error(ApiException(status=0, reason="SSLError\nverify failed"), "GET /version")
    assert tls.status is None
    assert "TLS verification failed" in str(tls)
    assert "\n" not in str(tls)
    conn = urllib3.exceptions.MaxRetryError(
        NONE, "/api", urllib3.exceptions.NewConnectionError(NONE, "Connection refused")
    )
    assert describe(conn).startswith("cannot reach the API server")
