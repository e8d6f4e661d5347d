"""The watch beside every wait, on a 410 Gone (kubernetes.io "Efficient detection of
changes": a watch from a resourceVersion the server no longer keeps gets 410 Gone, and
the client must list again for a fresh one): :class:`upgrader.kube.watching.ChangeFeed`
lists again and follows the watch from the new version, and a change after that wakes the
wait. The official client does not retry a 410 itself for a watch with
``timeoutSeconds`` (``kubernetes.watch.Watch.stream``: ``disable_retries``), which the feed
always sets: the 410 reaches the feed as an ``ApiException``.

Real HTTPS (the stub API, TLS verified), the official ``kubernetes`` client."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from kubeapi_stub import TOKEN, StubAPI, TLSServer
from kubernetes.client import CoreV1Api

from upgrader.kube.client import make_api_client
from upgrader.kube.watching import ChangeFeed


def _gone() -> dict[str, object]:
    return {
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": "too old resource version: 5 (90)",
            "reason": "Expired",
            "code": 410,
        },
    }


def _node_event(kind: str, rv: str) -> dict[str, object]:
    return {
        "type": kind,
        "object": {
            "kind": "Node",
            "apiVersion": "v1",
            "metadata": {"name": "w-1", "resourceVersion": rv},
        },
    }


def _serve(answer: Callable[[dict[str, str]], tuple[int, object]], pki: Path) -> TLSServer:
    """``answer`` behind TLS for GET /api/v1/nodes, each body one JSON line ended by a
    newline, as the API server streams watch events (the client reads whole lines)."""

    class H(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            assert parts.path == "/api/v1/nodes"
            assert self.headers.get("Authorization") == f"Bearer {TOKEN}"
            status, body = answer({k: v[-1] for k, v in parse_qs(parts.query).items()})
            data = (json.dumps(body) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return TLSServer.start(H, pki)


def test_a_410_gone_relists_and_the_next_change_wakes_the_wait(tmp_path: Path) -> None:
    lists: list[str] = []
    watches: list[str] = []
    lock = threading.Lock()

    def nodes(query: dict[str, str]) -> tuple[int, object]:
        with lock:
            if query.get("watch") != "true":
                rv = "5" if not lists else "91"
                lists.append(rv)
                return 200, {"kind": "NodeList", "metadata": {"resourceVersion": rv}, "items": []}
            watches.append(query.get("resourceVersion", ""))
            if query.get("resourceVersion") == "5":
                return 200, _gone()  # expired
            if len(watches) == 2:
                return 200, _node_event("MODIFIED", "92")
        time.sleep(0.2)  # quiet afterwards: a bookmark now and then
        return 200, _node_event("BOOKMARK", "92")

    server = _serve(nodes, tmp_path / "pki")
    stub = StubAPI(tmp_path, port=server.port, ca=server.ca)  # for its kubeconfig
    api = make_api_client(stub.kubeconfig(tmp_path / "kubeconfig"), None)
    with ChangeFeed(CoreV1Api(api).list_node, what="nodes") as feed:
        deadline = time.monotonic() + 20
        while feed.events < 1 and time.monotonic() < deadline:
            feed.sleep(0.5)
        assert feed.events == 1 and feed.ended is None
        with lock:
            assert lists == ["5", "91"]  # the first list, and one more after the 410
            assert watches[:2] == ["5", "91"]  # 410, then from the new list's version
        # the change woke the sleeper: the next sleep is not cut short by a stale wake-up
        t0 = time.monotonic()
        feed.sleep(0.3)
        assert time.monotonic() - t0 >= 0.25
    server.stop()
    assert watches[2:] and all(rv == "92" for rv in watches[2:])  # on from the change's
