"""Lab nodes entered as a non-root SSH user who reaches root through the real ``sudo``.

Owns, for a lab whose ``ssh_user`` is not root (the default, ``upgrader-lab``):

* the host system user sshd logs in (created once, idempotently: ``useradd`` with a home and
  ``/bin/sh``, its password field ``*``: no password login, yet not "locked" for sshd);
* the **host** sudoers drop-in ``/etc/sudoers.d/upgrader-lab-<hash of DIR>`` (validated with
  ``visudo -cf`` before it is put in place, removed by ``lab down``): it lets that user run
  exactly one command as root, ``DIR/bin/node-enter`` with no arguments, keeping only
  ``SSH_CONNECTION`` and ``SSH_ORIGINAL_COMMAND`` from the environment. sshd's ForceCommand
  is ``sudo -n DIR/bin/node-enter``; node-enter (root) checks the dialled address, builds the
  node's mount namespace like the root lab does, then drops to the user with ``setpriv
  --reuid --regid --init-groups`` and the user's own login environment before ``sh -c``;
* each node's sudo configuration: ``/etc/sudoers`` is Debian's default text (read from the
  installed ``sudo`` package, its md5 checked against dpkg's conffile record: ``Defaults
  use_pty``, ``env_reset``, ``secure_path`` included), ``/etc/sudoers.d`` is made opaque in
  the node's layer (the host's drop-ins, this lab's own included, are not seen on nodes) and
  holds ``upgrader-lab-user`` (``USER ALL=(ALL:ALL) NOPASSWD: ALL``, or ``ALL`` when the spec
  says ``sudo_password: true``) and ``upgrader-lab-plumbing`` (keeps ``LAB_DIR LAB_NODE
  PYTHONPATH`` across sudo so the simulated tools find their code: a documented divergence);
  the node's ``/usr/bin/sudo`` is the host's real, setuid one (the lab's stub is removed);
* the sudo password (``sudo_password: true``): generated once, stored in ``DIR/sudo-password``
  (0600), set in each node's own ``/etc/shadow`` with ``chpasswd`` inside the node (the
  host's account keeps no password); the inventory names it through ``sudo_password_env``
  (:data:`PASSWORD_ENV`), never by value.

Also: what node-enter needs so that the user's processes reach the lab's files even when a
parent directory is not searchable by others (a pytest temporary directory, a Python under
``/root``): inside the command's private mount namespace only, each such blocked ancestor is
covered by a tmpfs and the needed paths are bind-mounted back (:func:`reach_plan`).

Must not: touch any sudoers file but this lab's drop-in, give the user more than the one
entry point on the host, keep a password anywhere but ``DIR/sudo-password`` and the nodes'
shadow files, or run when the lab is not root (user-namespace mode keeps the stub).
"""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from upgrader.errors import ConfigError
from upgrader_lab.hostproc import captured
from upgrader_lab.node import tree

DEFAULT_USER = "upgrader-lab"
PASSWORD_ENV = "UPGRADER_LAB_SUDO_PASSWORD"  # noqa: S105 - a variable name
PASSWORD_FILE = "sudo-password"  # noqa: S105 - a file name
SUDOERS = Path("/etc/sudoers")
SUDOERS_D = Path("/etc/sudoers.d")
NODE_USER_DROPIN = "/etc/sudoers.d/upgrader-lab-user"
NODE_PLUMBING_DROPIN = "/etc/sudoers.d/upgrader-lab-plumbing"
ENTRY = "node-enter"
USER_SHELL = "/bin/sh"


class SudoSetupError(Exception):
    """The host cannot give the lab its sudo user (not a bad input)."""


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str


def find_sudo() -> str:
    for candidate in ("/usr/bin/sudo", "/bin/sudo"):
        if os.access(candidate, os.X_OK):
            return candidate
    raise ConfigError("sudo not found: install it with `apt-get install sudo` (or `make sshd`)")


def _run(argv: list[str], what: str, stdin: str | None = None) -> str:
    proc = captured(argv, 60, stdin=stdin)
    if proc.returncode != 0:
        detail = " ".join((proc.stderr or proc.stdout).split()) or f"exit {proc.returncode}"
        raise SudoSetupError(f"{what}: {detail}")
    return proc.stdout


