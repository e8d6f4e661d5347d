"""Retry policy for Kubernetes API calls, and the one-line form of API errors.

Owns which API failures are transient (5xx, 429, timeouts, connection errors; never a
TLS verification failure or another 4xx), the bounded exponential backoff with jitter
(tenacity) that retries them, honouring ``Retry-After``, the log line of every attempt
(logger ``upgrader.kube``), and :func:`request_json`, the one way the kube modules call
the API: raw JSON in and out (no model deserialization, so objects are plain dicts as
:mod:`upgrader.core.drain` wants them), retried, failures as :class:`ApiError`.

Must not: print, decide what an operation means (eviction's 429 is a PodDisruptionBudget
saying no, not overload: :mod:`upgrader.kube.drain` passes its own ``retry_on``), or
retry anything the caller did not ask to be retried.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import tenacity
import urllib3
from kubernetes.client.exceptions import ApiException

from upgrader.core.waiting import backoff
from upgrader.errors import KubernetesError

log = logging.getLogger("upgrader.kube")

T = TypeVar("T")

DEFAULT_REQUEST_TIMEOUT = 30.0  # seconds, per HTTP request


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``attempts`` tries within ``max_time`` seconds; waits grow from ``initial``
    doubling up to ``max_delay``, plus up to ``jitter`` seconds of random jitter."""

    attempts: int = 6
    max_time: float = 60.0
    initial: float = 0.25
    max_delay: float = 8.0
    jitter: float = 0.5


DEFAULT_POLICY = RetryPolicy()
NO_RETRY = RetryPolicy(attempts=1)


class ApiError(KubernetesError):
    """An API call failed for good. ``status`` is the HTTP status (None when no response
    came back: connection refused, timeout, TLS failure)."""

    def __init__(self, message: str, status: int | None = None, reason: str | None = None):
        super().__init__(message)
        self.status = status
        self.reason = reason

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


def api_status(exc: BaseException) -> int | None:
    """The HTTP status of an API failure (None if there was no HTTP response)."""
    if isinstance(exc, ApiError):
        return exc.status
    if isinstance(exc, ApiException):
        st = exc.status
        return int(st) if isinstance(st, int) and st > 0 else None
    return None


def _tls_failure(exc: BaseException) -> bool:
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, ssl.SSLError | urllib3.exceptions.SSLError):
            return True
        if isinstance(e, ApiException) and e.status == 0 and "SSLError" in str(e.reason or ""):
            return True
        nxt = getattr(e, "reason", None)
        e = nxt if isinstance(nxt, BaseException) else (e.__cause__ or e.__context__)
    return False


def is_transient(exc: BaseException) -> bool:
    """5xx, 429, timeouts and connection errors are worth another try; a TLS verification
    failure, a 4xx or a programming error is not."""
    if _tls_failure(exc):
        return False
    if isinstance(exc, ApiError):
        return exc.status is None or exc.status == 429 or exc.status >= 500
    if isinstance(exc, ApiException):
        st = exc.status
        return isinstance(st, int) and (st == 429 or st >= 500)
    return isinstance(
        exc,
        urllib3.exceptions.HTTPError  # MaxRetryError, ProtocolError, timeouts, NewConnection
        | ConnectionError
        | TimeoutError
        | socket.timeout,
    )


def retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (``Retry-After``), if it said so."""
    headers = getattr(exc, "headers", None)
    if not headers:
        return None
    try:
        val = headers.get("Retry-After")
    except AttributeError:
        return None
    try:
        return max(0.0, float(val)) if val is not None else None
    except (TypeError, ValueError):
        return None


def _body_message(body: Any) -> str | None:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str) or not body:
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return " ".join(body.split())[:300]
    if isinstance(doc, dict) and isinstance(doc.get("message"), str):
        return str(doc["message"])
    return None


def describe(exc: BaseException) -> str:
    """One line for an API failure: ``404 Not Found: nodes "x" not found``."""
    if isinstance(exc, ApiError):
        return str(exc)
    if isinstance(exc, ApiException):
        if not exc.status:
            reason = " ".join(str(exc.reason or "no response").split())
            return f"no response: {reason}"
        msg = _body_message(exc.body)
        head = f"{exc.status} {exc.reason or ''}".strip()
        return f"{head}: {msg}" if msg else head
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        return f"cannot reach the API server: {' '.join(str(exc.reason).split())}"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def to_api_error(exc: BaseException, what: str) -> ApiError:
    """``what`` (``GET node w-1``) + the failure, as a one-line :class:`ApiError`."""
    if isinstance(exc, ApiError):
        return exc
    status = api_status(exc)
    reason = exc.reason if isinstance(exc, ApiException) else None
    hint = ""
    if _tls_failure(exc):
        hint = " (TLS verification failed: check the kubeconfig's CA and server name)"
    elif status == 401:
        hint = " (check the kubeconfig's credentials)"
    elif status == 403:
        hint = " (the kubeconfig's user lacks this permission)"
    return ApiError(f"{what}: {describe(exc)}{hint}", status, str(reason) if reason else None)


def call_with_retry(
    fn: Callable[..., T],
    *args: Any,
    what: str = "",
    policy: RetryPolicy = DEFAULT_POLICY,
    retry_on: Callable[[BaseException], bool] = is_transient,
    sleep: Callable[[float], None] = time.sleep,
    **kwargs: Any,
) -> T:
    """``fn(*args, **kwargs)``, retried on transient failures with exponential backoff and
    jitter (at least the server's ``Retry-After``), bounded by ``policy``. Every attempt is
    logged; the last failure is raised as it was."""
    label = what or getattr(fn, "__name__", "API call")

    grow = backoff(policy.initial, policy.max_delay) + tenacity.wait_random(0, policy.jitter)

    def wait(rs: tenacity.RetryCallState) -> float:
        delay: float = grow(rs)
        exc = rs.outcome.exception() if rs.outcome is not None else None
        ra = retry_after(exc) if exc is not None else None
        return max(delay, ra) if ra is not None else delay

    def before(rs: tenacity.RetryCallState) -> None:
        log.debug("%s: attempt %d/%d", label, rs.attempt_number, policy.attempts)

    def before_sleep(rs: tenacity.RetryCallState) -> None:
        exc = rs.outcome.exception() if rs.outcome is not None else None
        delay = rs.next_action.sleep if rs.next_action is not None else 0.0
        log.warning(
            "%s: attempt %d/%d failed (%s); retrying in %.1fs",
            label,
            rs.attempt_number,
            policy.attempts,
            describe(exc) if exc is not None else "?",
            delay,
        )

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.attempts)
        | tenacity.stop_after_delay(policy.max_time),
        wait=wait,
        retry=tenacity.retry_if_exception(retry_on),
        before=before,
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )
    try:
        return retrying(fn, *args, **kwargs)
    except BaseException as exc:
        if isinstance(exc, Exception) and retry_on(exc):
            log.warning("%s: giving up: %s", label, describe(exc))
        raise


def with_retry(
    what: str = "", policy: RetryPolicy = DEFAULT_POLICY
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorator form of :func:`call_with_retry`."""

    def deco(fn: Callable[..., T]) -> Callable[..., T]:
        def wrapper(*args: Any, **kwargs: Any) -> T:
            return call_with_retry(fn, *args, what=what or fn.__name__, policy=policy, **kwargs)

        wrapper.__name__ = getattr(fn, "__name__", "wrapper")
        wrapper.__doc__ = fn.__doc__
        return wrapper

    return deco


def _decode(resp: Any) -> Any:
    try:
        data = resp.data
    finally:
        release = getattr(resp, "release_conn", None)
        if callable(release):
            release()
    if not data:
        return None
    return json.loads(data)


def request_json(
    fn: Callable[..., Any],
    *args: Any,
    what: str,
    policy: RetryPolicy = DEFAULT_POLICY,
    retry_on: Callable[[BaseException], bool] = is_transient,
    timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
    **kwargs: Any,
) -> Any:
    """Call a generated client method (``CoreV1Api(api).read_node``, ...) for its raw JSON
    response, with retries. Any failure that remains is an :class:`ApiError` naming
    ``what``; the response is the decoded JSON (a dict) or None for an empty body."""

    def once() -> Any:
        kw = dict(kwargs)
        kw["_preload_content"] = False
        if timeout is not None:
            kw["_request_timeout"] = timeout
        resp = fn(*args, **kw)
        try:
            return _decode(resp)
        except ValueError as e:
            raise ApiError(f"{what}: the API server sent a response that is not JSON: {e}") from e

    try:
        return call_with_retry(once, what=what, policy=policy, retry_on=retry_on, sleep=sleep)
    except ApiError:
        raise
    except (ApiException, urllib3.exceptions.HTTPError, OSError) as e:
        raise to_api_error(e, what) from e
