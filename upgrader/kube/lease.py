"""The cross-machine run lock: a coordination.k8s.io/v1 Lease in kube-system.

Owns the Lease ``kube-system/upgrader-lock``: ``holderIdentity`` is
``<user>@<host>/<run_id>``, with ``leaseDurationSeconds``, ``acquireTime``,
``renewTime`` and ``leaseTransitions`` as client-go's leader election keeps them.
:func:`acquire` takes a free, expired or own lease and refuses one another run holds
(:class:`LockHeld` naming the holder and when it last renewed) unless told to break it;
:func:`renew` and :func:`release` keep and give it back; :class:`LeaseKeeper` renews it
from a thread while a run works. Every write carries the ``resourceVersion`` it read
(optimistic concurrency): a 409 means someone else wrote meanwhile, so we re-read.

Expiry is judged with this machine's clock against the server-stored ``renewTime``;
keep clocks in sync (NTP), as for any Lease-based lock.

Must not: print, or take the lock from a live holder without ``break_lock``.
"""

from __future__ import annotations

import dataclasses
import getpass
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

import tenacity
from kubernetes.client import ApiClient, CoordinationV1Api, V1Lease, V1LeaseSpec, V1ObjectMeta

from upgrader.core.timestamps import parse_rfc3339
from upgrader.errors import LockHeld
from upgrader.kube.retry import ApiError, is_transient, request_json

log = logging.getLogger("upgrader.kube")

LEASE_NAME = "upgrader-lock"
LEASE_NAMESPACE = "kube-system"
RUN_ID_ANNOTATION = "upgrader.dev/run-id"
DEFAULT_DURATION = 60  # seconds

Now = Callable[[], datetime]
T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


def default_holder(run_id: str, user: str | None = None, host: str | None = None) -> str:
    """``<user>@<host>/<run_id>``."""
    if user is None:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
    return f"{user}@{host or socket.gethostname()}/{run_id}"


@dataclass(frozen=True)
class LeaseInfo:
    """The lock as read (or as we just wrote it)."""

    holder: str | None
    renew_time: datetime | None
    acquire_time: datetime | None
    duration: int | None
    transitions: int
    resource_version: str | None
    previous_holder: str | None = None  # whose lock we took over (expired or broken)

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> LeaseInfo:
        spec = obj.get("spec") or {}
        md = obj.get("metadata") or {}
        dur = spec.get("leaseDurationSeconds")
        return cls(
            holder=spec.get("holderIdentity") or None,
            renew_time=parse_rfc3339(spec.get("renewTime")),
            acquire_time=parse_rfc3339(spec.get("acquireTime")),
            duration=int(dur) if isinstance(dur, int) else None,
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=md.get("resourceVersion"),
        )

    @property
    def free(self) -> bool:
        return not self.holder

    def expires_at(self) -> datetime | None:
        if self.renew_time is None:
            return None
        return self.renew_time + timedelta(seconds=self.duration or 0)

    def expired(self, now: datetime) -> bool:
        exp = self.expires_at()
        return exp is None or exp <= now

    def describe(self, now: datetime) -> str:
        if self.free:
            return "free"
        if self.renew_time is None:
            return f"held by {self.holder} (never renewed)"
        age = (now - self.renew_time).total_seconds()
        exp = self.expires_at()
        left = (exp - now).total_seconds() if exp is not None else 0.0
        state = f"expires in {left:.0f}s unless renewed" if left > 0 else "expired"
        return (
            f"held by {self.holder}, last renewed {self.renew_time.isoformat()} "
            f"({age:.0f}s ago, {state})"
        )


def _api(api: ApiClient) -> CoordinationV1Api:
    return CoordinationV1Api(api)


def read_lease(
    api: ApiClient, *, namespace: str = LEASE_NAMESPACE, name: str = LEASE_NAME
) -> dict[str, Any] | None:
    """The Lease object (JSON), or None if it does not exist."""
    try:
        obj = request_json(
            _api(api).read_namespaced_lease, name, namespace, what=f"GET lease {namespace}/{name}"
        )
    except ApiError as e:
        if e.not_found:
            return None
        raise
    return obj if isinstance(obj, dict) else None


def _micro(t: datetime | None) -> datetime | None:
    """A time whose ISO form always has the 6 fraction digits MicroTime parsing expects
    (``isoformat`` drops them when the microsecond is 0)."""
    if t is None or t.microsecond:
        return t
    return t.replace(microsecond=1)


def _body(
    namespace: str,
    name: str,
    *,
    holder: str | None,
    duration: int | None,
    renew: datetime | None,
    acquire: datetime | None,
    transitions: int,
    resource_version: str | None,
    base: Mapping[str, Any] | None,
    run_id: str | None,
) -> V1Lease:
    md = (base or {}).get("metadata") or {}
    labels = dict(md.get("labels") or {}) or None
    annotations = dict(md.get("annotations") or {})
    if run_id is not None:
        annotations[RUN_ID_ANNOTATION] = run_id
    return V1Lease(
        api_version="coordination.k8s.io/v1",
        kind="Lease",
        metadata=V1ObjectMeta(
            name=name,
            namespace=namespace,
            resource_version=resource_version,
            labels=labels,
            annotations=annotations or None,
        ),
        spec=V1LeaseSpec(
            holder_identity=holder,
            lease_duration_seconds=duration,
            renew_time=_micro(renew),
            acquire_time=_micro(acquire),
            lease_transitions=transitions,
        ),
    )


