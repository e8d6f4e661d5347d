"""known_hosts as OpenSSH reads it: plain keys, ``@revoked`` keys and ``@cert-authority`` lines.

Owns parsing a known_hosts file (paramiko's ``HostKeys`` crashes on marker lines and does
not know them): comments and blank lines skipped; host fields as hashed ``|1|salt|hmac``
names or comma-separated OpenSSH patterns (``*``, ``?``, ``!negation``); the three kinds of
lines; a line that cannot be parsed (bad base64, a key type paramiko does not know) is
skipped with a warning naming file and line, as ``ssh`` skips it. Also owns checking an
OpenSSH host certificate (``PROTOCOL.certkeys``) against the ``@cert-authority`` keys that
match a host: the CA's signature, host type, principals and validity window. paramiko
negotiates certificate host keys and checks that the server holds the certified key, but
never checks the certificate itself; :func:`check_host_certificate` does.

Semantics, OpenSSH's except where said: a plain key matches the hosts its line names; a
``@cert-authority`` key vouches for certificates of the hosts its line names; a key on an
``@revoked`` line is refused for every host whatever the line's host field says (stricter
than ``ssh``, which applies the field: a revoked key is revoked), also as a CA key and also
when the same key is listed as a plain key for the host.

Must not: open connections, write the file (``accept-new`` appends in :mod:`.ssh`), or log
anything but the warnings about skipped lines.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko

log = logging.getLogger("upgrader.transport")

CERT_SUFFIX = "-cert-v01@openssh.com"
_HOST_CERT = 2  # SSH2_CERT_TYPE_HOST
#: Public-key fields of each plain key type inside a certificate (PROTOCOL.certkeys).
_KEY_FIELDS = {"ssh-ed25519": 1, "ecdsa-sha2-nistp256": 2, "ecdsa-sha2-nistp384": 2,
               "ecdsa-sha2-nistp521": 2, "ssh-rsa": 2}  # fmt: skip
#: CA signature algorithms accepted (OpenSSH's default CASignatureAlgorithms: no SHA-1).
CA_SIGNATURE_ALGORITHMS = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
)


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:...`` as ``ssh-keygen -l`` prints it."""
    return str(key.fingerprint)


def _pattern_match(name: str, pattern: str) -> bool:
    """OpenSSH ``match_pattern``: ``*`` and ``?`` are the only wildcards (``[`` of
    ``[host]:port`` is literal), case-insensitive."""
    if "*" not in pattern and "?" not in pattern:
        return name.lower() == pattern.lower()
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, name, re.IGNORECASE | re.DOTALL) is not None


def host_field_matches(field: str, name: str) -> bool:
    """Whether a known_hosts host field names ``name`` (``host`` or ``[host]:port``)."""
    if field.startswith("|1|"):
        parts = field.split("|")
        if len(parts) != 4:
            return False
        try:
            salt = base64.b64decode(parts[2], validate=True)
            want = base64.b64decode(parts[3], validate=True)
        except (binascii.Error, ValueError):
            return False
        got = hmac.new(salt, name.encode(), hashlib.sha1).digest()
        return hmac.compare_digest(got, want)
    matched = False
    for pattern in field.split(","):
        if pattern.startswith("!"):
            if _pattern_match(name, pattern[1:]):
                return False
        elif _pattern_match(name, pattern):
            matched = True
    return matched


@dataclass(frozen=True)
class Entry:
    """One usable known_hosts line."""

    marker: str  # "" | "revoked" | "cert-authority"
    hosts: str  # the host field as written
    keytype: str  # as written: ssh-ed25519, ssh-rsa, ...
    key: paramiko.PKey
    lineno: int

    @property
    def blob(self) -> bytes:
        return self.key.asbytes()


