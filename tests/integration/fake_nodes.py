"""Simulated remote nodes behind one real sshd: a ``ForceCommand`` wrapper learns which
loopback address was dialled (``SSH_CONNECTION``) and runs the command with that node's
fake tools first on PATH. The fake tools print what the real ones print (formats from
DESIGN §1); tests write them per node. This is a stand-in remote for transport and gather
tests, not the lab.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sshd import SSHServer

FORCE = """#!/bin/sh
addr=$(echo "$SSH_CONNECTION" | cut -d' ' -f3)
NODE_DIR="{root}/nodes/$addr"; export NODE_DIR
[ -d "$NODE_DIR" ] && echo "$$" >> "$NODE_DIR/sessions"
PATH="$NODE_DIR/bin:{root}/common-bin:$PATH"; export PATH
exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"
"""

# `cat` maps absolute paths into the node's root when the node has that file.
FAKE_CAT = """#!/bin/sh
[ $# -eq 0 ] && exec /bin/cat
rc=0
for f in "$@"; do
  if [ -e "$NODE_DIR/root$f" ]; then /bin/cat "$NODE_DIR/root$f" || rc=$?
  else /bin/cat "$f" || rc=$?
  fi
done
exit $rc
"""

# `id -u` answers from the node's `uid` file (default 0), everything else is the real id.
FAKE_ID = """#!/bin/sh
if [ "$1" = "-u" ] && [ -f "$NODE_DIR/uid" ]; then /bin/cat "$NODE_DIR/uid"; exit 0; fi
exec /usr/bin/id "$@"
"""

# sudo records its arguments (one per line), checks a password given with -S against the
# node's `sudo_password` file, then runs what follows `--`.
FAKE_SUDO = """#!/bin/sh
: > "$NODE_DIR/sudo.args"
for a in "$@"; do printf '%s\\n' "$a" >> "$NODE_DIR/sudo.args"; done
mode=n
while [ $# -gt 0 ]; do
  case "$1" in
    -n) shift ;;
    -S) mode=S; shift ;;
    -p) shift 2 ;;
    --) shift; break ;;
    *) echo "sudo: unexpected option $1" >&2; exit 1 ;;
  esac
done
if [ "$mode" = S ]; then
  IFS= read -r pw
  if [ "$pw" = "$(/bin/cat "$NODE_DIR/sudo_password")" ]; then echo ok > "$NODE_DIR/sudo.auth"
  else echo "Sorry, try again." >&2; exit 1
  fi
elif [ -f "$NODE_DIR/sudo_password" ]; then
  echo "sudo: a password is required" >&2; exit 1
fi
exec "$@"
"""


def _script(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    path.chmod(0o755)


@dataclass
class FakeNodes:
    server: SSHServer
    root: Path

    @classmethod
    def start(cls, directory: Path, addresses: Sequence[str]) -> FakeNodes:
        root = directory / "fake"
        _script(root / "common-bin" / "cat", FAKE_CAT)
        _script(root / "common-bin" / "id", FAKE_ID)
        _script(root / "common-bin" / "sudo", FAKE_SUDO)
        force = root / "force.sh"
        _script(force, FORCE.format(root=root))
        server = SSHServer.start(directory / "sshd", addresses=addresses, force_command=str(force))
        return cls(server, root)

    def stop(self) -> None:
        self.server.stop()

    def node_dir(self, address: str) -> Path:
        return self.root / "nodes" / address

    def reset(self, address: str) -> Path:
        d = self.node_dir(address)
        shutil.rmtree(d, ignore_errors=True)
        (d / "bin").mkdir(parents=True)
        (d / "root").mkdir()
        return d

    def sessions(self, address: str) -> int:
        """How many SSH commands the node has run since its last reset."""
        f = self.node_dir(address) / "sessions"
        return len(f.read_text().split()) if f.exists() else 0

    def tool(self, address: str, name: str, body: str) -> None:
        _script(self.node_dir(address) / "bin" / name, "#!/bin/sh\n" + textwrap.dedent(body))

    def file(self, address: str, path: str, content: str) -> None:
        dest = self.node_dir(address) / "root" / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(content)

    def kube_node(
        self,
        address: str,
        *,
        version: str = "v1.28.4",
        pkgver: str = "1.28.4-1.1",
        repo_minor: str = "1.28",
        held: Iterable[str] = ("kubeadm", "kubelet", "kubectl"),
        missing: Iterable[str] = (),
        kubelet_config: str = "apiVersion: kubelet.config.k8s.io/v1beta1\n"
        "kind: KubeletConfiguration\nauthentication:\n  anonymous:\n    enabled: false\n"
        "authorization:\n  mode: Webhook\nreadOnlyPort: 0\n",
    ) -> None:
        """A Debian node with kubeadm/kubelet/kubectl at ``version`` from pkgs.k8s.io.
        Tools in ``missing`` are not installed: running one fails as a shell does when the
        command is not found (this machine may have a real one further down PATH)."""
        self.reset(address)
        missing = set(missing)
        for tool in missing:
            self.tool(address, tool, f"echo 'sh: 1: {tool}: not found' >&2\nexit 127\n")
        held = [p for p in held if p not in missing]
        plain = version.lstrip("v")
        if "kubeadm" not in missing:
            self.tool(address, "kubeadm", f'[ "$*" = "version -o short" ] && echo {version}\n')
        if "kubelet" not in missing:
            self.tool(address, "kubelet", f'[ "$1" = --version ] && echo "Kubernetes {version}"\n')
        if "kubectl" not in missing:
            major, minor = plain.split(".")[:2]
            self.tool(
                address,
                "kubectl",
                f"""\
                cat <<'EOF'
                {{
                  "clientVersion": {{
                    "major": "{major}",
                    "minor": "{minor}",
                    "gitVersion": "{version}",
                    "gitTreeState": "clean",
                    "platform": "linux/amd64"
                  }},
                  "kustomizeVersion": "v5.0.4-0.20230601165947-6ce0bf390ce3"
                }}
                EOF
                """,
            )
        lines = []
        errors = []
        for pkg in ("kubeadm", "kubelet", "kubectl"):
            if pkg in missing:
                errors.append(f"echo 'dpkg-query: no packages found matching {pkg}' >&2")
            else:
                want = "hold" if pkg in held else "install"
                lines.append(f"echo '{pkg} {pkgver} {want} ok installed'")
        rc = "exit 1" if errors else "exit 0"
        self.tool(address, "dpkg-query", "\n".join([*errors, *lines, rc]) + "\n")
        holds = "".join(f"echo {p}\n" for p in sorted(held))
        self.tool(address, "apt-mark", f'[ "$1" = showhold ] && {{\n{holds}true\n}}\n')
        repo = f"https://pkgs.k8s.io/core:/stable:/v{repo_minor}/deb"
        madison = "".join(
            f"echo '   kubeadm | {repo_minor}.{p}-1.1 | {repo}  Packages'\n" for p in (4, 3, 0)
        )
        self.tool(address, "apt-cache", f'[ "$1" = madison ] && {{\n{madison}true\n}}\n')
        self.tool(
            address,
            "containerd",
            "echo 'containerd github.com/containerd/containerd v1.7.2 "
            "0cae528dd6cb557f7201036e9f43420650207b58'\n",
        )
        self.file(
            address,
            "/etc/apt/sources.list.d/kubernetes.list",
            "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] "
            f"https://pkgs.k8s.io/core:/stable:/v{repo_minor}/deb/ /\n",
        )
        self.file(address, "/var/lib/kubelet/config.yaml", kubelet_config)
