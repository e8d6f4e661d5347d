"""Issue 12, attack 11: the kubeconfig's client key never lands in a file, even when the
CLI is SIGKILLed while it talks to the API; an ``exec`` credential plugin is announced.

Against the real lab API server (``lab_api_fixture``) and the real CLI in a subprocess.
The lab authenticates with its bearer token; the kubeconfig also carries a client
certificate and key signed by the lab's CA, which the Kubernetes client loads into TLS on
every connection (the lab does not ask for it; ``tests/unit/test_kube_client.py`` checks
a server that requires it).
"""

from __future__ import annotations

import base64
import datetime
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_run import cli, cli_env
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from lab_api_fixture import LabAPI, small_spec, wait_for

LEASE_PATH = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"


def client_cert(ca_cert: Path, ca_key: Path) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) for ``CN=upgrader-test, O=system:masters``, signed by the
    lab's CA. RSA: a key body of many distinctive base64 lines."""
    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    signer = serialization.load_pem_private_key(ca_key.read_bytes(), None)
    assert isinstance(signer, ec.EllipticCurvePrivateKey)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "upgrader-test"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(signer, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def key_body_lines(key_pem: bytes) -> list[bytes]:
    return [
        line.strip()
        for line in key_pem.splitlines()
        if line.strip() and not line.startswith(b"-----") and len(line.strip()) >= 16
    ]


def files_holding(root: Path, needles: list[bytes], recursive: bool) -> list[Path]:
    """Regular files under ``root`` (small ones) holding any of ``needles``."""
    found: list[Path] = []
    walker = os.walk(root) if recursive else [(str(root), [], os.listdir(root))]
    for dirpath, _dirs, names in walker:
        for name in names:
            p = Path(dirpath) / name
            try:
                if not p.is_file() or p.is_symlink() or p.stat().st_size > 256 * 1024:
                    continue
                data = p.read_bytes()
            except OSError:
                continue
            if any(n in data for n in needles):
                found.append(p)
    return found


def write_kubeconfig(lab: LabAPI, path: Path, user: dict[str, Any]) -> None:
    ca_b64 = base64.b64encode(lab.ca_file.read_bytes()).decode()
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "lab", "cluster": {"server": lab.url, "certificate-authority-data": ca_b64}}
        ],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "ops"}}],
        "current-context": "lab",
        "users": [{"name": "ops", "user": user}],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)


def write_inventory(path: Path, kubeconfig: Path) -> None:
    doc = {
        "cluster": {"name": "lab"},
        "kubeconfig": {"path": str(kubeconfig), "context": "lab"},
        "nodes": [
            {"name": "cp-1", "address": "127.61.0.2", "role": "control-plane"},
            {"name": "w-1", "address": "127.61.0.3", "role": "worker"},
        ],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture
def slow_lease_lab(tmp_path: Path) -> Iterator[LabAPI]:
    """A lab whose GETs of the lock lease hang (the client times out and retries): the CLI is caught
    mid-request, connected, with its credentials loaded."""
    spec = small_spec(
        faults=[{"api": {"method": "GET", "path_prefix": LEASE_PATH, "timeout": 60, "times": 20}}]
    )
    server = LabAPI.start(tmp_path / "lab", spec)
    try:
        yield server
    finally:
        server.stop()


def test_client_key_is_in_no_file_after_a_sigkilled_run(
    slow_lease_lab: LabAPI, tmp_path: Path
) -> None:
    lab = slow_lease_lab
    cert_pem, key_pem = client_cert(lab.ca_file, lab.dir / "pki" / "ca.key")
    needles = key_body_lines(key_pem)
    assert len(needles) > 10
    kubeconfig = tmp_path / "ops" / "kubeconfig"
    kubeconfig.parent.mkdir()
    write_kubeconfig(
        lab,
        kubeconfig,
        {
            "token": lab.token,
            "client-certificate-data": base64.b64encode(cert_pem).decode(),
            "client-key-data": base64.b64encode(key_pem).decode(),
        },
    )
    inv = tmp_path / "ops" / "inventory.yaml"
    write_inventory(inv, kubeconfig)
    child_tmp = tmp_path / "child-tmp"
    child_tmp.mkdir()
    env = cli_env()
    env["TMPDIR"] = str(child_tmp)
    proc = subprocess.Popen(
        [sys.executable, "-m", "upgrader", "status", "-i", str(inv)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        # the lease GET arrived at the server: TLS is up, the client key was loaded
        wait_for(
            lambda: proc.poll() is not None or lab.get_json("/_lab/v1/faults")["faults"],
            90,
            "the CLI's lease request",
        )
        assert proc.poll() is None, proc.communicate()
        # while it runs: the key is in no file (a reader of /tmp could take it now)
        during = files_holding(child_tmp, needles, recursive=True)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    after = files_holding(child_tmp, needles, recursive=True)
    after += files_holding(Path(tempfile.gettempdir()), needles, recursive=False)
    assert during == [], f"the client key is on disk while the CLI runs: {during}"
    assert after == [], f"the client key is left on disk after SIGKILL: {after}"


def test_a_client_key_kubeconfig_still_talks_to_the_api(tmp_path: Path) -> None:
    """The same kubeconfig (token + client certificate + key, CA data) works end to end:
    ``status`` reads the lease through TLS with the key loaded, and exits 0."""
    lab = LabAPI.start(tmp_path / "lab", small_spec())
    try:
        cert_pem, key_pem = client_cert(lab.ca_file, lab.dir / "pki" / "ca.key")
        kubeconfig = tmp_path / "kubeconfig"
        write_kubeconfig(
            lab,
            kubeconfig,
            {
                "token": lab.token,
                "client-certificate-data": base64.b64encode(cert_pem).decode(),
                "client-key-data": base64.b64encode(key_pem).decode(),
            },
        )
        inv = tmp_path / "inventory.yaml"
        write_inventory(inv, kubeconfig)
        r = cli("status", "-i", str(inv), timeout=120)
    finally:
        lab.stop()
    assert r.returncode == 0, r.stderr
    assert "free" in r.stdout, r.stdout
