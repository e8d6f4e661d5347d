"""known_hosts parsing (markers, hashed names, patterns) and host-certificate checks, with
keys and certificates made by the real ssh-keygen."""

from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path

import paramiko
import pytest

from upgrader.transport.known_hosts import (
    CertificateRejected,
    KnownHosts,
    check_host_certificate,
    host_field_matches,
    parse_certificate,
)


def keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "t", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def pub(key: Path) -> str:
    return " ".join(Path(str(key) + ".pub").read_text().split()[:2])


def certify(ca: Path, key: Path, *args: str) -> bytes:
    subprocess.run(
        ["ssh-keygen", "-q", "-s", str(ca), "-I", "id-1", "-z", "7", *args, str(key) + ".pub"],
        check=True,
        capture_output=True,
    )
    text = Path(str(key) + "-cert.pub").read_text()
    return base64.b64decode(text.split()[1])


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    return {n: keygen(tmp_path / n) for n in ("ca", "other_ca", "host")}


def test_host_field_matching() -> None:
    assert host_field_matches("[10.0.0.1]:2222", "[10.0.0.1]:2222")
    assert not host_field_matches("[10.0.0.1]:2222", "1")  # brackets are literal
    assert host_field_matches("a,*.corp", "w-1.corp")
    assert not host_field_matches("*.corp,!bad.corp", "bad.corp")
    assert host_field_matches("W-?.CORP", "w-1.corp")
    assert not host_field_matches("|1|bm90|bm90", "x")
    assert not host_field_matches("|1|broken", "x")


def test_markers_bad_lines_and_revocation(keys: dict[str, Path], tmp_path: Path) -> None:
    host, ca = pub(keys["host"]), pub(keys["ca"])
    text = (
        f"# comment\n\nh1 {host}\n@revoked * {host}\n@cert-authority *.corp {ca}\n"
        "h2 ssh-ed25519 %%%\n@weird h3 " + host + "\nh4 ssh-dss AAAA\nonlyone\n"
    )
    kh = KnownHosts.parse(tmp_path / "kh", text)
    assert kh.host_keys("h1") == []  # listed, but revoked
    assert [e.lineno for e in kh.authorities("w.corp")] == [5]
    assert kh.authorities("w.other") == []
    key = paramiko.PKey.from_type_string(*host.split()[:1], base64.b64decode(host.split()[1]))
    assert kh.is_revoked(key) and kh.revoked_line(key) == 4
    assert [s.split(":")[0] for s in kh.skipped] == ["line 6", "line 7", "line 8", "line 9"]


def test_valid_certificate(keys: dict[str, Path], tmp_path: Path) -> None:
    blob = certify(keys["ca"], keys["host"], "-h", "-n", "w-1.corp,*.lab", "-V", "-5m:+1h")
    cert = parse_certificate(blob)
    assert cert.principals == ("w-1.corp", "*.lab") and cert.serial == 7
    kh = KnownHosts.parse(tmp_path / "kh", f"@cert-authority * {pub(keys['ca'])}\n")
    cas = kh.authorities("w-1.corp")
    assert check_host_certificate(blob, "w-1.corp", cas, kh) is cas[0]
    assert check_host_certificate(blob, "x.lab", cas, kh) is cas[0]  # wildcard principal


@pytest.mark.parametrize(
    ("args", "host", "later", "reason"),
    [
        (("-n", "w-1"), "w-1", None, "is not a host certificate"),
        (("-h", "-n", "w-1"), "w-2", None, "is for w-1, not for w-2"),
        (("-h", "-n", "w-1", "-V", "-5m:+1h"), "w-1", 7200, "has expired"),
        (("-h", "-n", "w-1", "-V", "+1h:+2h"), "w-1", None, "is not valid yet"),
        (("-h",), "w-1", None, "names no principals"),
    ],
)
def test_rejected_certificates(
    keys: dict[str, Path],
    tmp_path: Path,
    args: tuple[str, ...],
    host: str,
    later: int | None,
    reason: str,
) -> None:
    # seconds from now, not a timestamp: parameters must be the same in every pytest worker
    now = None if later is None else time.time() + later
    blob = certify(keys["ca"], keys["host"], *args)
    kh = KnownHosts.parse(tmp_path / "kh", f"@cert-authority * {pub(keys['ca'])}\n")
    with pytest.raises(CertificateRejected, match=reason):
        check_host_certificate(blob, host, kh.authorities(host), kh, now=now)


def test_untrusted_ca_is_no_answer_and_tampering_is_rejected(
    keys: dict[str, Path], tmp_path: Path
) -> None:
    blob = certify(keys["other_ca"], keys["host"], "-h", "-n", "w-1")
    kh = KnownHosts.parse(tmp_path / "kh", f"@cert-authority * {pub(keys['ca'])}\n")
    assert check_host_certificate(blob, "w-1", kh.authorities("w-1"), kh) is None
    good = certify(keys["ca"], keys["host"], "-h", "-n", "w-1")
    tampered = good.replace(b"w-1", b"w-9")
    with pytest.raises(CertificateRejected, match="signature does not verify"):
        check_host_certificate(tampered, "w-9", kh.authorities("w-9"), kh)
    with pytest.raises(CertificateRejected, match="malformed"):
        check_host_certificate(good[:60], "w-1", kh.authorities("w-1"), kh)


def test_revoked_ca(keys: dict[str, Path], tmp_path: Path) -> None:
    blob = certify(keys["ca"], keys["host"], "-h", "-n", "w-1")
    ca = pub(keys["ca"])
    kh = KnownHosts.parse(tmp_path / "kh", f"@cert-authority * {ca}\n@revoked x {ca}\n")
    assert kh.authorities("w-1") == [] and len(kh.revoked_authority("w-1")) == 1
    with pytest.raises(CertificateRejected, match=r"CA key .* @revoked"):
        check_host_certificate(blob, "w-1", [], kh)
