"""The webhook notifier against a real HTTPS receiver on loopback: delivered when its
certificate is trusted, nothing sent when it is not (TLS verified by default), and a
redirect is not followed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from kubeapi_stub import TLSServer

from upgrader.execute import events as ev
from upgrader.execute.notify import WebhookNotifier

pytestmark = pytest.mark.integration

STARTED = ev.Event(ev.RUN_STARTED, {"run_id": "r1", "target": "v1.28.4", "nodes": ["w-1"]})


class Server:
    def __init__(self, pki: Path) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                outer.paths.append(self.path)
                outer.bodies.append(json.loads(self.rfile.read(n)))
                if self.path == "/moved":
                    self.send_response(307)
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                else:
                    self.send_response(200)
                self.end_headers()

            def do_GET(self) -> None:
                outer.paths.append("GET " + self.path)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.tls = TLSServer.start(H, pki)
        self.ca = self.tls.ca
        self.base = self.tls.url


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "pki")
    yield s
    s.tls.stop()


def test_delivered_when_the_certificate_is_trusted(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(server.ca))
    n = WebhookNotifier(server.base + "/hook", attempts=1)
    n(STARTED)
    assert n.close(drain=5).total == 0
    assert server.bodies and server.bodies[0]["event"] == "run-started"


def test_nothing_sent_when_the_certificate_is_not_trusted(server: Server) -> None:
    n = WebhookNotifier(server.base + "/hook", attempts=2, backoff=0.05)
    n(STARTED)
    left = n.close(drain=5)
    assert left.failed == 1 and server.bodies == []


def test_a_redirect_is_not_followed(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(server.ca))
    n = WebhookNotifier(server.base + "/moved", attempts=1)
    n(STARTED)
    left = n.close(drain=5)
    assert left.failed == 1 and server.paths == ["/moved"]
