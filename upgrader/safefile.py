"""Safe opens for every file the operator side creates, writes or trusts.

Owns the rules for the state directory and the files upgrader keeps on the operator's
machine (state file, stored plan, lock, summary, transcripts, ``--events``, ``facts -o``):

- a *private directory* (the state file's directory, the transcripts directory) must be a
  real directory (not a symlink), owned by the running user (or root), and not writable by
  group or others; one we own is tightened to 0700; anything else is refused;
- every file is opened with ``O_NOFOLLOW`` (a symlink in its place is refused, its target
  never touched), must be a regular file with one link owned by the running user, and gets
  mode 0600 even when it already existed with another; a file created anew is created with
  ``O_EXCL``; truncation happens only after those checks (never ``O_TRUNC`` on open);
- a file read back as trusted input (state, stored plan, lock) must additionally not be
  writable by group or others;
- atomic replacement: a temp file created ``O_EXCL|O_NOFOLLOW`` in the same directory,
  fsync, rename, fsync of the directory.

Every refusal is one :class:`ConfigError` line naming the path and the fix. Must not: know
what the files contain. Pure standard library.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

from upgrader.errors import ConfigError

FILE_MODE = 0o600
DIR_MODE = 0o700
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _uid() -> int:
    return os.geteuid()


def _owner_ok(uid: int, *, allow_root: bool) -> bool:
    return uid == _uid() or (allow_root and uid == 0)


def check_private_dir(path: Path, *, what: str = "state directory") -> None:
    """Refuse ``path`` unless it is a directory (not a symlink) owned by us (or root) that
    group and others cannot write; tighten one of ours to 0700."""
    try:
        s = os.lstat(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} does not exist") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot inspect the {what}: {e.strerror or e}") from None
    if stat.S_ISLNK(s.st_mode):
        raise ConfigError(
            f"{path}: the {what} is a symbolic link; refusing to follow it (give the real "
            "directory)"
        )
    if not stat.S_ISDIR(s.st_mode):
        raise ConfigError(f"{path}: the {what} is not a directory")
    if not _owner_ok(s.st_uid, allow_root=True):
        raise ConfigError(
            f"{path}: the {what} is owned by uid {s.st_uid}, not by you (uid {_uid()}); "
            "use a directory of your own"
        )
    if s.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"{path}: the {what} is writable by group or others (mode "
            f"{stat.S_IMODE(s.st_mode):04o}); check its files, then chmod 700 it, or use a "
            "directory only you can write"
        )
    if s.st_uid == _uid() and stat.S_IMODE(s.st_mode) & 0o077:
        os.chmod(path, DIR_MODE, follow_symlinks=False)


def ensure_private_dir(path: Path, *, what: str = "state directory") -> Path:
    """Create ``path`` (0700) if missing, then :func:`check_private_dir`."""
    with contextlib.suppress(FileExistsError):
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(path, DIR_MODE)
    check_private_dir(path, what=what)
    return path


def _refuse_link(path: Path, e: OSError) -> ConfigError:
    if e.errno == errno.ELOOP:
        return ConfigError(
            f"{path}: is a symbolic link; refusing to follow it (remove the link and retry)"
        )
    return ConfigError(f"{path}: cannot open: {e.strerror or e}")


def _check_fd(fd: int, path: Path, *, trusted: bool) -> None:
    s = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(s.st_mode):
        problem = "is not a regular file"
    elif s.st_uid != _uid():
        problem = f"is owned by uid {s.st_uid}, not by you (uid {_uid()}); remove it"
    elif s.st_nlink > 1:
        problem = f"has {s.st_nlink} hard links; remove it"
    elif trusted and s.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problem = (
            f"is writable by group or others (mode {stat.S_IMODE(s.st_mode):04o}); "
            "check its content, then chmod 600 it"
        )
    if problem is not None:
        os.close(fd)
        raise ConfigError(f"{path}: {problem}")
    if stat.S_IMODE(s.st_mode) != FILE_MODE:
        os.fchmod(fd, FILE_MODE)


def open_fd(path: Path, *, append: bool = False, truncate: bool = False) -> int:
    """A write descriptor on ``path`` (created 0600 with ``O_EXCL`` if missing; an existing
    file passes the checks above and is set to 0600). ``truncate`` empties it only after the
    checks; ``append`` opens with ``O_APPEND``."""
    flags = os.O_WRONLY | _NOFOLLOW | _CLOEXEC | (os.O_APPEND if append else 0)
    fd, created = _open(path, flags, trusted=False)
    if truncate and not created:
        os.ftruncate(fd, 0)
    return fd


def open_rw_fd(path: Path) -> int:
    """A read-write descriptor on ``path`` (a lock file): created 0600 if missing, an
    existing one must be ours, unlinked elsewhere, and not group/other-writable."""
    return _open(path, os.O_RDWR | _NOFOLLOW | _CLOEXEC, trusted=True)[0]


def _open(path: Path, flags: int, *, trusted: bool) -> tuple[int, bool]:
    """``path`` opened with ``flags``: created 0600 (``O_EXCL``) when missing, else opened
    and checked (:func:`_check_fd`); whether it was created."""
    try:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL, FILE_MODE), True
    except FileExistsError:
        pass
    except OSError as e:
        raise _refuse_link(path, e) from None
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise _refuse_link(path, e) from None
    _check_fd(fd, path, trusted=trusted)
    return fd, False


def write_file(path: Path, data: bytes) -> None:
    """Replace the content of ``path`` in place (``facts -o``): no symlink, mode 0600."""
    fd = open_fd(path, truncate=True)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def read_trusted(path: Path) -> bytes | None:
    """The bytes of a file upgrader reads back as its own record (state, stored plan);
    None if it does not exist. Refused: a symlink, a file not ours, group/other-writable."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise _refuse_link(path, e) from None
    _check_fd(fd, path, trusted=True)
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def fsync_dir(d: Path) -> None:
    """fsync a directory (a name created or removed in it survives a crash)."""
    fd = os.open(d, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash at any moment leaves either the old or the
    new content, mode 0600, in a private directory (created 0700 if missing): a temp file
    created ``O_EXCL|O_NOFOLLOW`` beside it, fsync, rename (which replaces a symlink at
    ``path`` rather than following it), fsync of the directory."""
    ensure_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def inside(path: Path, directory: Path) -> bool:
    """Whether ``path`` (resolved) lies inside ``directory`` (resolved)."""
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(directory))
    except ValueError:
        return False
    return True
