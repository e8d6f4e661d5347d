"""SSHTransport and SSHPool against a real OpenSSH sshd (and simulated nodes behind one)."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_nodes import FakeNodes
from sshd import SSHServer, free_port, keygen

from upgrader.errors import ConfigError, HostKeyError, TransportError
from upgrader.transport.base import SSHTarget, Transport
from upgrader.transport.ssh import SSHPool, SSHTransport, sudo_wrap

pytestmark = pytest.mark.integration


def fast(target: SSHTarget) -> SSHTransport:
    """A transport with quick retries (3 attempts, ~10-50 ms apart)."""
    return SSHTransport(target, connect_attempts=3, retry_wait=0.01, retry_max_wait=0.05)


def fast_pool() -> SSHPool:
    return SSHPool(connect_attempts=3, retry_wait=0.01, retry_max_wait=0.05)


@pytest.fixture
def known_hosts(sshd_server: SSHServer, tmp_path: Path) -> Path:
    return sshd_server.write_known_hosts(tmp_path / "known_hosts")


@pytest.fixture
def transport(sshd_server: SSHServer, known_hosts: Path) -> Iterator[SSHTransport]:
    t = fast(sshd_server.target("node-a", known_hosts))
    yield t
    t.close()


# --------------------------------------------------------------------------- commands


def test_is_a_transport(transport: SSHTransport) -> None:
    assert isinstance(transport, Transport)
    assert transport.node == "node-a"


def test_stdout_stderr_and_exit_code(transport: SSHTransport) -> None:
    r = transport.run("echo out; echo err >&2; echo more", timeout=30, sudo=False)
    assert (r.exit_code, r.stdout, r.stderr, r.timed_out) == (0, "out\nmore\n", "err\n", False)
    assert r.ok and r.command == "echo out; echo err >&2; echo more"


def test_non_zero_exit_code(transport: SSHTransport) -> None:
    r = transport.run("echo partial; exit 3", timeout=30, sudo=False)
    assert r.exit_code == 3 and not r.ok and r.stdout == "partial\n"


def test_stdin_is_closed(transport: SSHTransport) -> None:
    r = transport.run("cat; echo done", timeout=30, sudo=False)
    assert r.stdout == "done\n"


def test_timeout_closes_the_channel_and_the_connection_stays_usable(
    transport: SSHTransport,
) -> None:
    r = transport.run("echo started; sleep 8; echo never", timeout=1, sudo=False)
    assert r.timed_out and r.exit_code is None and not r.ok
    assert r.stdout == "started\n"
    assert transport.run("echo again", timeout=30, sudo=False).stdout == "again\n"


def test_large_output_on_both_streams(transport: SSHTransport) -> None:
    mb = 1024 * 1024
    cmd = (
        f"head -c {mb} /dev/zero | tr '\\000' a; "
        f"head -c {mb} /dev/zero | tr '\\000' b >&2; "
        f"head -c {mb} /dev/zero | tr '\\000' c"
    )
    r = transport.run(cmd, timeout=120, sudo=False)
    assert r.ok
    assert len(r.stdout) == 2 * mb and set(r.stdout) == {"a", "c"}
    assert len(r.stderr) == mb and set(r.stderr) == {"b"}


def test_one_connection_is_reused(transport: SSHTransport) -> None:
    seen = {transport.run("echo $SSH_CONNECTION", sudo=False).stdout for _ in range(3)}
    assert len(seen) == 1


def test_session_dropped_mid_command_then_reconnects(transport: SSHTransport) -> None:
    # Kill the sshd process serving this session: the connection drops mid-command.
    with pytest.raises(TransportError, match=r"node-a: SSH session .* connection lost") as exc:
        transport.run("echo started; kill -9 $PPID; sleep 5", timeout=30, sudo=False)
    assert exc.value.node == "node-a"
    assert transport.run("echo back", timeout=30, sudo=False).stdout == "back\n"


def test_command_killed_without_exit_status_is_a_dropped_session(
    transport: SSHTransport,
) -> None:
    # Kill the command's whole process group (as a crashed node tool would be): sshd closes
    # the channel with no exit status while the connection itself stays up.
    with pytest.raises(TransportError, match=r"node-a: .* dropped .*no exit status"):
        transport.run("echo started; kill -9 0; sleep 5", timeout=30, sudo=False)
    before = transport.run("echo $SSH_CONNECTION", sudo=False)
    assert before.ok
    assert transport.run("echo $SSH_CONNECTION", sudo=False).stdout == before.stdout


def test_logs_start_and_end_with_node_name(
    transport: SSHTransport, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="upgrader.transport"):
        transport.run("echo logged", sudo=False)
    msgs = [r.getMessage() for r in caplog.records if r.name == "upgrader.transport"]
    assert any("node-a" in m and "start" in m and "echo logged" in m for m in msgs)
    assert any("node-a" in m and "end: exit 0" in m for m in msgs)


def test_sftp_get(transport: SSHTransport, tmp_path: Path) -> None:
    remote = tmp_path / "remote.bin"
    remote.write_bytes(bytes(range(256)) * 1000)
    local = tmp_path / "out" / "snapshot.db"
    local.parent.mkdir()
    transport.sftp_get(str(remote), local)
    assert local.read_bytes() == remote.read_bytes()
    assert not (tmp_path / "out" / "snapshot.db.part").exists()
    with pytest.raises(TransportError, match=r"node-a: sftp get .*missing"):
        transport.sftp_get(str(tmp_path / "missing"), tmp_path / "out" / "x")


def test_stream_to_writes_stdout_byte_for_byte(transport: SSHTransport, tmp_path: Path) -> None:
    """The etcd snapshot's copy: a command's binary stdout into a 0600 local file (via
    .part), stderr kept apart; a failing command leaves no file."""
    import stat

    remote = tmp_path / "remote.bin"
    data = bytes(range(256)) * 4000  # > one channel window, every byte value
    remote.write_bytes(data)
    local = tmp_path / "out" / "snapshot.db"
    local.parent.mkdir()
    r = transport.stream_to(f"echo note >&2; cat -- {remote}", local, timeout=60, sudo=False)
    assert r.ok and r.stdout == "" and r.stderr == "note\n"
    assert local.read_bytes() == data and stat.S_IMODE(local.stat().st_mode) == 0o600
    assert not (tmp_path / "out" / "snapshot.db.part").exists()
    bad = tmp_path / "out" / "missing.db"
    r = transport.stream_to(f"cat -- {tmp_path / 'missing'}", bad, timeout=60, sudo=False)
    assert r.exit_code == 1 and "No such file" in r.stderr
    assert not bad.exists() and not bad.with_name("missing.db.part").exists()


# --------------------------------------------------------------------------- host keys


def test_unknown_host_key_is_refused(
    sshd_server: SSHServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    t = fast(sshd_server.target("cp-1", empty))
    with (
        caplog.at_level(logging.WARNING, logger="upgrader.transport"),
        pytest.raises(HostKeyError) as exc,
    ):
        t.run("true", sudo=False)
    msg = str(exc.value)
    assert "node cp-1" in msg and f"127.0.0.1:{sshd_server.port}" in msg
    assert "not in" in msg and "\n" not in msg
    assert exc.value.node == "cp-1"
    assert empty.read_text() == ""
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]


def test_missing_known_hosts_file_is_refused(sshd_server: SSHServer, tmp_path: Path) -> None:
    t = fast(sshd_server.target("cp-1", tmp_path / "nope"))
    with pytest.raises(HostKeyError, match="cp-1"):
        t.run("true", sudo=False)


@pytest.mark.parametrize("policy", ["strict", "accept-new"])
def test_changed_host_key_is_refused(sshd_server: SSHServer, tmp_path: Path, policy: str) -> None:
    other = keygen(tmp_path / "other_host_key")
    blob = Path(str(other) + ".pub").read_text().split()[1]
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{sshd_server.port} ssh-ed25519 {blob}\n")
    target = sshd_server.target("w-7", kh, host_key_policy=policy)
    with pytest.raises(HostKeyError, match=r"node w-7: host key of 127\.0\.0\.1:\d+ CHANGED"):
        fast(target).run("true", sudo=False)
    assert kh.read_text().count("\n") == 1


def test_accept_new_records_the_key(sshd_server: SSHServer, tmp_path: Path) -> None:
    kh = tmp_path / "ssh" / "known_hosts"  # neither the file nor its directory exist yet
    t = fast(sshd_server.target("w-1", kh, host_key_policy="accept-new"))
    assert t.run("echo ok", sudo=False).stdout == "ok\n"
    t.close()
    assert kh.read_text() == sshd_server.host_key_line()
    strict = fast(sshd_server.target("w-1", kh))
    assert strict.run("echo again", sudo=False).ok
    strict.close()


# --------------------------------------------------------------------------- connect errors


def test_connection_refused_after_retries(
    sshd_server: SSHServer, known_hosts: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nothing listens there
    t = fast(sshd_server.target("gone", known_hosts, port=port))
    with (
        caplog.at_level(logging.INFO, logger="upgrader.transport"),
        pytest.raises(
            TransportError,
            match=r"node gone: cannot connect to .* after 3 attempt\(s\): connection refused$",
        ),
    ):
        t.run("true", sudo=False)
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 2 and all("gone" in r.getMessage() for r in retries)
    # retries are INFO (shown with -v): by default only the node's finding speaks
    assert all(r.levelno == logging.INFO for r in retries)
    assert all("connection refused" in r.getMessage() for r in retries)


def test_wrong_key_is_an_authentication_error_without_retries(
    sshd_server: SSHServer, known_hosts: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stranger = keygen(tmp_path / "stranger")
    target = sshd_server.target("cp-2", known_hosts, identity_file=str(stranger))
    with (
        caplog.at_level(logging.WARNING, logger="upgrader.transport"),
        pytest.raises(TransportError, match="node cp-2: authentication as") as e,
    ):
        fast(target).run("true", sudo=False)
    assert f"failed with the key {stranger}:" in str(e.value)
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]


def test_missing_identity_file_is_a_config_error(
    sshd_server: SSHServer, known_hosts: Path, tmp_path: Path
) -> None:
    target = sshd_server.target("cp-3", known_hosts, identity_file=str(tmp_path / "nokey"))
    with pytest.raises(ConfigError, match=r"node cp-3: identity_file .*nokey does not exist"):
        fast(target).run("true", sudo=False)


def test_unknown_host_key_policy_is_a_config_error(
    sshd_server: SSHServer, known_hosts: Path
) -> None:
    with pytest.raises(ConfigError, match="host_key_policy 'yes'"):
        SSHTransport(sshd_server.target("x", known_hosts, host_key_policy="yes"))


# --------------------------------------------------------------------------- jump host


def _jump_setup(
    bastion_server: SSHServer, fake: FakeNodes, addr: str, tmp_path: Path
) -> tuple[SSHTarget, SSHTarget]:
    fake.reset(addr)
    kh = bastion_server.write_known_hosts(tmp_path / "known_hosts")
    with kh.open("a") as f:
        f.write(fake.server.host_key_line(addr))
    bastion = bastion_server.target("bastion", kh)
    return bastion, fake.server.target("behind", kh, host=addr, jump=bastion)


def test_proxy_jump_through_a_direct_tcpip_channel(
    sshd_server: SSHServer, fake_nodes_sshd: FakeNodes, tmp_path: Path
) -> None:
    addr = "127.0.0.19"
    before = sshd_server.log_text().count("Accepted publickey")
    _, node = _jump_setup(sshd_server, fake_nodes_sshd, addr, tmp_path)
    with fast_pool() as pool:
        r = pool.get(node).run("echo $NODE_DIR; echo $SSH_CONNECTION", sudo=False)
        assert r.ok, r.stderr
        node_dir, conn = r.stdout.splitlines()
        assert node_dir.endswith(addr) and conn.split()[2] == addr
    # the bastion's sshd authenticated us once: the jump connection
    assert sshd_server.log_text().count("Accepted publickey") == before + 1


def test_proxy_jump_really_goes_through_the_bastion(
    fake_nodes_sshd: FakeNodes, tmp_path: Path
) -> None:
    # A bastion that forbids forwarding: the node itself is reachable directly, yet the
    # connection fails, so it was attempted through the bastion.
    with SSHServer.start(tmp_path / "bastion", extra_config=["PermitOpen none"]) as strict:
        _, node = _jump_setup(strict, fake_nodes_sshd, "127.0.0.19", tmp_path)
        with pytest.raises(TransportError, match=r"node behind: via jump host bastion: .*tunnel"):
            fast(node).run("true", sudo=False)


def test_unreachable_behind_jump_names_the_jump(sshd_server: SSHServer, tmp_path: Path) -> None:
    kh = sshd_server.write_known_hosts(tmp_path / "known_hosts")
    bastion = sshd_server.target("bastion", kh)
    node = sshd_server.target("far", kh, port=free_port(), jump=bastion)
    with pytest.raises(TransportError, match=r"node far: via jump host bastion: .*tunnel"):
        fast(node).run("true", sudo=False)


# --------------------------------------------------------------------------- sudo


def test_sudo_wrap_quotes() -> None:
    assert sudo_wrap("echo 'a b'; id", with_password=False) == (
        "sudo -n -- sh -c 'echo '\"'\"'a b'\"'\"'; id'"
    )
    assert sudo_wrap("id", with_password=True) == ("sudo -S -p '' -- sh -c 'exec </dev/null; id'")


def _fake_node(fake: FakeNodes, addr: str, uid: int) -> Path:
    """The fake node at ``addr``, reset, its SSH user's id ``uid``: its directory."""
    d = fake.reset(addr)
    (d / "uid").write_text(f"{uid}\n")
    return d


