"""What a simulated node tool knows while it runs: which node, where its files are, and the
bookkeeping every invocation does (the call log, fault injection, simulated delays).

Owns ``NodeContext`` (found from ``LAB_DIR``/``LAB_NODE``/``LAB_NODE_ROOT`` set by the
wrapper, else from ``/etc/upgrader-lab/node.json`` in the node's own view), the per-node
package database (``/var/lib/upgrader-lab/packages.json``), the dpkg-like lock, the
``calls.jsonl`` record and the fault counters in ``faults.json``.

Must not: import anything heavy (every tool call is a fresh process) or decide what a tool
prints; the tool modules do.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from upgrader_lab.node import repo, tree

# Annotations only: importing typing costs every simulated tool call several ms of
# start-up (mypy and ruff read TYPE_CHECKING by name).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class NotALabNode(Exception):
    """The tool runs outside a lab node (no LAB_DIR/LAB_NODE and no node.json)."""


class LockBusy(Exception):
    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


class NodeContext:
    """One node of one lab, as seen by a tool running on it."""

    def __init__(self, lab_dir: Path, name: str, root: Path) -> None:
        self.lab_dir = lab_dir
        self.name = name
        self.root = root
        self.node_dir = tree.node_dir(lab_dir, name)
        self._info: dict[str, Any] | None = None
        self._repo: dict[str, list[str]] | None = None

    # ---- discovery -------------------------------------------------------------------
    @classmethod
    def load(cls) -> NodeContext:
        lab_dir = os.environ.get("LAB_DIR")
        name = os.environ.get("LAB_NODE")
        root = os.environ.get("LAB_NODE_ROOT") or "/"
        if not (lab_dir and name):
            ident = Path(root) / "etc/upgrader-lab/node.json"
            try:
                data = json.loads(ident.read_text())
                lab_dir, name = str(data["lab_dir"]), str(data["name"])
            except (OSError, ValueError, KeyError) as exc:
                raise NotALabNode(str(exc)) from None
        ctx = cls(Path(lab_dir), name, Path(root))
        if not ctx.node_dir.is_dir():
            raise NotALabNode(f"no node {name!r} in {lab_dir}")
        return ctx

    @property
    def info(self) -> dict[str, Any]:
        if self._info is None:
            self._info = json.loads((self.node_dir / "node.json").read_text())
        return self._info

    @property
    def role(self) -> str:
        return str(self.info["role"])

    @property
    def is_control_plane(self) -> bool:
        return self.role == "control-plane"

    @property
    def os_family(self) -> str:
        return str(self.info["os_family"])

    @property
    def flavor(self) -> str:
        """``debian``, ``rhel`` (dnf4), ``fedora`` (dnf5) or ``kubespray``."""
        return str(self.info.get("flavor") or self.info["os_family"])

    def delay(self, key: str) -> float:
        try:
            return float((self.info.get("delays") or {}).get(key) or 0.0)
        except (TypeError, ValueError):
            return 0.0

    def sleep(self, key: str, times: float = 1.0) -> None:
        seconds = self.delay(key) * times
        if seconds > 0:
            time.sleep(seconds)

    # ---- paths -----------------------------------------------------------------------
    def path(self, node_path: str) -> Path:
        """``/etc/x`` on this node -> where that file is from this process's view."""
        return tree.in_root(self.root, node_path)

    def state_path(self, name: str) -> Path:
        return self.path(f"/{tree.STATE}/{name}")

    def read_json(self, name: str, default: Any) -> Any:
        try:
            return json.loads(self.state_path(name).read_text())
        except (OSError, ValueError):
            return default

    def write_json(self, name: str, data: Any) -> None:
        tree.write_file(self.state_path(name), json.dumps(data, indent=1) + "\n")

    @property
    def repository(self) -> dict[str, list[str]]:
        if self._repo is None:
            self._repo = repo.read_repository(self.lab_dir)
        return self._repo

    # ---- packages --------------------------------------------------------------------
    def packages(self) -> dict[str, Any]:
        db = self.read_json("packages.json", {})
        db.setdefault("packages", {})
        db.setdefault("unit_changed", False)
        return dict(db)

    def save_packages(self, db: dict[str, Any]) -> None:
        self.write_json("packages.json", db)

    def installed_version(self, tool: str) -> str | None:
        """The version the installed binary says it is (``v1.28.4``), if installed (in
        ``/usr/bin``, else Kubespray's ``/usr/local/bin``)."""
        for bindir in ("/usr/bin", tree.KUBESPRAY_BIN):
            found = tree.binary_version(self.path(f"{bindir}/{tool}"))
            if found is not None:
                return found
        return None

    def install(self, pkg: str, pkg_version: str) -> None:
        """Put the package's binary in place and record it in the package database."""
        tree.install_binary(self.root, pkg, "v" + repo.upstream_of(pkg_version), sys.executable)
        db = self.packages()
        entry = dict(db["packages"].get(pkg) or {"held": False})
        entry["version"] = pkg_version
        db["packages"][pkg] = entry
        if pkg == "kubelet":
            db["unit_changed"] = True
        self.save_packages(db)

    @contextmanager
    def package_lock(self, tool: str) -> Iterator[None]:
        """dpkg/rpm's frontend lock: a second package manager run fails at once."""
        path = self.state_path("dpkg.lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                raise LockBusy(holder) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} ({tool})".encode(), 0)
            yield
        finally:
            os.close(fd)

    # ---- calls and faults ------------------------------------------------------------
    def record(self, entry: dict[str, Any]) -> None:
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        fd = os.open(self.node_dir / "calls.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def take_fault(self, command_line: str, phase: str | None = None) -> dict[str, Any] | None:
        """The first fault matching ``command_line`` that has fires left; counts it. A
        fault with ``after_phase`` is only taken by the tool itself, at that phase (kubeadm
        asks with ``phase``); the generic call (``phase=None``) never takes one."""
        candidates = [
            f
            for f in self.info.get("faults") or []
            if str(f.get("match", "")) in command_line and f.get("after_phase") == phase
        ]
        if not candidates:
            return None
        with fault_counters(self.node_dir / "faults.json") as (counts, write):
            for fault in candidates:
                key = str(fault["index"])
                fired = int(counts.get(key, 0))
                if fired < int(fault.get("times", 1)):
                    counts[key] = fired + 1
                    write((json.dumps(counts, sort_keys=True) + "\n").encode())
                    return dict(fault)
            return None


@contextmanager
def fault_counters(path: Path) -> Iterator[tuple[Any, Callable[[bytes], None]]]:
    """A node's ``faults.json`` (fault index -> times fired), read under its flock (``{}``
    when empty or unreadable), and a function replacing its contents under the same lock."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        raw = b""
        while chunk := os.read(fd, 65536):
            raw += chunk
        try:
            counts = json.loads(raw.decode() or "{}")
        except ValueError:
            counts = {}

        def write(data: bytes) -> None:
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, data)

        yield counts, write
    finally:
        os.close(fd)


def drop_session() -> None:
    """Kill this SSH session's whole process group: the channel closes without an exit
    status, as when a node reboots or the network drops mid-command."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.killpg(os.getpgrp(), signal.SIGKILL)
