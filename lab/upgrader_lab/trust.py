"""Whether a lab directory may hold what the lab's root sshd trusts.

Owns the rules ``upgrader lab up`` applies before it starts anything in ``DIR``, and the
check of the files it wrote, thinking like sshd's ``StrictModes``: the lab's sshd runs as
root and reads ``DIR/sshd/sshd_config``, the host key and ``authorized_keys`` from ``DIR``,
and its ForceCommand (``DIR/bin/node-shell`` or, through sudo, ``DIR/bin/node-enter``)
sources and execs more of ``DIR/bin``. Whoever can replace any of them gets root. So:

* ``DIR`` must be made by ``lab up`` itself (:func:`create`: mode 0755, marker file
  :data:`MARKER`), or be a lab directory it made before (the marker, or ``spec.json`` for
  a lab built before the marker existed);
* ``DIR`` must be owned by the user running the lab and not writable by group or others;
* every ancestor of ``DIR`` (its real path) must be owned by root or that user, and not
  writable by group or others unless it has the sticky bit (``/tmp``: others may add
  entries, not rename or remove ours);
* no component of the path may be a symlink owned by another user (its owner could point
  it elsewhere between two starts);
* after the files are written (:func:`check_written`): each file sshd or the ForceCommand
  trusts, and each directory between it and ``DIR``, is no symlink, owned by root or the
  running user, and not writable by group or others.

Must not: create, chmod or remove anything but ``DIR`` and its missing parents in
:func:`create`, or follow a symlink it has not judged.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

MARKER = ".upgrader-lab"
FIX = "give a --dir that does not exist yet (`upgrader lab up` creates it)"


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _trusted_owner(uid: int) -> bool:
    return uid in (0, os.geteuid())


def _symlink_problem(lab_dir: Path) -> str | None:
    cur = Path("/")
    for part in lab_dir.parts[1:]:
        cur = cur / part
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(st.st_mode) and not _trusted_owner(st.st_uid):
            return (
                f"{lab_dir}: {cur} is a symlink owned by {_user(st.st_uid)}, who could point "
                f"it elsewhere; {FIX}"
            )
    return None


def _ancestor_problem(lab_dir: Path, ancestors: list[Path]) -> str | None:
    for anc in ancestors:
        st = os.stat(anc)
        if not _trusted_owner(st.st_uid):
            return (
                f"{lab_dir}: its parent {anc} is owned by {_user(st.st_uid)} (who could replace "
                f"the lab's sshd files and so get root); {FIX} under a directory of root's "
                "or yours"
            )
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            return (
                f"{lab_dir}: its parent {anc} is writable by group or others without the sticky "
                f"bit (they could replace the lab's sshd files and so get root); {FIX} under a "
                "directory only root or you may write"
            )
    return None


def check_dir(lab_dir: Path) -> str | None:
    """Why ``lab_dir`` (absolute) may not be used or created by ``lab up``, or None."""
    problem = _symlink_problem(lab_dir)
    if problem:
        return problem
    real = Path(os.path.realpath(lab_dir))
    existing = real
    while not existing.exists():
        existing = existing.parent
    # the ancestors that exist (missing ones will be made by create(), mode 0755)
    ancestors = list(reversed(existing.parents))
    if existing != real:
        return _ancestor_problem(lab_dir, [*ancestors, existing])
    problem = _ancestor_problem(lab_dir, ancestors)
    if problem:
        return problem
    st = os.stat(real)
    if not stat.S_ISDIR(st.st_mode):
        return f"{lab_dir}: not a directory; {FIX}"
    if st.st_uid != os.geteuid():
        return (
            f"{lab_dir}: owned by {_user(st.st_uid)}, not by {_user(os.geteuid())} who runs the "
            f"lab (they could replace the lab's sshd files and so get root); {FIX}"
        )
    if st.st_mode & 0o022:
        return (
            f"{lab_dir}: writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}; they "
            f"could replace the lab's sshd files and so get root); {FIX}"
        )
    if not (real / MARKER).is_file() and not (real / "spec.json").is_file():
        return f"{lab_dir}: not a directory `upgrader lab up` created; {FIX}"
    return None


def create(lab_dir: Path) -> None:
    """Make ``lab_dir`` and its missing parents, mode 0755 whatever the umask, and mark it
    as the lab's (:data:`MARKER`). Raises ``FileExistsError`` when someone made it first."""
    missing: list[Path] = []
    cur = lab_dir
    while not cur.exists():
        missing.append(cur)
        cur = cur.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o755)
        except FileExistsError:
            if d == lab_dir:
                raise
            continue
        os.chmod(d, 0o755)  # noqa: S103 - the nodes' SSH user must reach the lab's files
    fd = os.open(lab_dir / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as fh:
        fh.write("made by `upgrader lab up`\n")


def check_written(lab_dir: Path, paths: list[Path]) -> str | None:
    """Why one of ``paths`` (files in ``lab_dir`` that sshd or its ForceCommand trusts),
    or a directory between it and ``lab_dir``, could be changed by someone else, or None."""
    for path in paths:
        chain = [path, *[p for p in path.parents if p == lab_dir or lab_dir in p.parents]]
        for p in chain:
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                return f"{p}: missing (the lab wrote it a moment ago); run `upgrader lab up` again"
            if stat.S_ISLNK(st.st_mode):
                return f"{p}: a symlink where the lab wrote a file; {FIX}"
            if not _trusted_owner(st.st_uid) or st.st_mode & 0o022:
                return (
                    f"{p}: owned by {_user(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):04o}: "
                    f"sshd would trust a file others may change; {FIX}"
                )
    return None