def _write(
    api: ApiClient, body: V1Lease, *, create: bool, namespace: str, name: str
) -> dict[str, Any]:
    if create:
        obj = request_json(
            _api(api).create_namespaced_lease,
            namespace,
            body,
            what=f"CREATE lease {namespace}/{name}",
        )
    else:
        obj = request_json(
            _api(api).replace_namespaced_lease,
            name,
            namespace,
            body,
            what=f"UPDATE lease {namespace}/{name}",
        )
    return obj if isinstance(obj, dict) else {}


def _held_error(info: LeaseInfo, now: datetime, namespace: str, name: str) -> LockHeld:
    return LockHeld(
        f"the cluster lock (Lease {namespace}/{name}) is {info.describe(now)}; wait for "
        "that run to finish, or pass --break-lock if it is dead"
    )


_MAX_CONFLICTS = 10


def _conflict(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and exc.conflict


def _again_on_conflict(attempt: Callable[[], T], doing: str, namespace: str, name: str) -> T:
    """``attempt`` (read the Lease, decide, write with the ``resourceVersion`` read), again
    at once while the write meets a 409 (someone wrote meanwhile), at most
    :data:`_MAX_CONFLICTS` times (tenacity); then an :class:`ApiError` 409 saying the lease
    kept changing while we were ``doing`` it."""
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(_conflict),
        stop=tenacity.stop_after_attempt(_MAX_CONFLICTS),
        before_sleep=lambda rs: log.info("cluster lock: changed meanwhile, re-reading"),
        reraise=True,
    )
    try:
        return retrying(attempt)
    except ApiError as e:
        if e.conflict:
            raise ApiError(f"lease {namespace}/{name}: kept changing while we {doing}", 409) from e
        raise


def _write_fresh(
    api: ApiClient,
    obj: Mapping[str, Any],
    info: LeaseInfo,
    *,
    holder: str | None,
    duration: int | None,
    renew: datetime,
    acquire: datetime | None = None,
    transitions: int | None = None,
    run_id: str | None = None,
    namespace: str,
    name: str,
) -> dict[str, Any]:
    """Replace the Lease read as ``obj`` (``info``), guarded by its ``resourceVersion``."""
    body = _body(
        namespace,
        name,
        holder=holder,
        duration=duration,
        renew=renew,
        acquire=acquire if acquire is not None else info.acquire_time,
        transitions=info.transitions if transitions is None else transitions,
        resource_version=info.resource_version,
        base=obj,
        run_id=run_id,
    )
    return _write(api, body, create=False, namespace=namespace, name=name)


def _take_over(
    info: LeaseInfo, me: str, t: datetime, break_lock: bool, namespace: str, name: str
) -> str | None:
    """Whose lock we take (None: free or ours already); :class:`LockHeld` when another
    live run holds it and we were not told to break it."""
    if info.free or info.holder == me:
        return None
    if info.expired(t):
        log.warning("cluster lock: taking over the expired lock (%s)", info.describe(t))
    elif break_lock:
        log.warning("cluster lock: breaking the lock (%s) as asked", info.describe(t))
    else:
        raise _held_error(info, t, namespace, name)
    return info.holder


def acquire(
    api: ApiClient,
    run_id: str,
    holder: str | None = None,
    duration: int = DEFAULT_DURATION,
    break_lock: bool = False,
    *,
    namespace: str = LEASE_NAMESPACE,
    name: str = LEASE_NAME,
    now: Now = utcnow,
) -> LeaseInfo:
    """Take the cluster lock for ``holder`` (default ``<user>@<host>/<run_id>``).

    Free, expired or already ours: taken. Held by someone else: :class:`LockHeld` naming
    the holder and its last renewal, unless ``break_lock`` (then it is taken over after a
    warning naming whose it was; ``previous_holder`` of the result says it too).
    """
    me = holder or default_holder(run_id)

    def once() -> LeaseInfo:
        obj = read_lease(api, namespace=namespace, name=name)
        t = now()
        if obj is None:
            body = _body(
                namespace,
                name,
                holder=me,
                duration=duration,
                renew=t,
                acquire=t,
                transitions=0,
                resource_version=None,
                base=None,
                run_id=run_id,
            )
            written = _write(api, body, create=True, namespace=namespace, name=name)
            log.info("cluster lock %s/%s acquired by %s", namespace, name, me)
            return (
                LeaseInfo.from_obj(written) if written else LeaseInfo(me, t, t, duration, 0, None)
            )
        info = LeaseInfo.from_obj(obj)
        previous = _take_over(info, me, t, break_lock, namespace, name)
        ours_already = info.holder == me
        written = _write_fresh(
            api,
            obj,
            info,
            holder=me,
            duration=duration,
            renew=t,
            acquire=info.acquire_time if ours_already and info.acquire_time else t,
            transitions=info.transitions + (0 if ours_already else 1),
            run_id=run_id,
            namespace=namespace,
            name=name,
        )
        log.info("cluster lock %s/%s acquired by %s", namespace, name, me)
        got = LeaseInfo.from_obj(written) if written else info
        return dataclasses.replace(got, previous_holder=previous)

    return _again_on_conflict(once, "tried to take it", namespace, name)