def _fake_node_transport(
    fake: FakeNodes, addr: str, tmp_path: Path, **overrides: object
) -> SSHTransport:
    kh = tmp_path / "known_hosts"
    kh.write_text(fake.server.host_key_line(addr))
    target = fake.server.target(f"n-{addr}", kh, host=addr, **overrides)
    return fast(target)


def test_sudo_skipped_when_remote_user_is_root(fake_nodes_sshd: FakeNodes, tmp_path: Path) -> None:
    addr = "127.0.0.16"
    d = _fake_node(fake_nodes_sshd, addr, uid=0)
    with _fake_node_transport(fake_nodes_sshd, addr, tmp_path) as t:
        r = t.run("echo as-root", sudo=True)
    assert r.stdout == "as-root\n" and r.command == "echo as-root"
    assert not (d / "sudo.args").exists()


def test_sudo_wraps_for_a_non_root_user(fake_nodes_sshd: FakeNodes, tmp_path: Path) -> None:
    addr = "127.0.0.17"
    d = _fake_node(fake_nodes_sshd, addr, uid=1000)
    with _fake_node_transport(fake_nodes_sshd, addr, tmp_path) as t:
        r = t.run('echo "it\'s $((1+1))"', sudo=True)
        assert r.ok, r.stderr
        assert r.stdout == "it's 2\n"
        assert r.command == 'echo "it\'s $((1+1))"'  # the Result shows what the caller ran
        assert (d / "sudo.args").read_text().splitlines() == [
            "-n",
            "--",
            "sh",
            "-c",
            'echo "it\'s $((1+1))"',
        ]
        (d / "sudo.args").unlink()
        assert t.run("echo plain", sudo=False).stdout == "plain\n"
        assert not (d / "sudo.args").exists()
    with _fake_node_transport(fake_nodes_sshd, addr, tmp_path, sudo=False) as t:
        assert t.run("echo no-sudo-node", sudo=True).ok
        assert not (d / "sudo.args").exists()


