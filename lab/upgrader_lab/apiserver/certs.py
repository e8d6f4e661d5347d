"""TLS material, the admin token and the kubeconfig of one lab.

Owns ``DIR/pki/`` (a per-lab CA and a server certificate for 127.0.0.1/localhost, made
with ``cryptography`` on first start and reused after), ``DIR/secrets/admin-token``
(0600) and ``DIR/kubeconfig`` (0600; server URL, CA data, token, context ``lab``), plus
the atomic-write helper the rest of the server uses and :func:`self_signed` (the builder
of a self-issued certificate, also for tests that plant certificates on nodes). Must not:
log or print the token.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ADMIN_USER = "lab-admin"
ADMIN_GROUPS = ("system:authenticated",)
CONTEXT = "lab"


_KEY_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)


def _key_usage(*usages: str) -> x509.KeyUsage:
    """``x509.KeyUsage`` with only ``usages`` set (it takes all nine flags)."""
    return x509.KeyUsage(**{u: u in usages for u in _KEY_USAGES})


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same dir, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


@dataclass(frozen=True)
class LabPki:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    token_file: Path

    def token(self) -> str:
        return self.token_file.read_text(encoding="ascii").strip()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def self_signed(
    key: ec.EllipticCurvePrivateKey,
    common_name: str,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.CertificateBuilder:
    """A certificate of ``key`` issued by itself to ``common_name``, valid from
    ``not_before`` to ``not_after``: add extensions, then sign."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )


def _make_ca(cluster: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        self_signed(
            key, f"{cluster}-lab-ca", now - dt.timedelta(minutes=5), now + dt.timedelta(days=3650)
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            _key_usage("digital_signature", "key_cert_sign", "crl_sign"),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _make_server(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, hosts: list[str]
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage("digital_signature", "key_encipherment"),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def server_hosts(bind_host: str) -> list[str]:
    hosts = [
        "127.0.0.1",
        "::1",
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    if bind_host not in hosts and bind_host not in ("0.0.0.0", "::", ""):  # noqa: S104
        hosts.append(bind_host)
    return hosts


def ensure_pki(directory: Path, cluster: str, bind_host: str) -> LabPki:
    """Create the CA, server cert and admin token once; later starts reuse them."""
    pki = directory / "pki"
    sec = directory / "secrets"
    paths = LabPki(
        ca_cert=pki / "ca.crt",
        ca_key=pki / "ca.key",
        server_cert=pki / "apiserver.crt",
        server_key=pki / "apiserver.key",
        token_file=sec / "admin-token",
    )
    pki.mkdir(parents=True, exist_ok=True)
    sec.mkdir(parents=True, exist_ok=True)
    os.chmod(sec, 0o700)
    if not (paths.ca_cert.exists() and paths.ca_key.exists()):
        ca_key, ca_cert = _make_ca(cluster)
        atomic_write(paths.ca_key, _key_pem(ca_key), 0o600)
        atomic_write(paths.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
        for p in (paths.server_cert, paths.server_key):
            p.unlink(missing_ok=True)
    hosts = server_hosts(bind_host)
    if not _server_cert_ok(paths, hosts):
        loaded = serialization.load_pem_private_key(paths.ca_key.read_bytes(), None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{paths.ca_key}: not an EC key")
        ca_cert_obj = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
        key, cert = _make_server(loaded, ca_cert_obj, hosts)
        atomic_write(paths.server_key, _key_pem(key), 0o600)
        atomic_write(paths.server_cert, cert.public_bytes(serialization.Encoding.PEM))
    if not paths.token_file.exists() or not paths.token_file.read_text().strip():
        atomic_write(paths.token_file, (secrets.token_urlsafe(32) + "\n").encode(), 0o600)
    return paths


def _server_cert_ok(paths: LabPki, hosts: list[str]) -> bool:
    if not (paths.server_cert.exists() and paths.server_key.exists()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    have = {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    have |= set(san.get_values_for_type(x509.DNSName))
    return all(str(ipaddress.ip_address(h)) in have if _is_ip(h) else h in have for h in hosts)


def _is_ip(h: str) -> bool:
    try:
        ipaddress.ip_address(h)
    except ValueError:
        return False
    return True


def write_kubeconfig(path: Path, url: str, pki: LabPki, cluster: str) -> None:
    ca_b64 = base64.b64encode(pki.ca_cert.read_bytes()).decode("ascii")
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": cluster, "cluster": {"server": url, "certificate-authority-data": ca_b64}}
        ],
        "contexts": [{"name": CONTEXT, "context": {"cluster": cluster, "user": ADMIN_USER}}],
        "current-context": CONTEXT,
        "preferences": {},
        "users": [{"name": ADMIN_USER, "user": {"token": pki.token()}}],
    }
    atomic_write(path, yaml.safe_dump(doc, sort_keys=False).encode("utf-8"), 0o600)