def renew(
    api: ApiClient,
    holder: str,
    duration: int | None = None,
    *,
    namespace: str = LEASE_NAMESPACE,
    name: str = LEASE_NAME,
    now: Now = utcnow,
) -> LeaseInfo:
    """Move ``renewTime`` to now. :class:`LockHeld` if the lock is no longer ours."""

    def once() -> LeaseInfo:
        obj = read_lease(api, namespace=namespace, name=name)
        t = now()
        if obj is None:
            raise LockHeld(f"lost the cluster lock: Lease {namespace}/{name} was deleted")
        info = LeaseInfo.from_obj(obj)
        if info.holder != holder:
            raise LockHeld(f"lost the cluster lock: Lease {namespace}/{name} is {info.describe(t)}")
        dur = duration if duration is not None else info.duration
        written = _write_fresh(
            api, obj, info, holder=holder, duration=dur, renew=t, namespace=namespace, name=name
        )
        log.debug("cluster lock renewed by %s", holder)
        return LeaseInfo.from_obj(written) if written else info

    return _again_on_conflict(once, "renewed it", namespace, name)


def release(
    api: ApiClient,
    holder: str,
    *,
    namespace: str = LEASE_NAMESPACE,
    name: str = LEASE_NAME,
    now: Now = utcnow,
) -> bool:
    """Give the lock back (empty holder, as client-go does). False if it was not ours."""

    def once() -> bool:
        obj = read_lease(api, namespace=namespace, name=name)
        if obj is None:
            return False
        info = LeaseInfo.from_obj(obj)
        if info.holder != holder:
            log.info("cluster lock: not releasing, %s", info.describe(now()))
            return False
        _write_fresh(
            api, obj, info, holder=None, duration=1, renew=now(), namespace=namespace, name=name
        )
        log.info("cluster lock released by %s", holder)
        return True

    return _again_on_conflict(once, "released it", namespace, name)


class LeaseKeeper:
    """Renews the lock every ``interval`` seconds (default: a third of the duration) from a
    daemon thread. If the lock is lost (taken by another holder) or cannot be renewed
    before it would expire, ``lost`` is set, ``on_lost`` is called once and renewing
    stops; the run calls :meth:`check` between steps to stop safely."""

    def __init__(
        self,
        api: ApiClient,
        holder: str,
        duration: int = DEFAULT_DURATION,
        interval: float | None = None,
        *,
        on_lost: Callable[[Exception], None] | None = None,
        namespace: str = LEASE_NAMESPACE,
        name: str = LEASE_NAME,
        now: Now = utcnow,
    ) -> None:
        self.api = api
        self.holder = holder
        self.duration = duration
        self.interval = interval if interval is not None else max(0.1, duration / 3)
        self.on_lost = on_lost
        self.namespace = namespace
        self.name = name
        self.now = now
        self.lost: Exception | None = None
        self.renewals = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LeaseKeeper:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name=f"lease-keeper-{self.name}", daemon=True
            )
            self._thread.start()
        return self

    def _loop(self) -> None:
        last_ok = self.now()
        while not self._stop.wait(self.interval):
            try:
                renew(
                    self.api,
                    self.holder,
                    self.duration,
                    namespace=self.namespace,
                    name=self.name,
                    now=self.now,
                )
                last_ok = self.now()
                self.renewals += 1
            except LockHeld as e:
                self._lose(e)
                return
            except ApiError as e:
                since = (self.now() - last_ok).total_seconds()
                if not is_transient(e) or since >= self.duration:
                    self._lose(
                        LockHeld(
                            f"could not renew the cluster lock for {since:.0f}s "
                            f"(lease duration {self.duration}s): {e}"
                        )
                    )
                    return
                log.warning("cluster lock: renewal failed, will retry: %s", e)

    def _lose(self, exc: Exception) -> None:
        log.error("cluster lock lost: %s", exc)
        self.lost = exc
        if self.on_lost is not None:
            try:
                self.on_lost(exc)
            except Exception:
                log.exception("cluster lock: on_lost callback failed")

    def check(self) -> None:
        """Raise the loss if the lock was lost."""
        if self.lost is not None:
            raise self.lost

    def stop(self, release_lock: bool = True) -> None:
        """Stop renewing; give the lock back unless it was lost (or ``release_lock`` is
        False)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if release_lock and self.lost is None:
            try:
                release(self.api, self.holder, namespace=self.namespace, name=self.name)
            except ApiError as e:
                log.warning("cluster lock: release failed (it expires by itself): %s", e)

    def __enter__(self) -> LeaseKeeper:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
