"""The sshd ForceCommand wrapper and the node's private view of its files.

Owns the shell scripts written to ``DIR/bin/``: ``node-shell`` (sshd's ForceCommand: reads
the server address from ``SSH_CONNECTION``, maps it to a node through ``DIR/addr/``),
``node-run NODE COMMAND`` (the same for the runner and tests) and ``node-ns`` (runs inside a
private mount namespace: overlays the node's ``root/<d>`` on ``/<d>`` for each directory
``d`` of ``tree.OVERLAID`` (``/etc``, ``/usr/bin``, ``/var/lib``, ``/usr/local/bin``, ...),
mounts ``/sys/fs/cgroup`` when the node's cgroup version differs from the host's, and binds
the node's own ``lock`` directory (root's, mode 0700) on ``/run/upgrader`` (so ``flock`` on
the upgrader's node lock is per node and shared by every session of that node; the host's
``/run/upgrader`` is only the mount point, made by :func:`ensure_lock_mountpoint`), then
runs the command with ``sh -c`` so real coreutils see the node's files at their real
paths). Also owns the probe
that decides the mode: ``overlay`` (``unshare -m`` as root, ``unshare -r -m`` otherwise)
or ``path`` (no mounts possible: the node's tools first on PATH, files at their host paths).

Must not: run per command anything heavier than sh, unshare and mount (every SSH command
pays for it), or let a mount escape its namespace (unshare makes mounts private).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from upgrader.core import nodelock
from upgrader_lab.hostproc import captured
from upgrader_lab.node import tree

SAFE_PATH_RE = re.compile(r"^[A-Za-z0-9_./+@-]+$")
# Debian's PATH for root (/usr/local first: Kubespray's bin_dir wins over /usr/bin, as on a
# real node)
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class MountMode:
    mode: str  # "overlay" | "path"
    userns: bool  # overlay inside a user namespace (not root)
    reason: str  # why "path" was chosen, or how overlay runs

    def to_dict(self) -> dict[str, object]:
        return {"mode": self.mode, "userns": self.userns, "reason": self.reason}


def _unshare_argv(userns: bool) -> list[str]:
    return ["unshare", "-m", "-u", *(["-r"] if userns else [])]


def probe(lab_dir: Path, force_path: bool = False) -> MountMode:
    """Try what the wrapper will do, on a scratch tree, and say which mode works."""
    userns = os.geteuid() != 0
    if force_path:
        return MountMode("path", userns, "chosen with --mount path")
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return MountMode("path", userns, "unshare(1) or mount(8) not found")
    scratch = lab_dir / "probe"
    shutil.rmtree(scratch, ignore_errors=True)
    (scratch / "upper").mkdir(parents=True)
    (scratch / "work").mkdir()
    (scratch / "upper" / "upgrader-lab-probe").write_text("ok\n")
    script = (
        'mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1/upper,workdir=$1/work" /etc '
        "&& test -f /etc/upgrader-lab-probe"
    )
    try:
        proc = captured(
            [*_unshare_argv(userns), "/bin/sh", "-c", script, "probe", str(scratch)], 20
        )
        ok = proc.returncode == 0
        detail = (proc.stderr or proc.stdout).strip().splitlines()
    except (OSError, subprocess.TimeoutExpired) as exc:
        ok, detail = False, [str(exc)]
    finally:
        _rm_tree(scratch)
    if ok:
        how = "unshare -r -m (user namespace)" if userns else "unshare -m"
        return MountMode("overlay", userns, f"overlayfs per command via {how}")
    why = detail[-1] if detail else "mount failed"
    return MountMode("path", userns, f"overlay mounts impossible here ({why})")


def _rm_tree(path: Path) -> None:
    """Remove a tree that may hold overlayfs work dirs (mode 000)."""
    if not path.exists():
        return
    for dirpath, dirnames, _ in os.walk(path):
        for d in dirnames:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(dirpath, d), 0o700)
    shutil.rmtree(path, ignore_errors=True)


def check_lab_dir(lab_dir: Path) -> str | None:
    """Why ``lab_dir`` cannot host a lab, or None. Its path is written into sshd_config
    and mount options, so it must be plain; and it must not live under an overlaid tree."""
    text = str(lab_dir)
    if not SAFE_PATH_RE.match(text):
        return (
            f"{text!r}: the lab directory path may only hold letters, digits and . _ / + @ - "
            "(it goes into sshd_config and mount options)"
        )
    for host in (*(f"/{d}" for d in tree.OVERLAID), "/bin"):
        if text == host or text.startswith(host + "/"):
            return f"{text}: the lab directory must not be under {host} (nodes overlay it)"
    return None


def _q(text: str) -> str:
    """Single-quote for sh (paths were checked to be plain, this is belt and braces)."""
    return "'" + text.replace("'", "'\\''") + "'"


def lib_script(lab_dir: Path, mode: MountMode, pythonpath: str) -> str:
    d = _q(str(lab_dir))
    common = (
        "#!/bin/sh\n"
        "# upgrader lab: run one command on one node (generated by `upgrader lab up`).\n"
        f"LAB_DIR={d}\n"
        "run_on_node() {\n"
        '  node=$1; cmd=$2; N="$LAB_DIR/nodes/$node"\n'
        '  if [ ! -d "$N/root" ]; then echo "upgrader lab: no node $node" >&2; exit 255; fi\n'
        f"  PYTHONPATH={_q(pythonpath)}; LAB_NODE=$node\n"
        f"  PATH={NODE_PATH}\n"
        "  export LAB_DIR LAB_NODE PYTHONPATH PATH\n"
    )
    if mode.mode == "path":
        return common + (
            '  LAB_NODE_ROOT="$N/root"; PATH="$N/root/usr/bin:$N/root/usr/local/bin:$PATH"\n'
            "  export LAB_NODE_ROOT PATH\n"
            '  exec /bin/sh -c "$cmd"\n'
            "}\n"
        )
    unshare = " ".join(_unshare_argv(mode.userns))
    work_dirs = " ".join(f'"$W/{_work_name(d)}"' for d in tree.OVERLAID)
    work_subdirs = " ".join(f'"$W/{_work_name(d)}/work"' for d in tree.OVERLAID)
    upper_dirs = " ".join(f'"$N/root/{d}"' for d in tree.OVERLAID)
    return common + (
        '  W="$N/work/$$"\n'
        f"  mkdir -p {work_dirs} {upper_dirs} || exit 255\n"
        '  [ -d "$N/lock" ] || mkdir -m 0700 "$N/lock" 2>/dev/null || [ -d "$N/lock" ] '
        "|| exit 255\n"
        # node-enter (the non-root SSH user's entry, see upgrader_lab.sudo) sets LAB_NS
        f'  {unshare} /bin/sh "$LAB_DIR/bin/${{LAB_NS:-node-ns}}" "$N" "$W" "$cmd"\n'
        "  rc=$?\n"
        f'  rmdir {work_subdirs} {work_dirs} "$W" 2>/dev/null\n'
        "  exit $rc\n"
        "}\n"
    )


NS_SCRIPT = """#!/bin/sh
# upgrader lab: inside the node's private mount namespace (generated; do not edit).
# $1 = DIR/nodes/NAME, $2 = this command's overlay work dir, $3 = the command. The node's
# hostname is set in the command's own UTS namespace.
R="$1/root"; W="$2"
{binds}{cgroup}if [ -d {lockdir} ] && [ ! -L {lockdir} ]; then mount --bind "$1/lock" {lockdir} || {
  echo "upgrader lab: cannot mount the node lock directory of node $LAB_NODE" >&2; exit 255; }; fi
{overlays} || {
  echo "upgrader lab: cannot mount the files of node $LAB_NODE" >&2; exit 255; }
{ echo "$LAB_NODE" > /proc/sys/kernel/hostname; } 2>/dev/null || hostname "$LAB_NODE" 2>/dev/null
exec /bin/sh -c "$3"
"""

SHELL_SCRIPT = """#!/bin/sh
# upgrader lab: sshd ForceCommand (generated; do not edit). The address the client dialled
# (3rd field of SSH_CONNECTION) names the node; the client's command runs on it.
. {lib}
set -f
set -- ${{SSH_CONNECTION:-}}
node=
if [ -n "${{3:-}}" ] && [ -r "$LAB_DIR/addr/$3" ]; then read -r node < "$LAB_DIR/addr/$3"; fi
if [ -z "$node" ]; then echo "upgrader lab: no node at address ${{3:-unknown}}" >&2; exit 255; fi
run_on_node "$node" "${{SSH_ORIGINAL_COMMAND:-exec /bin/sh -i}}"
"""

RUN_SCRIPT = """#!/bin/sh
# upgrader lab: node-run NODE COMMAND (generated; do not edit).
. {lib}
run_on_node "$1" "$2"
"""


# A node whose cgroup version differs from the host's gets /sys/fs/cgroup mounted so that the
# real `stat -fc %T /sys/fs/cgroup/` answers as on such a node (kubernetes.io/docs/concepts/
# architecture/cgroups: cgroup2fs for v2, tmpfs for v1). DIR/nodes/NAME/cgroup-vN says which.
CGROUP_MOUNTS = {
    "v1": 'if [ -e "$1/cgroup-v1" ]; then mount -t tmpfs -o ro,nosuid,nodev,noexec,mode=755 '
    "cgroup /sys/fs/cgroup 2>/dev/null; fi\n",
    "v2": 'if [ -e "$1/cgroup-v2" ]; then mount -t cgroup2 -o rw,nosuid,nodev,noexec '
    "cgroup2 /sys/fs/cgroup 2>/dev/null; fi\n",
}


def host_cgroup() -> str:
    """``v2`` when this machine's /sys/fs/cgroup is cgroup2fs, else ``v1``."""
    try:
        proc = captured(["stat", "-fc", "%T", "/sys/fs/cgroup/"], 10)
    except (OSError, subprocess.TimeoutExpired):
        return "v2"
    return "v2" if proc.stdout.strip() == "cgroup2fs" else "v1"


