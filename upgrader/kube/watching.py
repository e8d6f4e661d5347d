"""Waking a wait when the API says something changed: a watch beside every poll.

Owns :class:`ChangeFeed`: a daemon thread that LISTs what a wait looks at (for the
``resourceVersion``), then follows the API's watch from there
(``kubernetes.watch.Watch().stream`` with ``allowWatchBookmarks`` and ``timeout_seconds``,
so no stream outlives :data:`WATCH_SECONDS`), and on every ADDED, MODIFIED or DELETED event
wakes the wait sleeping in :meth:`ChangeFeed.sleep`, which then re-reads at once instead of
at its next poll. A BOOKMARK only moves the ``resourceVersion``; a 410 Gone (the version
expired) or a stream that ended relists; a connection error relists after
:data:`RETRY_SECONDS`; a 401/403 (the watch verb not granted) ends the feed, and the wait
goes on polling. :func:`feed_sleep` picks the sleep of a wait: the caller's injected one
(tests drive their own clock), else a feed's.

Must not: decide anything from the events (the wait re-reads and judges), print, or keep
a stream or thread running after :meth:`ChangeFeed.stop`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from upgrader.core.waiting import Sleep
from upgrader.kube.retry import NO_RETRY, ApiError, api_status, describe, request_json

log = logging.getLogger("upgrader.kube")

WATCH_SECONDS = 30  # one watch request's timeoutSeconds: a stream ends, then resumes
RETRY_SECONDS = 1.0  # after a connection error, before listing again
_GONE = 410
_DENIED = (401, 403)


class ChangeFeed:
    """Wakes :meth:`sleep` on every change the watch of ``list_fn(*args, **selectors)``
    reports (``what`` names it in the log). Start it with ``with``; :attr:`live` says
    whether it is following the watch now."""

    def __init__(
        self, list_fn: Callable[..., Any], *args: Any, what: str, **selectors: Any
    ) -> None:
        self._fn = list_fn
        self._args = args
        self._selectors = selectors
        self.what = what
        self._changed = threading.Event()
        self._stopping = threading.Event()
        self._watch: watch.Watch | None = None
        self._thread: threading.Thread | None = None
        self.live = False
        self.events = 0  # changes seen (tests and logs)
        self.ended: str | None = None  # why the feed gave up (the wait then only polls)

    def __enter__(self) -> ChangeFeed:
        self._thread = threading.Thread(target=self._run, name=f"watch {self.what}", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()
        w = self._watch
        if w is not None:
            w.stop()  # type: ignore[no-untyped-call]  # shuts the stream's socket down: the thread's read returns
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or until the watch reports a change (then at once)."""
        if seconds > 0:
            self._changed.wait(seconds)
        self._changed.clear()

    # ---------------------------------------------------------------- the thread
    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                rv = self._list()
                self._follow(rv)
            except (ApiError, ApiException) as e:
                status = api_status(e)
                if status in _DENIED:
                    self._end(f"watch not allowed: {describe(e)}")
                    return
                if status != _GONE:
                    log.debug("watch %s: %s; listing again", self.what, describe(e))
                    self._stopping.wait(RETRY_SECONDS)
            except Exception as e:  # connection errors of any kind: poll meanwhile
                log.debug("watch %s: %s; listing again", self.what, describe(e))
                self._stopping.wait(RETRY_SECONDS)
            finally:
                self.live = False
            self._changed.set()  # something may have changed while we were not watching

    def _end(self, why: str) -> None:
        log.info("watch %s: %s; polling instead", self.what, why)
        self.ended = why

    def _list(self) -> str:
        doc = request_json(
            self._fn,
            *self._args,
            what=f"LIST {self.what}",
            policy=NO_RETRY,
            limit=1,
            **self._selectors,
        )
        rv = ((doc or {}).get("metadata") or {}).get("resourceVersion")
        if not rv:
            raise ApiError(f"LIST {self.what}: no resourceVersion to watch from")
        return str(rv)

    def _follow(self, rv: str) -> None:
        """Follow the watch from ``rv``, stream after stream, until stopped; an ERROR
        event (410 Gone included) is raised by the client as an ``ApiException``."""
        while not self._stopping.is_set():
            w = watch.Watch(return_type="object")  # type: ignore[no-untyped-call]  # plain dicts
            self._watch = w
            if self._stopping.is_set():  # stop() came before it could see this watch
                return
            self.live = True
            for event in self._stream(w, rv):
                kind = event.get("type")
                meta = (event.get("object") or {}).get("metadata") or {}
                rv = str(meta.get("resourceVersion") or rv)
                if kind != "BOOKMARK":
                    self.events += 1
                    self._changed.set()
                if self._stopping.is_set():
                    w.stop()  # type: ignore[no-untyped-call]
                    return

    def _stream(self, w: watch.Watch, rv: str) -> Iterator[dict[str, Any]]:
        stream: Iterator[dict[str, Any]] = w.stream(  # type: ignore[no-untyped-call]
            self._fn,
            *self._args,
            resource_version=rv,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SECONDS,
            _request_timeout=WATCH_SECONDS + 10,
            **self._selectors,
        )
        return stream


@contextmanager
def feed_sleep(
    sleep: Sleep | None, list_fn: Callable[..., Any], *args: Any, what: str, **selectors: Any
) -> Iterator[Sleep]:
    """The sleep a wait naps with: ``sleep`` when the caller injected one, else the sleep
    of a :class:`ChangeFeed` on ``list_fn`` (a change ends the nap), stopped on exit."""
    if sleep is not None:
        yield sleep
        return
    with ChangeFeed(list_fn, *args, what=what, **selectors) as feed:
        yield feed.sleep


__all__ = ["RETRY_SECONDS", "WATCH_SECONDS", "ChangeFeed", "feed_sleep"]
