"""The pure parts of the lab's sudo setup (upgrader_lab.sudo): the sudoers texts, the host
drop-in (checked by the real visudo when it is installed), the node's /etc/hosts line and the
reach plan that lets a non-root user get to the lab's files past 0700 directories."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from upgrader_lab import sudo as labsudo


def test_user_dropin_is_passwordless_unless_a_password_is_asked() -> None:
    assert labsudo.user_dropin("op", False).splitlines()[-1] == "op ALL=(ALL:ALL) NOPASSWD: ALL"
    assert labsudo.user_dropin("op", True).splitlines()[-1] == "op ALL=(ALL:ALL) ALL"


def test_host_dropin_allows_one_command_without_arguments(tmp_path: Path) -> None:
    lab = Path("/srv/labs/a")
    text = labsudo.host_dropin(lab, "upgrader-lab")
    rules = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert rules == [
        "Defaults!/srv/labs/a/bin/node-enter !use_pty, !syslog, !pam_session, !pam_setcred, "
        'env_keep = "SSH_CONNECTION '
        'SSH_ORIGINAL_COMMAND"',
        'upgrader-lab ALL=(root) NOPASSWD: /srv/labs/a/bin/node-enter ""',
    ]
    assert labsudo.host_dropin_path(lab).parent == Path("/etc/sudoers.d")
    assert "." not in labsudo.host_dropin_path(lab).name  # sudo skips names with a dot
    assert labsudo.host_dropin_path(lab) != labsudo.host_dropin_path(Path("/srv/labs/b"))
    if shutil.which("visudo") is None:
        pytest.skip("visudo not installed")
    f = tmp_path / "dropin"
    f.write_text(text)
    assert subprocess.run(["visudo", "-cqf", str(f)], check=False).returncode == 0


def test_hosts_text_adds_debians_line_for_the_node_once() -> None:
    host = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n"
    assert labsudo.hosts_text(host, "cp-1") == host + "127.0.1.1\tcp-1\n"
    named = "127.0.0.1\tlocalhost\n10.0.0.5 cp-1 # mine\n"
    assert labsudo.hosts_text(named, "cp-1") == named
    assert labsudo.hosts_text("# cp-1 in a comment\n", "cp-1").endswith("127.0.1.1\tcp-1\n")


def test_reach_plan_covers_the_topmost_blocked_ancestor(tmp_path: Path) -> None:
    top = tmp_path / "top"
    lab = top / "inner" / "lab"
    lab.mkdir(parents=True)
    tmp_path.chmod(0o755)
    top.chmod(0o700)
    (top / "inner").chmod(0o700)
    open_dir = tmp_path / "open" / "py"
    open_dir.mkdir(parents=True)
    # pytest's own base directory may be 0700 already: then it is the topmost blocked one
    blocked = [p for p in reversed(tmp_path.parents) if not p.stat().st_mode & 0o001]
    first = blocked[0] if blocked else top
    covers, binds = labsudo.reach_plan([str(lab), str(open_dir), str(lab / "sub")])
    assert covers == [str(first)]
    # lab/sub comes back with lab; open/py needs binding only under a blocked ancestor
    assert binds == ([str(open_dir), str(lab)] if blocked else [str(lab)])
    script = labsudo.reach_script(covers, binds)
    assert script.splitlines()[0].startswith("mount -t tmpfs -o mode=0700")
    assert f"mount -t tmpfs -o mode=0755 upgrader-lab-reach '{first}'" in script
    assert f"mount --move /mnt/{binds.index(str(lab))} '{lab}'" in script
    assert labsudo.reach_script([], []) == ""


def test_spec_keys_ssh_user_and_sudo_password() -> None:
    from upgrader.errors import ConfigError
    from upgrader_lab import spec as labspec

    nodes = [{"name": "cp-1", "role": "control-plane"}]
    resolved = labspec.resolve(labspec.parse_spec({"nodes": nodes}, "s"))
    assert (resolved["ssh_user"], resolved["sudo_password"]) == ("upgrader-lab", False)
    spec = labspec.parse_spec({"nodes": nodes, "ssh_user": "ops", "sudo_password": True}, "s")
    assert (spec.ssh_user, spec.sudo_password) == ("ops", True)
    with pytest.raises(ConfigError, match="ssh_user"):
        labspec.parse_spec({"nodes": nodes, "ssh_user": "Bad User"}, "s")
    with pytest.raises(ConfigError, match="sudo_password"):
        labspec.parse_spec({"nodes": nodes, "sudo_password": "maybe"}, "s")
