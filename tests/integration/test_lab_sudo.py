"""Lab nodes reached as a non-root SSH user through the real sudo (Debian's sudoers).

Reality checked here: Debian 12's sudo package (``/etc/sudoers`` with ``Defaults use_pty``,
``env_reset``, ``secure_path``; ``sudo -n`` says "a password is required" when a password is
needed; ``sudo -S`` reads the password from stdin), OpenSSH's sshd running the ForceCommand
as the authenticated user. Upstream: sudoers(5) and sudo(8) of sudo 1.9.13 (Debian
bookworm), https://www.sudo.ws/docs/man/1.9.13/sudoers.man/ .
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
import yaml
from labkit import LabFiles, lab_down, lab_up, ssh_run

from upgrader.errors import ConfigError
from upgrader.transport.base import SSHTarget
from upgrader.transport.ssh import SSHTransport
from upgrader_lab import spec as labspec
from upgrader_lab import sudo as labsudo

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.getuid() != 0, reason="real sudo on lab nodes needs a root lab"),
]

NODES = [{"name": "cp-1", "role": "control-plane"}, {"name": "w-1", "role": "worker"}]


class Lab(LabFiles):
    def run(self, node: str, command: str) -> tuple[int, str, str]:
        return ssh_run(self.connect(node), command)

    def target(self, node: str, password_env: str | None = None) -> SSHTarget:
        return SSHTarget(
            node=node,
            host=self.address(node),
            port=self.ssh_port,
            user=self.ssh_user,
            identity_file=str(self.dir / "id_ed25519"),
            known_hosts=str(self.dir / "known_hosts"),
            sudo=True,
            sudo_password_env=password_env,
        )


def _up(lab_dir: Path, spec: dict[str, Any]) -> Lab:
    lab_up(lab_dir, {"nodes": NODES, **spec}, api=False)
    return Lab(lab_dir)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    # under pytest's 0700 temporary directory: the user reaches it only through the
    # lab's per-command tmpfs covers (upgrader_lab.sudo.reach_plan)
    lab_dir = tmp_path_factory.mktemp("sudo") / "lab"
    the_lab = _up(lab_dir, {})
    yield the_lab
    lab_down(lab_dir)


def test_login_is_the_non_root_user_and_root_is_refused(lab: Lab) -> None:
    assert lab.ssh_user == labspec.DEFAULT_SSH_USER == "upgrader-lab"
    assert lab.info["sudo"]["mode"] == "real"
    rc, out, err = lab.run("cp-1", "id -un; id -u; hostname; echo $HOME; echo $PATH")
    assert rc == 0, err
    name, uid, host, home, path = out.split()
    assert (name, host, home) == ("upgrader-lab", "cp-1", "/home/upgrader-lab")
    assert uid != "0"
    assert path == "/usr/local/bin:/usr/bin:/bin:/usr/games"  # Debian sshd's user PATH
    with pytest.raises(paramiko.AuthenticationException):
        lab.connect("cp-1", user="root").close()
    inv = yaml.safe_load((lab.dir / "inventory.yaml").read_text())
    assert inv["ssh"]["user"] == "upgrader-lab" and inv["ssh"]["sudo"] is True
    assert "sudo_password_env" not in inv["ssh"]


def test_the_user_needs_sudo_for_root_files_and_sudo_n_works(lab: Lab) -> None:
    rc, _, err = lab.run("w-1", "echo x > /etc/kubernetes/marker")
    assert rc == 2 and "Permission denied" in err
    rc, out, err = lab.run("w-1", "sudo -n sh -c 'id -u; echo $PATH; echo x > /etc/kubernetes/m'")
    assert rc == 0, err
    assert err == ""  # no "unable to resolve host": the node's /etc/hosts names it
    assert out.split() == ["0", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    assert (lab.dir / "nodes/w-1/root/etc/kubernetes/m").read_text() == "x\n"
    rc, out, _ = lab.run("w-1", "sudo -n kubeadm version -o short")
    assert (rc, out) == (0, "v1.27.8\n")


def test_the_node_sudoers_is_debians_default_with_use_pty(lab: Lab) -> None:
    rc, out, err = lab.run("cp-1", "sudo -n cat /etc/sudoers")
    assert rc == 0, err
    assert "Defaults\tuse_pty\n" in out and "Defaults\tenv_reset\n" in out
    assert out == labsudo.debian_sudoers()
    rc, out, err = lab.run("cp-1", "sudo -n ls /etc/sudoers.d; stat -c %A /usr/bin/sudo")
    assert rc == 0, err
    # the host's drop-ins (this lab's own entry rule included) are not on the node
    assert out.split() == ["upgrader-lab-plumbing", "upgrader-lab-user", "-rwsr-xr-x"]
    rc, out, _ = lab.run("cp-1", "sudo -n -l")
    assert "(ALL : ALL) NOPASSWD: ALL" in out and "use_pty" in out


def test_the_host_dropin_allows_only_the_entry_point(lab: Lab) -> None:
    path = labsudo.host_dropin_path(lab.dir)
    text = path.read_text()
    assert oct(path.stat().st_mode & 0o777) == "0o440"
    assert subprocess.run(["visudo", "-cqf", str(path)], check=False).returncode == 0
    rules = [ln for ln in text.splitlines() if ln and not ln.startswith(("#", "Defaults"))]
    assert rules == [f'upgrader-lab ALL=(root) NOPASSWD: {lab.dir}/bin/node-enter ""']
    listed = subprocess.run(
        ["sudo", "-l", "-U", "upgrader-lab"], capture_output=True, text=True, check=False
    ).stdout
    assert f"{lab.dir}/bin/node-enter" in listed and "(ALL" not in listed


def test_sftp_runs_as_the_user_in_the_node_view(lab: Lab) -> None:
    client = lab.connect("w-1")
    try:
        sftp = client.open_sftp()
        with sftp.open("/etc/hostname") as fh:
            assert fh.read() == b"w-1\n"
        with pytest.raises(PermissionError):
            sftp.open("/etc/kubernetes/sftp-marker", "w")
        with sftp.open("/home/upgrader-lab/from-sftp", "w") as fh:
            fh.write(b"hello\n")
        uid = int(lab.run("w-1", "id -u")[1])
        assert uid != 0 and sftp.stat("/home/upgrader-lab/from-sftp").st_uid == uid
        sftp.remove("/home/upgrader-lab/from-sftp")
    finally:
        client.close()


def test_the_transport_wraps_root_commands_in_sudo_n(lab: Lab) -> None:
    with SSHTransport(lab.target("cp-1")) as t:
        assert t.run("id -u", sudo=False).stdout == f"{lab.run('cp-1', 'id -u')[1]}"
        r = t.run("id -u; test -w /etc/kubernetes && echo writable")
        assert (r.exit_code, r.stdout) == (0, "0\nwritable\n")


def test_password_path_right_and_wrong(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = _up(tmp_path / "pw-lab", {"sudo_password": True})
    try:
        pw_file = lab.dir / labsudo.PASSWORD_FILE
        assert oct(pw_file.stat().st_mode & 0o777) == "0o600"
        inv = yaml.safe_load((lab.dir / "inventory.yaml").read_text())
        assert inv["ssh"]["sudo_password_env"] == labsudo.PASSWORD_ENV
        password = pw_file.read_text().strip()
        assert password not in (lab.dir / "inventory.yaml").read_text()
        rc, _, err = lab.run("w-1", "sudo -n true")
        assert rc == 1 and "a password is required" in err
        # the product without a password variable: one line naming the node
        with SSHTransport(lab.target("w-1")) as t, pytest.raises(ConfigError) as no_pw:
            t.run("true")
        assert str(no_pw.value).startswith("node w-1: sudo as upgrader-lab failed without")
        assert "a password is required" in str(no_pw.value)
        monkeypatch.setenv("LAB_TEST_SUDO_PW", "not-" + password)
        with (
            SSHTransport(lab.target("w-1", "LAB_TEST_SUDO_PW")) as t,
            pytest.raises(ConfigError) as wrong,
        ):
            t.run("true")
        message = str(wrong.value)
        assert "\n" not in message and password not in message
        assert message.startswith("node w-1: sudo as upgrader-lab failed with the password")
        assert "incorrect password" in message
        monkeypatch.setenv("LAB_TEST_SUDO_PW", password)
        with SSHTransport(lab.target("w-1", "LAB_TEST_SUDO_PW")) as t:
            r = t.run("id -u; cat /etc/hostname")
            assert (r.exit_code, r.stdout) == (0, "0\nw-1\n")
            assert password not in r.command
        # node_env after the password on stdin: sudo -S reads its line, the root shell
        # exports the rest; the password is not exported, the command's stdin is empty
        env = (("https_proxy", "http://u:p@proxy:3128"), ("no_proxy", ".local"))
        target = dataclasses.replace(lab.target("w-1", "LAB_TEST_SUDO_PW"), env=env)
        with SSHTransport(target) as t:
            r = t.run('id -u; echo "$https_proxy|$no_proxy"; cat; echo ---; env')
            head, environment = r.stdout.split("---\n", 1)
            assert head == "0\nhttp://u:p@proxy:3128|.local\n", r.stderr
            assert password not in environment and "https_proxy=http://u:p@" in environment
            assert "proxy:3128" not in r.command
    finally:
        lab_down(lab.dir)
    assert not labsudo.host_dropin_path(lab.dir).exists()


def test_ssh_user_root_keeps_the_root_login(tmp_path: Path) -> None:
    lab = _up(tmp_path / "root-lab", {"ssh_user": "root"})
    try:
        assert lab.info["sudo"] == {"mode": "stub", "user": "root"}
        assert lab.run("cp-1", "id -u")[:2] == (0, "0\n")
        assert not labsudo.host_dropin_path(lab.dir).exists()
        inv = yaml.safe_load((lab.dir / "inventory.yaml").read_text())
        assert inv["ssh"]["user"] == "root" and inv["ssh"]["sudo"] is False
    finally:
        lab_down(lab.dir)


def test_apply_with_a_sudo_password_succeeds_and_never_records_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``upgrader apply`` on a 1 control plane + 2 workers lab whose sudo asks a password:
    the run succeeds as the non-root user, and the password appears in no file the run
    wrote (state, transcripts, summary, events) nor in its output."""
    from cli_run import cli

    spec = {
        "sudo_password": True,
        "version": "v1.27.8",
        "nodes": [*NODES, {"name": "w-2", "role": "worker"}],
        "delays": {"kubelet_ready": 0.3, "pod_termination": 0.1},
    }
    lab_dir = tmp_path / "lab"
    lab_up(lab_dir, spec)
    try:
        password = (lab_dir / labsudo.PASSWORD_FILE).read_text().strip()
        monkeypatch.setenv(labsudo.PASSWORD_ENV, password)
        events = tmp_path / "events.jsonl"
        args = ["apply", "-i", str(lab_dir / "inventory.yaml"), "--to", "v1.28.4", "--yes"]
        run = cli(*args, "--events", str(events), timeout=600)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        assert password not in run.stdout + run.stderr
        written = [p for p in (lab_dir / ".upgrader").rglob("*") if p.is_file()]
        assert written and events.is_file()
        for path in [*written, events]:
            if path.suffix != ".db":
                assert password not in path.read_text(errors="replace"), path
        calls = (lab_dir / "nodes" / "cp-1" / "calls.jsonl").read_text()
        assert "kubeadm" in calls and password not in calls
    finally:
        lab_down(lab_dir)