def test_sudo_password_goes_to_stdin_only(
    fake_nodes_sshd: FakeNodes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    addr = "127.0.0.18"
    d = _fake_node(fake_nodes_sshd, addr, uid=1000)
    secret = "s3cr3t pa55 'x'"
    (d / "sudo_password").write_text(secret + "\n")
    monkeypatch.setenv("UPGRADER_TEST_SUDO_PW", secret)
    with (
        caplog.at_level(logging.DEBUG),
        _fake_node_transport(
            fake_nodes_sshd, addr, tmp_path, sudo_password_env="UPGRADER_TEST_SUDO_PW"
        ) as t,
    ):
        r = t.run("echo root-work; cat; echo stdin-was-empty", sudo=True)
    assert r.ok, r.stderr
    assert r.stdout == "root-work\nstdin-was-empty\n"
    assert (d / "sudo.auth").read_text() == "ok\n"
    args = (d / "sudo.args").read_text()
    assert args.splitlines()[:5] == ["-S", "-p", "", "--", "sh"]
    assert secret not in args and secret not in r.command
    assert all(secret not in rec.getMessage() for rec in caplog.records)


def test_sudo_password_env_unset_is_a_config_error(
    fake_nodes_sshd: FakeNodes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    addr = "127.0.0.18"
    _fake_node(fake_nodes_sshd, addr, uid=1000)
    monkeypatch.delenv("UPGRADER_TEST_NO_SUCH_PW", raising=False)
    with (
        _fake_node_transport(
            fake_nodes_sshd, addr, tmp_path, sudo_password_env="UPGRADER_TEST_NO_SUCH_PW"
        ) as t,
        pytest.raises(ConfigError, match="UPGRADER_TEST_NO_SUCH_PW, which is not set"),
    ):
        t.run("true", sudo=True)


# --------------------------------------------------------------------------- pool


def test_pool_from_16_threads_keeps_one_connection_per_node(
    sshd_server: SSHServer, known_hosts: Path
) -> None:
    nodes = [f"node-{i}" for i in range(4)]
    seen: dict[str, set[str]] = defaultdict(set)
    errors: list[BaseException] = []
    lock = threading.Lock()
    with fast_pool() as pool:

        def work(i: int) -> None:
            try:
                for j in range(6):
                    node = nodes[(i + j) % len(nodes)]
                    t = pool.get(sshd_server.target(node, known_hosts))
                    r = t.run(f"echo {i}-{j}; echo $SSH_CONNECTION", timeout=60, sudo=False)
                    assert r.ok, r.stderr
                    first, conn = r.stdout.splitlines()
                    assert first == f"{i}-{j}"
                    with lock:
                        seen[node].add(conn)
            except BaseException as e:  # surfaced below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert pool.get(sshd_server.target("node-0", known_hosts)) is pool.get(
            sshd_server.target("node-0", known_hosts)
        )
    assert errors == []
    assert set(seen) == set(nodes)
    assert all(len(conns) == 1 for conns in seen.values()), seen
    assert len({next(iter(c)) for c in seen.values()}) == 4


def test_pool_replaces_a_transport_whose_target_changed(
    sshd_server: SSHServer, known_hosts: Path
) -> None:
    with fast_pool() as pool:
        a = pool.get(sshd_server.target("n", known_hosts))
        b = pool.get(sshd_server.target("n", known_hosts, keepalive=5))
        assert a is not b and b.run("true", sudo=False).ok
