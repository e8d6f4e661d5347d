"""known_hosts markers against real OpenSSH sshds: ``@revoked`` keys are refused before any
command runs, ``@cert-authority`` host certificates are verified, and hashed entries,
comments and unparsable lines keep working (issue 12, attack 9)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sshd import SSHServer, keygen

from upgrader.errors import HostKeyError
from upgrader.transport.base import SSHTarget
from upgrader.transport.ssh import SSHTransport

pytestmark = pytest.mark.integration


def fast(target: SSHTarget) -> SSHTransport:
    return SSHTransport(target, connect_attempts=3, retry_wait=0.01, retry_max_wait=0.05)


def pub(key: Path) -> str:
    """``TYPE BASE64`` of a key pair's public half."""
    return " ".join(Path(str(key) + ".pub").read_text().split()[:2])


def fp(key: Path) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(key) + ".pub"], capture_output=True, text=True, check=True
    ).stdout
    return out.split()[1]


def sign_host_key(ca: Path, host_key: Path, principals: str, validity: str = "-5m:+1h") -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-s", str(ca), "-I", "test-host", "-h", "-n", principals,
         "-V", validity, str(host_key) + ".pub"],
        check=True, capture_output=True,
    )  # fmt: skip
    return Path(str(host_key) + "-cert.pub")


def hashed(name: str) -> str:
    salt = b"0123456789abcdefghij"
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def known_hosts(tmp_path: Path, text: str) -> Path:
    """``tmp_path/known_hosts`` holding ``text``."""
    kh = tmp_path / "known_hosts"
    kh.write_text(text)
    return kh


def refused(server: SSHServer, node: str, kh: Path, match: str, **target: str) -> None:
    """A command for ``node`` on ``server``, trusting ``kh``, fails on a host key error that
    matches ``match``."""
    with pytest.raises(HostKeyError, match=match):
        fast(server.target(node, kh, **target)).run("true", sudo=False)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return keygen(tmp_path_factory.mktemp("ca") / "ca", "test-ca")


@pytest.fixture(scope="module")
def cert_server(tmp_path_factory: pytest.TempPathFactory, ca: Path) -> Iterator[SSHServer]:
    """An sshd presenting a host certificate for 127.0.0.1 signed by ``ca``."""
    d = tmp_path_factory.mktemp("sshd-cert")
    host_key = keygen(d / "ssh_host_ed25519_key", "cert-host")
    cert = sign_host_key(ca, host_key, "127.0.0.1")
    server = SSHServer.start(d, host_key=host_key, extra_config=[f"HostCertificate {cert}"])
    try:
        yield server
    finally:
        server.stop()


def _name(server: SSHServer, host: str = "127.0.0.1") -> str:
    return f"[{host}]:{server.port}"


def _ran(server: SSHServer, t: SSHTransport, marker: Path) -> bool:
    try:
        t.run(f"touch {marker}", sudo=False)
    finally:
        t.close()
    return marker.exists()


# --------------------------------------------------------------------------- @revoked


@pytest.mark.parametrize("policy", ["strict", "accept-new"])
def test_revoked_key_is_refused_even_when_listed(
    sshd_server: SSHServer, tmp_path: Path, policy: str
) -> None:
    kh = tmp_path / "known_hosts"
    key = pub(sshd_server.host_key)
    kh.write_text(f"{_name(sshd_server)} {key}\n@revoked * {key}\n")
    before = kh.read_text()
    logins = sshd_server.log_text().count("Accepted publickey")
    t = fast(sshd_server.target("w-3", kh, host_key_policy=policy))
    with pytest.raises(HostKeyError) as exc:
        t.run(f"touch {tmp_path / 'ran'}", sudo=False)
    msg = str(exc.value)
    assert msg.startswith("node w-3: host key of 127.0.0.1:") and "REVOKED" in msg
    assert fp(sshd_server.host_key) in msg and "line 2: @revoked" in msg and "\n" not in msg
    assert exc.value.node == "w-3"
    assert not (tmp_path / "ran").exists()
    assert kh.read_text() == before
    # refused before authentication: sshd never logged us in
    assert sshd_server.log_text().count("Accepted publickey") == logins


def test_revoked_key_for_another_host_pattern_is_still_refused(
    sshd_server: SSHServer, tmp_path: Path
) -> None:
    kh = known_hosts(tmp_path, f"@revoked old-name.example {pub(sshd_server.host_key)}\n")
    refused(
        sshd_server,
        "n",
        kh,
        r"node n: .* is REVOKED \(.*line 1: @revoked\)",
        host_key_policy="accept-new",
    )
    assert kh.read_text().count("\n") == 1


def test_revoking_another_key_changes_nothing(sshd_server: SSHServer, tmp_path: Path) -> None:
    other = keygen(tmp_path / "other")
    kh = known_hosts(
        tmp_path, f"@revoked * {pub(other)}\n{_name(sshd_server)} {pub(sshd_server.host_key)}\n"
    )
    assert _ran(sshd_server, fast(sshd_server.target("n", kh)), tmp_path / "ran")


