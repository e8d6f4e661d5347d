"""The webhook notifier against a real HTTP receiver in this process (no mocks): what is
sent, what is masked, and that a receiver down or slow never holds the caller."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from refusal import refusal

from upgrader.execute import events as ev
from upgrader.execute.notify import WebhookNotifier, check_url, safe_url


class Receiver:
    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.status = status
        self.delay = delay
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(n))
                time.sleep(outer.delay)
                outer.bodies.append(body)
                outer.headers.append(dict(self.headers))
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def make_receiver() -> Iterator[Callable[..., Receiver]]:
    """Starts receivers (``Receiver``'s arguments) for a test and closes them after it."""
    made: list[Receiver] = []

    def make(status: int = 200, delay: float = 0.0) -> Receiver:
        made.append(Receiver(status, delay))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.fixture
def receiver(make_receiver: Callable[..., Receiver]) -> Receiver:
    return make_receiver()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def run_events() -> list[ev.Event]:
    return [
        ev.Event(ev.RUN_STARTED, {"run_id": "r1", "target": "v1.30.2", "nodes": ["cp1", "w1"]}),
        ev.Event(ev.STEP_STARTED, {"run_id": "r1", "node": "cp1", "step": "cp1/01"}),
        ev.Event(ev.NODE_FINISHED, {"run_id": "r1", "node": "cp1"}),
        ev.Event(
            ev.STEP_FAILED,
            {"run_id": "r1", "node": "w1", "step": "w1/03", "error": "token s3cr3t-value leaked"},
        ),
        ev.Event(ev.RUN_FINISHED, {"run_id": "r1", "ok": False, "error": "step failed"}),
    ]


def test_posts_the_chosen_events_masked_with_a_text_line(receiver: Receiver) -> None:
    n = WebhookNotifier(receiver.url, ev.make_masker(["s3cr3t-value"]), cluster="lab")
    for e in run_events():
        n(e)
    left = n.close(drain=5)
    assert left.total == 0 and n.sent == 4
    kinds = [b["event"] for b in receiver.bodies]
    assert kinds == ["run-started", "node-finished", "step-failed", "run-finished"]
    assert all(b["run_id"] == "r1" and b["cluster"] == "lab" and "ts" in b for b in receiver.bodies)
    started = receiver.bodies[0]
    assert started["nodes"] == ["cp1", "w1"]
    assert started["text"].startswith("upgrader[lab]: run r1 started: v1.30.2 on 2 node(s)")
    failed = receiver.bodies[2]
    assert "s3cr3t-value" not in json.dumps(receiver.bodies)
    assert failed["text"].startswith("upgrader[lab]: run r1: step w1/03 failed on w1")
    assert receiver.headers[0]["Content-Type"] == "application/json"


def test_a_receiver_that_is_down_delays_nothing() -> None:
    url = f"http://127.0.0.1:{closed_port()}/"
    n = WebhookNotifier(url, attempts=3, backoff=0.2)
    t0 = time.monotonic()
    for e in run_events():
        n(e)
    queued = time.monotonic() - t0
    assert queued < 0.05  # the caller never waits on the network
    left = n.close(drain=1.0)
    assert left.total == 4  # every event counted, none lost silently
    assert "4 event(s) not delivered" in left.warning()


def test_a_slow_receiver_is_bounded_by_the_drain(make_receiver: Callable[..., Receiver]) -> None:
    r = make_receiver(delay=3.0)
    n = WebhookNotifier(r.url, timeout=0.5, attempts=1)
    for e in run_events():
        n(e)
    t0 = time.monotonic()
    left = n.close(drain=1.0)
    assert time.monotonic() - t0 < 1.5
    assert left.total == 4


def test_a_full_queue_drops_the_oldest_and_counts(make_receiver: Callable[..., Receiver]) -> None:
    r = make_receiver(delay=0.5)
    n = WebhookNotifier(r.url, queue_size=2, attempts=1)
    for i in range(6):
        n(ev.Event(ev.NODE_FINISHED, {"run_id": "r", "node": f"n{i}"}))
    assert n.dropped >= 3
    left = n.close(drain=5)
    got = [b["node"] for b in r.bodies]
    assert got[-1] == "n5"  # the newest survives
    assert left.dropped == n.dropped and left.failed == 0


def test_http_error_is_retried_then_counted(make_receiver: Callable[..., Receiver]) -> None:
    r = make_receiver(status=503)
    n = WebhookNotifier(r.url, attempts=3, backoff=0.05)
    n(run_events()[0])
    left = n.close(drain=5)
    assert len(r.bodies) == 3 and left.failed == 1


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://hooks.example/x", "expected an https:// URL"),
        ("hooks.example/x", "expected an https:// URL"),
        ("http://hooks.example/x?token=abc", "only allowed to a loopback address"),
        ("https://user:pw@hooks.example:99999/x", "not a URL"),
        ("https://hooks.example/a b", "blanks or control characters"),
    ],
)
def test_bad_urls_refused_without_credentials(url: str, says: str) -> None:
    msg = refusal(check_url, url)
    assert says in msg
    assert "token=abc" not in msg and "pw" not in msg


def test_accepted_urls_and_safe_form() -> None:
    assert check_url("https://hooks.slack.com/services/T/B/X")
    assert check_url("http://127.0.0.1:8080/")
    assert check_url("http://[::1]:8080/")
    assert check_url("http://localhost/")
    assert safe_url("https://u:p@hooks.example:8443/path?token=abc") == (
        "https://hooks.example:8443/path?…"
    )
