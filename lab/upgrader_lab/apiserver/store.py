"""The API server's state: objects, resourceVersions, watch history, persistence.

Owns every stored object (keyed by resource plural, namespace and name), the global
resourceVersion counter, the recent-change history watches read, the lab's own
bookkeeping (cluster version, API fault counters, controller deadlines) and
``DIR/api-state.json``, written atomically (temp + fsync + rename) before a change is
acknowledged, so a restarted server loses nothing.

Objects are copy-on-write: a stored dict is never mutated again (edit a ``copy.deepcopy``
and ``update`` it), so readers may serialize what they got after releasing the lock.
Callers that read-then-write hold ``store.lock`` (re-entrant) across both.
Must not: know HTTP, validation or controller logic.
"""

from __future__ import annotations

import bisect
import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from upgrader_lab.apiserver.certs import atomic_write

Json = dict[str, Any]
log = logging.getLogger(__name__)

STATE_FORMAT = 1
HISTORY = 5000  # watch history kept (trimmed to this when it doubles)


@dataclass(frozen=True)
class Event:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    plural: str
    namespace: str
    obj: Json
    prev: Json | None  # the object before a MODIFIED (or the deleted object)


EventList = list[Event]


class StateError(ValueError):
    """``api-state.json`` exists but cannot be read back."""


class Store:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.wake = threading.Event()  # set on every change; the controller waits on it
        self._objs: dict[str, dict[tuple[str, str], Json]] = {}
        self._rv = 0
        self._history: list[Event] = []
        self._history_floor = 0  # events with rv <= floor are not in the history
        self.cluster: Json = {}
        self.faults: dict[str, int] = {}
        self.timers: dict[str, Json] = {}
        self._dirty = 0
        self._persisted = 0
        self._persist_lock = threading.Lock()

    # ------------------------------------------------------------------ reads
    @property
    def rv(self) -> int:
        return self._rv

    def get(self, plural: str, namespace: str, name: str) -> Json | None:
        with self.lock:
            return self._objs.get(plural, {}).get((namespace, name))

    def list(self, plural: str, namespace: str | None = None) -> list[Json]:
        with self.lock:
            items = self._objs.get(plural, {})
            keys = sorted(k for k in items if namespace is None or k[0] == namespace)
            return [items[k] for k in keys]

    def count(self, plural: str) -> int:
        with self.lock:
            return len(self._objs.get(plural, {}))

    # ------------------------------------------------------------------ writes
    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _record(
        self, etype: str, plural: str, namespace: str, obj: Json, rv: int, prev: Json | None
    ) -> None:
        self._history.append(Event(rv, etype, plural, namespace, obj, prev))
        if len(self._history) > 2 * HISTORY:
            drop = len(self._history) - HISTORY
            self._history_floor = self._history[drop - 1].rv
            del self._history[:drop]
        self._touch()

    def _touch(self) -> None:
        self._dirty += 1
        self.changed.notify_all()
        self.wake.set()

    def mark_dirty(self) -> None:
        """Lab bookkeeping (faults, timers, cluster) changed: persist on next ``persist``."""
        with self.lock:
            self._dirty += 1

    @staticmethod
    def _ns(obj: Json) -> str:
        return str(obj.get("metadata", {}).get("namespace") or "")

    def create(self, plural: str, obj: Json) -> Json:
        """Store a new object (the caller checked it does not exist); sets resourceVersion."""
        return self._put("ADDED", plural, obj)

    def update(self, plural: str, obj: Json) -> Json:
        """Replace the stored object of the same key with ``obj`` (a new dict)."""
        return self._put("MODIFIED", plural, obj)

    def _put(self, etype: str, plural: str, obj: Json) -> Json:
        """Store ``obj`` under the next resourceVersion and record it as ``etype`` (an update's
        event carries the object it replaced)."""
        with self.lock:
            m = obj["metadata"]
            ns = self._ns(obj)
            rv = self._next_rv()
            m["resourceVersion"] = str(rv)
            bucket = self._objs.setdefault(plural, {})
            prev = bucket.get((ns, m["name"])) if etype == "MODIFIED" else None
            bucket[(ns, m["name"])] = obj
            self._record(etype, plural, ns, obj, rv, prev)
            return obj

    def delete(self, plural: str, namespace: str, name: str) -> Json | None:
        with self.lock:
            obj = self._objs.get(plural, {}).pop((namespace, name), None)
            if obj is None:
                return None
            rv = self._next_rv()
            gone = dict(obj, metadata=dict(obj["metadata"], resourceVersion=str(rv)))
            self._record("DELETED", plural, namespace, gone, rv, obj)
            return gone

    # ------------------------------------------------------------------ watch
    def events_after(self, rv: int) -> EventList | None:
        """Events with resourceVersion > rv; None when rv is older than the history."""
        with self.lock:
            if rv < self._history_floor:
                return None
            i = bisect.bisect_right(self._history, rv, key=lambda e: e.rv)
            return self._history[i:]

    def oldest_known_rv(self) -> int:
        with self.lock:
            return self._history_floor

    def wait_for_change(self, after_rv: int, timeout: float) -> None:
        with self.changed:
            if self._rv <= after_rv:
                self.changed.wait(timeout)

    # ------------------------------------------------------------------ persistence
    def _snapshot(self) -> Json:
        return {
            "format": STATE_FORMAT,
            "rv": self._rv,
            "saved_at": time.time(),
            "cluster": dict(self.cluster),
            "faults": dict(self.faults),
            "timers": {k: dict(v) for k, v in self.timers.items()},
            "objects": {p: [items[k] for k in sorted(items)] for p, items in self._objs.items()},
        }

    def state(self) -> Json:
        """The whole state (for ``GET /_lab/v1/state``); values must not be mutated."""
        with self.lock:
            return self._snapshot()

    def persist(self) -> None:
        """Write the state if anything changed since the last write (group commit).

        Must be called without holding ``lock`` (the write happens outside it)."""
        if self.path is None:
            return
        with self.lock:
            if self._persisted >= self._dirty:
                return
        with self._persist_lock:
            with self.lock:
                target = self._dirty
                if self._persisted >= target:
                    return
                snap = self._snapshot()
            data = json.dumps(snap, separators=(",", ":")).encode("utf-8")
            atomic_write(self.path, data, 0o600)
            with self.lock:
                self._persisted = max(self._persisted, target)

    def load(self) -> bool:
        """Read ``api-state.json`` if present. Returns False when there is none."""
        if self.path is None or not self.path.exists():
            return False
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise StateError(f"{self.path}: cannot read saved state: {e}") from None
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            raise StateError(f"{self.path}: unknown state format")
        with self.lock:
            self._rv = int(data.get("rv", 0))
            self._history.clear()
            self._history_floor = self._rv  # history before a restart is gone
            self.cluster = dict(data.get("cluster") or {})
            self.faults = {str(k): int(v) for k, v in (data.get("faults") or {}).items()}
            self.timers = {str(k): dict(v) for k, v in (data.get("timers") or {}).items()}
            self._objs = {}
            for plural, items in (data.get("objects") or {}).items():
                bucket = self._objs.setdefault(plural, {})
                for obj in items:
                    bucket[(self._ns(obj), obj["metadata"]["name"])] = obj
            self._dirty = self._persisted = 0
        return True

    def seed(self, objects: Iterable[tuple[str, Json]]) -> None:
        """Initial objects (first start only)."""
        with self.lock:
            for plural, obj in objects:
                self.create(plural, obj)