def test_hashed_entries_comments_and_bad_lines(
    sshd_server: SSHServer, tmp_path: Path, ca: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kh = known_hosts(
        tmp_path,
        "# a comment\n\n"
        f"@cert-authority *.corp.example {pub(ca)}\n"
        "broken.example ssh-ed25519 not*base64\n"
        "@bogus x ssh-ed25519 AAAA\n"
        f"{hashed(_name(sshd_server))} {pub(sshd_server.host_key)}\n",
    )
    with caplog.at_level(logging.WARNING, logger="upgrader.transport"):
        assert _ran(sshd_server, fast(sshd_server.target("n", kh)), tmp_path / "ran")
    warned = [r.getMessage() for r in caplog.records]
    assert any("line 4" in w and "ignored" in w for w in warned), warned
    assert any("line 5: unknown marker @bogus" in w for w in warned), warned


def test_changed_key_behind_a_hashed_entry_is_still_refused(
    sshd_server: SSHServer, tmp_path: Path
) -> None:
    other = keygen(tmp_path / "other")
    kh = known_hosts(tmp_path, f"{hashed(_name(sshd_server))} {pub(other)}\n")
    refused(sshd_server, "n", kh, "CHANGED")


# --------------------------------------------------------------------------- @cert-authority


def test_certificate_signed_by_a_trusted_ca_is_accepted(
    cert_server: SSHServer, ca: Path, tmp_path: Path
) -> None:
    kh = known_hosts(tmp_path, f"@cert-authority * {pub(ca)}\n")
    assert _ran(cert_server, fast(cert_server.target("c-1", kh)), tmp_path / "ran")
    assert kh.read_text().count("\n") == 1  # nothing recorded


def test_plain_key_still_works_on_a_server_with_a_certificate(
    cert_server: SSHServer, tmp_path: Path
) -> None:
    kh = cert_server.write_known_hosts(tmp_path / "known_hosts")
    assert _ran(cert_server, fast(cert_server.target("c-1", kh)), tmp_path / "ran")


def test_certificate_of_an_untrusted_ca_is_refused(cert_server: SSHServer, tmp_path: Path) -> None:
    other_ca = keygen(tmp_path / "other-ca")
    kh = known_hosts(tmp_path, f"@cert-authority [127.0.0.1]:{cert_server.port} {pub(other_ca)}\n")
    with pytest.raises(HostKeyError) as exc:
        fast(cert_server.target("c-2", kh)).run(f"touch {tmp_path / 'ran'}", sudo=False)
    msg = str(exc.value)
    assert "node c-2" in msg and "trusts only the certificate authority on line 1" in msg
    assert not (tmp_path / "ran").exists()


def test_certificate_for_another_principal_is_rejected(
    cert_server: SSHServer, ca: Path, tmp_path: Path
) -> None:
    kh = known_hosts(tmp_path, f"@cert-authority * {pub(ca)}\n")
    t = fast(cert_server.target("c-3", kh, host="localhost"))
    with pytest.raises(HostKeyError) as exc:
        t.run(f"touch {tmp_path / 'ran'}", sudo=False)
    assert "REJECTED" in str(exc.value) and "is for 127.0.0.1, not for localhost" in str(exc.value)
    assert not (tmp_path / "ran").exists()


def test_revoked_ca_is_refused(cert_server: SSHServer, ca: Path, tmp_path: Path) -> None:
    kh = known_hosts(tmp_path, f"@cert-authority * {pub(ca)}\n@revoked * {pub(ca)}\n")
    with pytest.raises(HostKeyError, match="c-4"):
        fast(cert_server.target("c-4", kh)).run(f"touch {tmp_path / 'ran'}", sudo=False)
    assert not (tmp_path / "ran").exists()


def test_revoked_certified_key_is_refused(cert_server: SSHServer, ca: Path, tmp_path: Path) -> None:
    kh = known_hosts(
        tmp_path, f"@cert-authority * {pub(ca)}\n@revoked * {pub(cert_server.host_key)}\n"
    )
    refused(cert_server, "c-5", kh, r"c-5: .*REVOKED")


def test_ca_only_under_accept_new_records_the_plain_key_of_a_server_without_certificate(
    sshd_server: SSHServer, ca: Path, tmp_path: Path
) -> None:
    kh = known_hosts(tmp_path, f"@cert-authority * {pub(ca)}\n")
    refused(sshd_server, "p", kh, r"plain key, and .* trusts only the certificate auth")
    t = fast(sshd_server.target("p", kh, host_key_policy="accept-new"))
    assert _ran(sshd_server, t, tmp_path / "ran")
    assert kh.read_text().splitlines()[1] == sshd_server.host_key_line().strip()