def ensure_user(name: str) -> Account:
    """The host account ``name``: created when missing (a system account with a home and
    ``/bin/sh``), its password field set to ``*`` (no password; not locked, so sshd's
    public-key login works without PAM)."""
    entry = _existing_or_created(name)
    if not os.path.isdir(entry.pw_dir):
        os.makedirs(entry.pw_dir, mode=0o750, exist_ok=True)
        os.chown(entry.pw_dir, entry.pw_uid, entry.pw_gid)
    shadow = _shadow_field(name)
    if shadow is not None and shadow.startswith("!"):
        _run(["usermod", "-p", "*", name], f"cannot unlock the lab's SSH user {name}")
    return Account(name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def _existing_or_created(name: str) -> pwd.struct_passwd:
    """The account ``name``, created with ``useradd`` when missing. Two labs started at the
    same moment (parallel test workers) may both try: useradd then fails with "already
    exists" or on the passwd lock, so a failure is retried and lost races are accepted."""
    for attempt in range(5):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
        try:
            _run(
                [
                    "useradd",
                    "--system",
                    "--create-home",
                    "--user-group",
                    "--shell",
                    USER_SHELL,
                    "--comment",
                    "upgrader lab SSH user",
                    name,
                ],
                f"cannot create the lab's SSH user {name}",
            )
        except SudoSetupError:
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
    return pwd.getpwnam(name)


def _shadow_field(name: str) -> str | None:
    try:
        for line in Path("/etc/shadow").read_text().splitlines():
            parts = line.split(":")
            if parts[0] == name and len(parts) > 1:
                return parts[1]
    except OSError:
        return None
    return None


# --------------------------------------------------------------------------- sudoers texts


def debian_sudoers() -> str:
    """Debian's default ``/etc/sudoers`` as the installed sudo package ships it: the host's
    file, checked unmodified against the md5 dpkg recorded for the conffile."""
    find_sudo()
    proc = captured(["dpkg-query", "-W", "-f=${Conffiles}\\n", "sudo"], 30)
    md5 = None
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == str(SUDOERS):
            md5 = parts[1]
    if proc.returncode != 0 or md5 is None:
        raise ConfigError(
            "cannot read Debian's default sudoers: the sudo package is not installed "
            "(`apt-get install sudo`)"
        )
    data = SUDOERS.read_bytes()
    if hashlib.md5(data, usedforsecurity=False).hexdigest() != md5:
        raise ConfigError(
            f"{SUDOERS} differs from the sudo package's default; the lab copies Debian's "
            "default text to its nodes (reinstall it: apt-get install --reinstall "
            '-o Dpkg::Options::="--force-confask" sudo), or use ssh_user: root'
        )
    return data.decode()


def user_dropin(user: str, password: bool) -> str:
    rule = "ALL" if password else "NOPASSWD: ALL"
    return (
        "# upgrader lab: the node's admin user (as a cloud image or an installer sets one up)\n"
        f"{user} ALL=(ALL:ALL) {rule}\n"
    )


PLUMBING_DROPIN = (
    "# upgrader lab plumbing (not on a real node): the simulated node tools find their code\n"
    "# and their lab through these variables, which env_reset would drop.\n"
    'Defaults env_keep += "LAB_DIR LAB_NODE PYTHONPATH"\n'
)


def host_dropin_path(lab_dir: Path) -> Path:
    digest = hashlib.sha256(str(lab_dir).encode()).hexdigest()[:12]
    return SUDOERS_D / f"upgrader-lab-{digest}"


def host_dropin(lab_dir: Path, user: str) -> str:
    entry = lab_dir / "bin" / ENTRY
    return (
        f"# upgrader lab {lab_dir}: sshd's ForceCommand enters a node through this one\n"
        "# command (written by `upgrader lab up`, removed by `upgrader lab down`).\n"
        f"Defaults!{entry} !use_pty, !syslog, !pam_session, !pam_setcred, "
        'env_keep = "SSH_CONNECTION SSH_ORIGINAL_COMMAND"\n'
        f'{user} ALL=(root) NOPASSWD: {entry} ""\n'
    )


def install_host_dropin(lab_dir: Path, user: str) -> Path:
    """Write, validate (``visudo -cf``) and put in place the host drop-in."""
    path = host_dropin_path(lab_dir)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # a '.' name: sudo skips it
    tmp.write_text(host_dropin(lab_dir, user))
    os.chmod(tmp, 0o440)
    try:
        _run(["visudo", "-cqf", str(tmp)], f"visudo rejected the lab's sudoers drop-in {path}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def remove_host_dropin(lab_dir: Path) -> bool:
    path = host_dropin_path(lab_dir)
    if path.exists():
        path.unlink()
        return True
    return False


# --------------------------------------------------------------------------- password


def ensure_password(lab_dir: Path) -> str:
    path = lab_dir / PASSWORD_FILE
    if path.is_file():
        return path.read_text().strip()
    value = secrets.token_urlsafe(18)
    tree.write_file(path, value + "\n", 0o600)
    return value


# --------------------------------------------------------------------------- nodes


def hosts_text(host_hosts: str, node: str) -> str:
    """The node's /etc/hosts: the host's lines plus Debian's ``127.0.1.1 NAME`` (the
    installer's entry; sudo resolves the host name and warns "unable to resolve host")."""
    lines = host_hosts.splitlines()
    if any(node in ln.split("#", 1)[0].split()[1:] for ln in lines):
        return host_hosts
    return "\n".join([*lines, f"127.0.1.1\t{node}"]) + "\n"


def prepare_node(root: Path, user: str, password: bool, sudoers_text: str, node: str) -> None:
    """The node's sudo files in its layer ``root`` (``DIR/nodes/NAME/root``)."""
    etc = tree.in_root(root, "/etc")
    if not (etc / "hosts").exists():
        try:
            host_hosts = Path("/etc/hosts").read_text()
        except OSError:
            host_hosts = "127.0.0.1\tlocalhost\n"
        tree.write_file(etc / "hosts", hosts_text(host_hosts, node))
    tree.write_file(etc / "sudoers", sudoers_text, 0o440)
    dropins = etc / "sudoers.d"
    dropins.mkdir(parents=True, exist_ok=True)
    os.chmod(dropins, 0o755)  # noqa: S103 - as Debian ships /etc/sudoers.d
    # An opaque directory in the node's overlay layer: the host's drop-ins stay unseen.
    os.setxattr(dropins, "trusted.overlay.opaque", b"y")
    tree.write_file(tree.in_root(root, NODE_USER_DROPIN), user_dropin(user, password), 0o440)
    tree.write_file(tree.in_root(root, NODE_PLUMBING_DROPIN), PLUMBING_DROPIN, 0o440)
    stub = tree.in_root(root, "/usr/bin/sudo")
    if stub.is_file() and not stub.stat().st_mode & stat.S_ISUID:
        stub.unlink()  # the lab's stub: the node uses the host's real sudo


def set_node_password(lab_dir: Path, node: str, user: str, password: str) -> None:
    """``chpasswd`` inside the node (its /etc/shadow is copied up into the node's layer)."""
    run = lab_dir / "bin" / "node-run"
    proc = captured(
        ["/bin/sh", str(run), node, "chpasswd"],
        60,
        stdin=f"{user}:{password}\n",
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    if proc.returncode != 0:
        detail = " ".join(proc.stderr.split()) or f"exit {proc.returncode}"
        raise SudoSetupError(f"cannot set the sudo password on node {node}: {detail}")


# --------------------------------------------------------------------------- reachability


def _searchable_by_others(path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return True  # missing: nothing to hide
    return bool(st.st_mode & stat.S_IXOTH)


def reach_plan(needed: list[str]) -> tuple[list[str], list[str]]:
    """(blocked ancestors to cover with a tmpfs, paths to bind back) so that a non-root
    user can reach every path of ``needed`` in the node's namespace. An ancestor is
    blocked when others may not search it; only the topmost blocked one of each path is
    covered, and a path under a covered one is bound back."""
    covers: set[str] = set()
    binds: list[str] = []
    for raw in needed:
        path = os.path.realpath(raw)
        parts = Path(path).parts
        top = None
        for i in range(2, len(parts)):
            anc = str(Path(*parts[:i]))
            if not _searchable_by_others(anc):
                top = anc
                break
        if top is None:
            continue
        covers.add(top)
        binds.append(path)
    # a cover inside another cover is pointless (the outer tmpfs hides it)
    outer = sorted(c for c in covers if not any(c.startswith(o + "/") for o in covers))
    uniq = sorted(set(binds), key=lambda p: (p.count("/"), p))
    return outer, [b for b in uniq if not any(b.startswith(o + "/") for o in uniq if o != b)]


def python_paths(python: str) -> list[str]:
    """What running ``python`` needs: the interpreter's real file and its prefix (for a
    venv: the venv and the base installation)."""
    real = os.path.realpath(python)
    prefix = str(Path(real).parent.parent)
    venv = str(Path(python).absolute().parent.parent)
    return sorted({prefix, venv})


def which_setpriv() -> str:
    found = shutil.which("setpriv")
    if found is None:
        raise ConfigError("setpriv(1) not found (util-linux): needed to enter nodes as a user")
    return found


# --------------------------------------------------------------------------- scripts

ENTER_SCRIPT = """#!/bin/sh
# upgrader lab: run by sshd's ForceCommand through `sudo -n` (host drop-in), as root
# (generated by `upgrader lab up`; do not edit). sudo kept only SSH_CONNECTION and
# SSH_ORIGINAL_COMMAND; the dialled address (3rd field) names the node.
. {lib}
set -f
set -- ${{SSH_CONNECTION:-}}
addr=${{3:-}}
case $addr in
  ''|*[!0-9.]*) echo "upgrader lab: no node at address ${{addr:-unknown}}" >&2; exit 255 ;;
esac
node=
if [ -r "$LAB_DIR/addr/$addr" ]; then read -r node < "$LAB_DIR/addr/$addr"; fi
case $node in
  ''|.*|*[!a-z0-9.-]*) echo "upgrader lab: no node at address $addr" >&2; exit 255 ;;
esac
LAB_NS=node-ns-user
export LAB_NS
run_on_node "$node" "${{SSH_ORIGINAL_COMMAND:-exec /bin/sh -i}}"
"""

USER_TAIL = """# The command runs as the lab's SSH user {user}, in the environment sshd gives it.
{reach}cd {home} 2>/dev/null || cd /
set -- "$3" $SSH_CONNECTION
exec env -i HOME={home} USER={user} LOGNAME={user} SHELL={shell} MAIL=/var/mail/{user} \\
  PATH=/usr/local/bin:/usr/bin:/bin:/usr/games LANG=C.UTF-8 \\
  SSH_CONNECTION="$SSH_CONNECTION" SSH_CLIENT="$2 $3 $5" \\
  SSH_ORIGINAL_COMMAND="$SSH_ORIGINAL_COMMAND" \\
  LAB_DIR="$LAB_DIR" LAB_NODE="$LAB_NODE" PYTHONPATH="$PYTHONPATH" \\
  {setpriv} --reuid={uid} --regid={gid} --init-groups {shell} -c "$1"
"""


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def reach_script(covers: list[str], binds: list[str]) -> str:
    """Shell lines: cover each blocked ancestor with a tmpfs, bind the needed paths back
    (staged on a private tmpfs at /mnt, in this namespace only)."""
    if not covers:
        return ""
    lines = ["mount -t tmpfs -o mode=0700 upgrader-lab-stage /mnt || exit 255"]
    for i, path in enumerate(binds):
        lines.append(f"mkdir /mnt/{i} && mount --rbind {_q(path)} /mnt/{i} || exit 255")
    for cover in covers:
        lines.append(f"mount -t tmpfs -o mode=0755 upgrader-lab-reach {_q(cover)} || exit 255")
    for i, path in enumerate(binds):
        lines.append(f"mkdir -p {_q(path)} && mount --move /mnt/{i} {_q(path)} || exit 255")
    lines.append("umount /mnt")
    return "\n".join(lines) + "\n"


def install_scripts(
    lab_dir: Path, account: Account, needed: list[str], setpriv: str
) -> tuple[list[str], list[str]]:
    """``DIR/bin/node-enter`` and ``DIR/bin/node-ns-user`` (node-ns with the user tail);
    returns the reach plan (covers, binds)."""
    bindir = lab_dir / "bin"
    lib = bindir / "node-lib.sh"
    tree.write_file(bindir / ENTRY, ENTER_SCRIPT.format(lib=_q(str(lib))), 0o755)
    covers, binds = reach_plan(needed)
    ns = (bindir / "node-ns").read_text()
    tail = 'exec /bin/sh -c "$3"\n'
    if not ns.endswith(tail):
        raise SudoSetupError(f"{bindir / 'node-ns'}: unexpected end (cannot add the user step)")
    user_tail = USER_TAIL.format(
        user=account.name,
        home=_q(account.home),
        shell=USER_SHELL,
        uid=account.uid,
        gid=account.gid,
        setpriv=_q(setpriv),
        reach=reach_script(covers, binds),
    )
    tree.write_file(bindir / "node-ns-user", ns[: -len(tail)] + user_tail, 0o755)
    return covers, binds