class KnownHosts:
    """A parsed known_hosts file (see module docstring)."""

    def __init__(self, path: Path, entries: list[Entry], skipped: list[str]) -> None:
        self.path = path
        self.entries = entries
        self.skipped = skipped  # "line N: why", already warned about
        self._revoked = {e.blob for e in entries if e.marker == "revoked"}

    @classmethod
    def parse(cls, path: Path, text: str) -> KnownHosts:
        entries: list[Entry] = []
        skipped: list[str] = []
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split()
            marker = ""
            if fields[0].startswith("@"):
                marker = fields.pop(0)[1:]
                if marker not in ("revoked", "cert-authority"):
                    skipped.append(f"line {lineno}: unknown marker @{marker}")
                    continue
            if len(fields) < 3:
                skipped.append(f"line {lineno}: not HOSTS KEYTYPE KEY")
                continue
            hosts, keytype, b64 = fields[:3]
            try:
                blob = base64.b64decode(b64, validate=True)
                key = paramiko.PKey.from_type_string(keytype, blob)
            except Exception as e:  # binascii.Error, UnknownKeyType, SSHException, ...
                skipped.append(f"line {lineno}: {keytype} key not usable ({_brief(e)})")
                continue
            if keytype.endswith(CERT_SUFFIX):
                skipped.append(f"line {lineno}: a certificate is not a known_hosts key")
                continue
            entries.append(Entry(marker, hosts, keytype, key, lineno))
        for why in skipped:
            log.warning("known_hosts %s: %s; line ignored", path, why)
        return cls(path, entries, skipped)

    @classmethod
    def load(cls, path: Path) -> KnownHosts:
        return cls.parse(path, path.read_text(encoding="utf-8", errors="replace"))

    # ------------------------------------------------------------------ lookups
    def is_revoked(self, key: paramiko.PKey) -> bool:
        """The key (or, for a certificate, the certified key) is on an ``@revoked`` line."""
        return key.asbytes() in self._revoked

    def is_revoked_blob(self, blob: bytes) -> bool:
        return blob in self._revoked

    def revoked_line(self, key: paramiko.PKey) -> int | None:
        blob = key.asbytes()
        for e in self.entries:
            if e.marker == "revoked" and e.blob == blob:
                return e.lineno
        return None

    def host_keys(self, name: str) -> list[Entry]:
        """Plain keys for ``name``, revoked ones left out."""
        return [
            e
            for e in self.entries
            if not e.marker and e.blob not in self._revoked and host_field_matches(e.hosts, name)
        ]

    def authorities(self, name: str) -> list[Entry]:
        """``@cert-authority`` keys for ``name``, revoked ones left out."""
        return [
            e
            for e in self.entries
            if e.marker == "cert-authority"
            and e.blob not in self._revoked
            and host_field_matches(e.hosts, name)
        ]

    def revoked_authority(self, name: str) -> list[Entry]:
        """``@cert-authority`` lines for ``name`` whose key is revoked."""
        return [
            e
            for e in self.entries
            if e.marker == "cert-authority"
            and e.blob in self._revoked
            and host_field_matches(e.hosts, name)
        ]