CGROUP_FS = "/sys/fs/cgroup/"


def cgroup_problem(mode: MountMode) -> str | None:
    """Why nodes whose cgroup version differs from the host's would not show theirs (the
    mount node-ns makes for them fails here), or None."""
    other = "v1" if host_cgroup() == "v2" else "v2"
    if mode.mode != "overlay":
        return f"mount mode 'path': cgroup {other} nodes show the host's /sys/fs/cgroup"
    mount = CGROUP_MOUNTS[other].split("then ", 1)[1].split(" 2>/dev/null", 1)[0]
    want = "tmpfs" if other == "v1" else "cgroup2fs"
    try:
        script = f"{mount} && stat -fc %T /sys/fs/cgroup/"
        proc = captured([*_unshare_argv(mode.userns), "/bin/sh", "-c", script], 20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cgroup {other} nodes show the host's /sys/fs/cgroup ({exc})"
    if proc.returncode != 0 or proc.stdout.strip() != want:
        why = " ".join((proc.stderr.strip().splitlines() or ["mount failed"])[0].split())
        return f"cgroup {other} nodes show the host's /sys/fs/cgroup ({why})"
    return None


def _work_name(overlaid: str) -> str:
    """The per-command overlay work directory of ``/<overlaid>`` (``usr/bin`` -> ``bin``)."""
    return {"etc": "etc", "usr/bin": "bin", "var/lib": "lib"}.get(
        overlaid, overlaid.replace("/", "-")
    )


def overlay_lines() -> str:
    """One ``mount -t overlay`` per ``tree.OVERLAID`` directory, joined with ``&&``."""
    return " &&\n".join(
        f'mount -t overlay overlay -o "lowerdir=/{d},upperdir=$R/{d},'
        f'workdir=$W/{_work_name(d)}" /{d}'
        for d in tree.OVERLAID
    )


def host_tool(
    lab_dir: Path, mode: MountMode, name: str
) -> tuple[str | None, tuple[str, str] | None]:
    """Where node tools find the host's ``name`` (e.g. the real kubectl client), and the
    bind mount that keeps it reachable when the node's own /usr/bin hides it."""
    found = shutil.which(name, path=os.environ.get("PATH", NODE_PATH))
    if found is None:
        return None, None
    real = os.path.realpath(found)
    hidden = any(
        real == h or real.startswith(h + "/") for h in (*(f"/{d}" for d in tree.OVERLAID), "/bin")
    )
    if not hidden or mode.mode == "path":
        return real, None
    placeholder = lab_dir / "bin" / f"host-{name}"
    placeholder.parent.mkdir(parents=True, exist_ok=True)
    placeholder.touch(mode=0o755)
    return str(placeholder), (real, str(placeholder))


def install(
    lab_dir: Path, mode: MountMode, pythonpath: str, binds: tuple[tuple[str, str], ...] = ()
) -> Path:
    """Write the scripts; return the ForceCommand path. ``binds`` are (host file, lab file)
    bind mounts made in each command's namespace before the overlays."""
    bindir = lab_dir / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    lib = bindir / "node-lib.sh"
    tree.write_file(lib, lib_script(lab_dir, mode, pythonpath), 0o644)
    bind_lines = "".join(f"mount --bind {_q(src)} {_q(dst)} 2>/dev/null\n" for src, dst in binds)
    other = "v1" if host_cgroup() == "v2" else "v2"  # nodes that need a mount
    cgroup = CGROUP_MOUNTS[other] if mode.mode == "overlay" else ""
    ns = (
        NS_SCRIPT.replace("{binds}", bind_lines)
        .replace("{cgroup}", cgroup)
        .replace("{overlays}", overlay_lines())
        .replace("{lockdir}", nodelock.LOCK_DIR)
    )
    tree.write_file(bindir / "node-ns", ns, 0o755)
    tree.write_file(bindir / "node-shell", SHELL_SCRIPT.format(lib=_q(str(lib))), 0o755)
    tree.write_file(bindir / "node-run", RUN_SCRIPT.format(lib=_q(str(lib))), 0o755)
    return bindir / "node-shell"


def ensure_lock_mountpoint() -> str | None:
    """The host's ``/run/upgrader`` (:data:`nodelock.LOCK_DIR`), the mount point each node
    command binds its own lock directory on: created root-owned 0700 when missing. Returns
    why it cannot serve (not root and missing: node commands then cannot take the node
    lock; a symlink or not root's alone: refused), or None."""
    path = nodelock.LOCK_DIR
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if os.geteuid() != 0:
            return f"{path} is missing and only root can create it: nodes cannot take the node lock"
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
        st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
        return (
            f"{path}: not a directory owned by root that only root may write (a symlink, "
            f"another owner, or group/other write); remove it (`rm -rf {path}`), then retry"
        )
    return None


def write_address_map(lab_dir: Path, nodes: list[tuple[str, str]]) -> None:
    """``DIR/addr/<address>`` holds the node name: what node-shell looks up."""
    d = lab_dir / "addr"
    d.mkdir(parents=True, exist_ok=True)
    for name, address in nodes:
        tree.write_file(d / address, name + "\n")


def run_on_node(
    lab_dir: Path, node: str, command: str, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` on ``node`` without SSH (the runner's own setup steps)."""
    return captured(
        ["/bin/sh", str(lab_dir / "bin" / "node-run"), node, command],
        timeout,
        env={"PATH": NODE_PATH, "HOME": os.environ.get("HOME", "/")},
    )
