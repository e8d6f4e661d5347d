"""``--notify URL``: a run's main events as JSON POSTs to a webhook, never in the run's way.

Owns: which events are sent (:data:`NOTIFY_KINDS`: ``run-started``, ``node-finished``,
``step-failed``, ``run-outside-window``, ``run-finished``; an interrupted run ends with a
``run-finished`` whose ``ok`` is false), the URL's validation (:func:`check_url`), the
body (the event's JSON document as ``--events`` writes it, secrets masked by the run's
masker, plus ``text``: one human line, so that a Slack-compatible incoming webhook shows
it), and the delivery: a background thread with a bounded queue. The run's thread only
puts the event on the queue (a full queue drops the oldest event and counts it); the
thread POSTs with a timeout and a few retries with backoff. :meth:`WebhookNotifier.close`
drains for at most a few seconds and returns what was not delivered, so that a receiver
that is down or slow delays a run by at most that drain.

URLs: ``https`` (certificate and host name verified by the default SSL context), or
``http`` only to a loopback address (``127.0.0.0/8``, ``::1``, ``localhost``): an event
carries node names and error lines, which must not cross a network in clear. A URL's user
and password and its query (where webhook tokens often live) are never shown: messages
name the URL by :func:`safe_url`.

Must not: block or fail the run (every error is counted, logged at debug level, never
raised), print, or send anything not masked.
"""

from __future__ import annotations

import collections
import ipaddress
import json
import logging
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from upgrader.errors import ConfigError
from upgrader.execute import events as ev
from upgrader.redact import redact_obj

log = logging.getLogger("upgrader.notify")

NOTIFY_KINDS = frozenset(
    {ev.RUN_STARTED, ev.NODE_FINISHED, ev.STEP_FAILED, ev.RUN_OUTSIDE_WINDOW, ev.RUN_FINISHED}
)

QUEUE_SIZE = 256
TIMEOUT = 5.0  # seconds per POST
ATTEMPTS = 3  # per event
BACKOFF = 0.5  # seconds before the 2nd attempt, doubled after
DRAIN = 3.0  # seconds close() waits for the queue at the end of the run


def safe_url(url: str) -> str:
    """``url`` without its user, password and query (``https://hooks.example/T1?…``)."""
    try:
        p = urlsplit(url)
        host = p.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host + (f":{p.port}" if p.port else "")
    except ValueError:
        return "<unparsable URL>"
    return urlunsplit((p.scheme, netloc, p.path, "…" if p.query else "", ""))


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, what: str = "--notify") -> str:
    """``url`` when it can be used; else :class:`ConfigError` naming it (credentials and query
    hidden)."""
    shown = safe_url(url)
    try:
        p = urlsplit(url)
        host = p.hostname
        p.port  # noqa: B018 - raises on a bad port
    except ValueError as e:
        raise ConfigError(f"{what} {shown}: not a URL ({e})") from None
    if p.scheme not in ("https", "http") or not host:
        raise ConfigError(f"{what} {shown}: expected an https:// URL with a host")
    if any(c in url for c in "\r\n\t ") or any(ord(c) < 32 for c in url):
        raise ConfigError(f"{what} {shown}: the URL holds blanks or control characters")
    if p.scheme == "http" and not _loopback(host):
        raise ConfigError(
            f"{what} {shown}: plain http is only allowed to a loopback address; use https"
        )
    return url


def text_line(event: ev.Event, cluster: str | None = None) -> str:
    """One human line for ``event`` (the ``text`` field of the POST)."""
    d = event.data
    who = f"upgrader[{cluster}]" if cluster else "upgrader"
    run = d.get("run_id", "?")
    if event.kind == ev.RUN_STARTED:
        nodes = d.get("nodes") or []
        return (
            f"{who}: run {run} started: {d.get('target')} on {len(nodes)} node(s), "
            f"{d.get('done_steps', 0)}/{d.get('total_steps', '?')} steps already done"
        )
    if event.kind == ev.NODE_FINISHED:
        return f"{who}: run {run}: node {d.get('node')} done"
    if event.kind == ev.STEP_FAILED:
        where = f"step {d.get('step')} failed on {d.get('node')}"
        return f"{who}: run {run}: {where}: {d.get('error', '')}"
    if event.kind == ev.RUN_OUTSIDE_WINDOW:
        return f"{who}: run {run} paused outside its window: {d.get('message', '')}"
    if event.kind == ev.RUN_FINISHED:
        if d.get("ok"):
            return f"{who}: run {run} finished: succeeded in {float(d.get('duration', 0)):.0f}s"
        return f"{who}: run {run} stopped: {d.get('error', 'not finished')}"
    return f"{who}: run {run}: {event.kind}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is not followed (it could lead an event off https or off loopback)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass(frozen=True)