def _brief(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class HostCertificate:
    """The fields of an OpenSSH certificate that decide whether a host may use it."""

    cert_type: int
    key_id: str
    serial: int
    principals: tuple[str, ...]
    valid_after: int
    valid_before: int
    critical_options: bytes
    signature_key: bytes
    signature: bytes
    signed: bytes  # every byte the CA signed


def parse_certificate(blob: bytes) -> HostCertificate:
    """Parse a ``*-cert-v01@openssh.com`` blob. Raises ValueError."""
    try:
        m = paramiko.Message(blob)
        kind = m.get_text()
        if not kind.endswith(CERT_SUFFIX):
            raise ValueError(f"{kind} is not a certificate")
        plain = kind[: -len(CERT_SUFFIX)]
        plain = "ssh-rsa" if plain.startswith("rsa-sha2-") else plain
        if plain not in _KEY_FIELDS:
            raise ValueError(f"unsupported certificate type {kind}")
        m.get_string()  # nonce
        for _ in range(_KEY_FIELDS[plain]):
            m.get_string()
        serial = m.get_int64()
        cert_type = m.get_int()
        key_id = m.get_string().decode("utf-8", errors="replace")
        packed = m.get_string()
        pm = paramiko.Message(packed)
        principals: list[str] = []
        while len(pm.get_so_far()) < len(packed):
            principals.append(pm.get_string().decode("utf-8", errors="replace"))
        valid_after = m.get_int64()
        valid_before = m.get_int64()
        critical = m.get_string()
        m.get_string()  # extensions
        m.get_string()  # reserved
        signature_key = m.get_string()
        signed = m.get_so_far()
        signature = m.get_string()
    except ValueError:
        raise
    except Exception as e:  # truncated or garbled blob
        raise ValueError(f"malformed certificate: {_brief(e)}") from None
    if not signature or not signature_key:
        raise ValueError("malformed certificate: no signature")
    return HostCertificate(
        cert_type=cert_type,
        key_id=key_id,
        serial=serial,
        principals=tuple(principals),
        valid_after=valid_after,
        valid_before=valid_before,
        critical_options=critical,
        signature_key=signature_key,
        signature=signature,
        signed=signed,
    )


def certificate_blob(key: paramiko.PKey) -> bytes | None:
    """The certificate a server key came with (paramiko keeps it as ``public_blob``)."""
    pb = getattr(key, "public_blob", None)
    if pb is None or not str(pb.key_type).endswith(CERT_SUFFIX):
        return None
    return bytes(pb.key_blob)


class CertificateRejected(Exception):
    """A certificate signed by a trusted CA that is not valid for this host."""


def check_host_certificate(
    blob: bytes,
    hostname: str,
    authorities: list[Entry],
    known: KnownHosts,
    now: float | None = None,
) -> Entry | None:
    """The ``@cert-authority`` entry that vouches for the certificate ``blob`` presented by
    ``hostname``; ``None`` when no trusted CA signed it (the caller falls back to the plain
    key, as ``ssh`` does). Raises :class:`CertificateRejected` when a trusted CA signed it
    but it is not valid here (wrong type, principal, time, critical option, signature
    algorithm, bad signature) or its CA is revoked."""
    try:
        cert = parse_certificate(blob)
    except ValueError as e:
        raise CertificateRejected(str(e)) from None
    if known.is_revoked_blob(cert.signature_key):
        raise CertificateRejected(f"its CA key (id {cert.key_id!r}) is marked @revoked")
    ca = next((a for a in authorities if a.blob == cert.signature_key), None)
    if ca is None:
        return None
    what = f"certificate {cert.key_id!r} (serial {cert.serial})"
    if cert.cert_type != _HOST_CERT:
        raise CertificateRejected(f"{what} is not a host certificate")
    sig_alg = paramiko.Message(cert.signature).get_text()
    if sig_alg not in CA_SIGNATURE_ALGORITHMS:
        raise CertificateRejected(f"{what} is signed with {sig_alg}, not accepted")
    if not ca.key.verify_ssh_sig(cert.signed, paramiko.Message(cert.signature)):
        raise CertificateRejected(f"{what}: the CA signature does not verify")
    t = int(time.time() if now is None else now)
    if t < cert.valid_after:
        raise CertificateRejected(f"{what} is not valid yet")
    if t >= cert.valid_before:
        raise CertificateRejected(f"{what} has expired")
    if not cert.principals:
        raise CertificateRejected(f"{what} names no principals")
    if not any(_pattern_match(hostname, p) for p in cert.principals):
        raise CertificateRejected(f"{what} is for {', '.join(cert.principals)}, not for {hostname}")
    if cert.critical_options:
        raise CertificateRejected(f"{what} carries critical options, not understood")
    return ca
