"""Kubeconfig credentials handed to TLS without a file on disk.

Owns the paths the Kubernetes client reads a client certificate, client key or CA bundle
from when the kubeconfig holds them inline (``*-data``) or an ``exec`` plugin returns
them. The client (urllib3, then ``ssl``) wants a file name and re-reads it on every new
connection; the ``kubernetes`` package's own loader writes such data to ``/tmp`` files it
deletes only at a clean exit, so a SIGKILLed run used to leave the client key behind.

- On Linux: a sealed ``memfd_create`` file (RAM only, no name in any directory, not
  inherited by ``exec``'d children), named to TLS as ``/proc/self/fd/N``; the fds stay open
  for the process's life (one per distinct content) and are closed at exit. Nothing is
  left by any exit, SIGKILL included.
- Elsewhere (no ``memfd_create`` or no ``/proc``): 0600 files in a 0700 directory
  ``<tmp>/upgrader-kube-<uid>/<pid>-<random>`` removed at exit; a directory whose process
  is gone (a SIGKILLed or SIGTERMed run) is removed by the next run that loads a
  kubeconfig.

The same private directory is given to the ``kubernetes`` loader for what it still
writes itself (an ``exec`` plugin's ``clientKeyData``); :func:`absorb` moves such a file
into memory and deletes it at once.

Must not: log or print a credential, write one outside the private directory, follow a
symlink there, or keep a file of one after the process ends cleanly.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import stat
import tempfile
import threading
from pathlib import Path

_SEALS = ("F_SEAL_SEAL", "F_SEAL_SHRINK", "F_SEAL_GROW", "F_SEAL_WRITE")


class _Store:
    """Process-wide: one memfd (or private file) per distinct content."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._fds: dict[str, int] = {}  # sha256 of the content -> memfd
        self._files: dict[str, str] = {}  # sha256 -> path in the private dir (fallback)
        self._dir: Path | None = None
        self._pid = os.getpid()
        self.memfd_ok = _memfd_works()
        atexit.register(self.close)

    # ------------------------------------------------------------------ paths
    def path_for(self, content: bytes) -> str:
        """A path TLS can read ``content`` from, valid until the process exits."""
        key = hashlib.sha256(content).hexdigest()
        with self._lock:
            self._after_fork()
            if key in self._fds:
                return f"/proc/self/fd/{self._fds[key]}"
            if key in self._files and os.path.isfile(self._files[key]):
                return self._files[key]
            if self.memfd_ok:
                fd = _sealed_memfd(content)
                self._fds[key] = fd
                return f"/proc/self/fd/{fd}"
            path = self._write_private(content)
            self._files[key] = path
            return path

    def private_dir(self) -> Path:
        """This process's 0700 directory (created, and dead processes' swept, on first use)."""
        with self._lock:
            self._after_fork()
            if self._dir is None:
                base = _base_dir()
                sweep_stale(base)
                self._dir = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=base))
            return self._dir

    def absorb(self, path: str | None) -> str | None:
        """``path`` if it is not a file the loader wrote in our private directory; else a
        memory-backed path with its content, the file deleted (the fallback keeps it)."""
        if not path or self._dir is None or not self.memfd_ok:
            return path
        p = Path(path)
        if p.parent != self._dir:
            return path
        try:
            content = p.read_bytes()
        except OSError:
            return path
        new = self.path_for(content)
        with contextlib.suppress(OSError):
            p.unlink()
        return new

    def _write_private(self, content: bytes) -> str:
        fd, name = tempfile.mkstemp(dir=self.private_dir())  # 0600, O_EXCL
        try:
            os.write(fd, content)
        finally:
            os.close(fd)
        return name

    # ------------------------------------------------------------------ exit
    def _after_fork(self) -> None:
        """A forked child shares the parent's fds and directory: it must not remove them."""
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self._dir = None
            self._files = {}

    def close(self) -> None:
        with self._lock:
            if os.getpid() != self._pid:
                return
            for fd in self._fds.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._fds = {}
            self._files = {}
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None


def _memfd_works() -> bool:
    create = getattr(os, "memfd_create", None)
    if create is None:
        return False
    try:
        fd = create("upgrader-probe", os.MFD_CLOEXEC)
    except OSError:
        return False
    try:
        os.write(fd, b"x")
        with open(f"/proc/self/fd/{fd}", "rb") as f:
            return f.read() == b"x"
    except OSError:
        return False
    finally:
        os.close(fd)


def _sealed_memfd(content: bytes) -> int:
    flags = os.MFD_CLOEXEC | getattr(os, "MFD_ALLOW_SEALING", 0)
    fd = os.memfd_create("upgrader-kube-credential", flags)
    try:
        view = memoryview(content)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        seals = 0
        for name in _SEALS:
            seals |= getattr(fcntl, name, 0)
        add = getattr(fcntl, "F_ADD_SEALS", None)
        if add is not None and seals:
            # no one (this process included) can change it under TLS from now on
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, add, seals)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _base_dir() -> Path:
    """``<tmp>/upgrader-kube-<uid>``: 0700, ours, not a symlink (else a fresh private one)."""
    base = Path(tempfile.gettempdir()) / f"upgrader-kube-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        base.mkdir(mode=0o700)
    st = os.lstat(base)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077:
        # someone else's, or a symlink: never write a key there
        return Path(tempfile.mkdtemp(prefix="upgrader-kube-"))
    return base


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    return True


def sweep_stale(base: Path) -> list[Path]:
    """Remove ``base``'s per-process directories whose process is gone; return them."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    for entry in entries:
        head = entry.name.split("-", 1)[0]
        if not head.isdigit() or int(head) == os.getpid() or _alive(int(head)):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
        removed.append(Path(entry.path))
    return removed


_store: _Store | None = None
_store_lock = threading.Lock()


def store() -> _Store:
    global _store
    with _store_lock:
        if _store is None:
            _store = _Store()
        return _store


def path_for(content: bytes) -> str:
    """A path TLS can read ``content`` from (memfd on Linux), valid for the process's life."""
    return store().path_for(content)


def private_dir() -> Path:
    """The 0700 directory for what the ``kubernetes`` loader still writes itself."""
    return store().private_dir()


def absorb(path: str | None) -> str | None:
    """Move a file the loader wrote in :func:`private_dir` into memory (see the module)."""
    return store().absorb(path)


def sweep() -> list[Path]:
    """Remove the private directories of processes that are gone (a SIGKILLed run)."""
    base = Path(tempfile.gettempdir()) / f"upgrader-kube-{os.getuid()}"
    return sweep_stale(base) if base.is_dir() and not base.is_symlink() else []