class Undelivered:
    """What :meth:`WebhookNotifier.close` could not deliver."""

    url: str  # safe_url form
    failed: int  # gave up after every attempt
    dropped: int  # pushed out of a full queue
    left: int  # still queued when the drain time was over

    @property
    def total(self) -> int:
        return self.failed + self.dropped + self.left

    def warning(self) -> str:
        return (
            f"notify {self.url}: {self.total} event(s) not delivered "
            f"({self.failed} failed, {self.dropped} dropped from a full queue, "
            f"{self.left} still queued at the end)"
        )


class WebhookNotifier:
    """An :data:`upgrader.execute.events.EventHandler` that POSTs :data:`NOTIFY_KINDS` events
    to ``url`` from a background thread. ``masker`` may be set later (the run's secrets are
    known once the run starts)."""

    def __init__(
        self,
        url: str,
        masker: ev.Masker = ev.no_mask,
        *,
        cluster: str | None = None,
        queue_size: int = QUEUE_SIZE,
        timeout: float = TIMEOUT,
        attempts: int = ATTEMPTS,
        backoff: float = BACKOFF,
        kinds: frozenset[str] = NOTIFY_KINDS,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.url = check_url(url)
        self.masker = masker
        self.cluster = cluster
        self.kinds = kinds
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self._queue: collections.deque[dict[str, Any]] = collections.deque(maxlen=queue_size)
        self._cond = threading.Condition()
        self._closing = False
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._busy = False
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._opener = urllib.request.build_opener(
            _NoRedirect(), urllib.request.HTTPSHandler(context=ssl.create_default_context())
        )
        self._thread = threading.Thread(target=self._work, name="notify", daemon=True)
        self._thread.start()

    # -- the run's side: never waits
    def __call__(self, event: ev.Event) -> None:
        if event.kind not in self.kinds:
            return
        doc = dict(event.to_dict())
        doc["text"] = text_line(event, self.cluster)
        if self.cluster:
            doc.setdefault("cluster", self.cluster)
        body = redact_obj(json.loads(json.dumps(doc, default=str)), self.masker)
        with self._cond:
            if self._closing:
                self.dropped += 1
                return
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1  # the deque pushes the oldest out
            self._queue.append(body)
            self._cond.notify()

    # -- the thread's side
    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                body = self._queue.popleft()
                self._busy = True
            try:
                ok = self._deliver(body)
            finally:
                with self._cond:
                    self._busy = False
                    if ok:
                        self.sent += 1
                    else:
                        self.failed += 1
                    self._cond.notify_all()

    def _deliver(self, body: dict[str, Any]) -> bool:
        data = json.dumps(body).encode()
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            if self._stop.is_set():
                return False
            req = urllib.request.Request(  # noqa: S310 - scheme checked: https, or http to loopback
                self.url,
                data=data,
                method="POST",
                headers={"Content-Type": "application/json", "User-Agent": "upgrader-notify"},
            )
            try:
                with self._opener.open(req, timeout=self.timeout) as r:
                    r.read(4096)
                    return True
            except urllib.error.HTTPError as e:
                why = f"HTTP {e.code}"
                if 400 <= e.code < 500 and e.code not in (408, 429):
                    log.debug("notify %s: %s, not retried", safe_url(self.url), why)
                    return False
            except (OSError, ValueError) as e:
                why = type(e).__name__
            log.debug(
                "notify %s: attempt %d/%d failed: %s",
                safe_url(self.url),
                attempt,
                self.attempts,
                why,
            )
            if attempt < self.attempts:
                self._sleep(delay)
                delay *= 2
        return False

    def close(self, drain: float = DRAIN) -> Undelivered:
        """Stop taking events, wait at most ``drain`` seconds for the queue, then give up on
        what is left (the thread is a daemon: a POST still in flight dies with the process)."""
        deadline = time.monotonic() + drain
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            left_over = len(self._queue) + (1 if self._busy else 0)
            self._queue.clear()
        self._stop.set()  # no further attempt, no backoff sleep
        return Undelivered(safe_url(self.url), self.failed, self.dropped, left_over)
