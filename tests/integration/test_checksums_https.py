"""Release checksums from an https URL template, against a real HTTPS server on loopback:
fetched when its certificate is trusted, refused (a one-line problem naming the URL) when
it is not, and an HTTP error or a page that is no digest is a problem too."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from kubeapi_stub import TLSServer

from upgrader.checksums import load_release
from upgrader.core.versions import KubeVersion

pytestmark = pytest.mark.integration

V = KubeVersion.parse("v1.28.4")
FILES = {
    "/release/v1.28.4/bin/linux/amd64/kubeadm.sha256": "a" * 64,
    "/release/v1.28.4/bin/linux/amd64/kubelet.sha256": "b" * 64,
    "/release/v1.28.4/bin/linux/amd64/kubectl.sha256": "c" * 64,
    "/release/v1.29.0/bin/linux/amd64/kubeadm.sha256": "<html>not here</html>",
}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = FILES.get(self.path)
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    tls = TLSServer.start(_Handler, tmp_path / "pki")
    try:
        yield f"{tls.url}/release/{{version}}/bin/linux/{{arch}}/{{binary}}.sha256", tls.ca
    finally:
        tls.stop()


def test_fetched_when_the_certificate_is_trusted(
    server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, ca = server
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # OpenSSL's default trust store
    rc = load_release(url, V)
    assert rc.complete, rc.problem
    assert dict(rc.digests) == {"kubeadm": "a" * 64, "kubelet": "b" * 64, "kubectl": "c" * 64}
    bad = load_release(url, KubeVersion.parse("v1.29.0"))
    assert bad.problem is not None and "is not a sha256 hex digest" in bad.problem
    missing = load_release(url, KubeVersion.parse("v1.30.1"))
    assert missing.problem is not None and "HTTP 404" in missing.problem
    assert "/release/v1.30.1/bin/linux/amd64/kubeadm.sha256" in missing.problem


def test_refused_when_the_certificate_is_not_trusted(server: tuple[str, Path]) -> None:
    url, _ = server
    rc = load_release(url, V)
    assert not rc.complete
    assert rc.problem is not None and "CERTIFICATE_VERIFY_FAILED" in rc.problem
    assert "\n" not in rc.problem
