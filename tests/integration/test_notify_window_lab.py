"""``apply --window`` and ``apply --notify`` against the lab (real sshd, real HTTPS API, the
real CLI in a subprocess) with a real HTTP receiver in this process: a run outside its
window asks no node anything and exits 7; a run with two webhooks, one up and one down,
delivers start, per-node and finish events to the one and counts the other's as
undelivered in one warning line, without holding the run."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from apply_kit import TARGET, Lab, all_at, one_worker_lab
from sshd import free_port

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[tuple[datetime, dict[str, Any]]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                outer.bodies.append((datetime.now(UTC), json.loads(self.rfile.read(n))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_window_then_notify(make_lab: Callable[..., Lab], receiver: Receiver) -> None:
    lab = make_lab(one_worker_lab())
    nodes = ("cp-1", "w-1")
    before = {n: lab.calls(n) for n in nodes}

    # ---- outside the window: exit 7, nothing asked of any node, nothing recorded
    day = DAYS[(datetime.now(UTC) + timedelta(days=3)).weekday()]
    r = lab.apply("--window", f"{day} 01:00-02:00", "--window-tz", "UTC")
    assert r.returncode == 7, r.stdout + r.stderr
    err = r.stderr
    assert "error: outside every maintenance window: no node was started" in err
    assert f"the next window opens {day} " in err and f"window '{day} 01:00-02:00'" in err
    assert "once the window opens, run: upgrader apply -i" in err
    assert "Traceback" not in err
    assert {n: lab.calls(n) for n in nodes} == before
    assert not lab.state.exists() and lab.events_list() == []

    # ---- a bad window or URL: one line, exit 2, before anything
    bad = lab.apply("--window", "Sat 1-5")
    assert bad.returncode == 2 and "window 'Sat 1-5'" in bad.stderr, bad.stderr
    bad = lab.apply("--notify", "http://hooks.example/x?token=abc")
    assert bad.returncode == 2 and "only allowed to a loopback address" in bad.stderr
    assert "token=abc" not in bad.stderr
    assert {n: lab.calls(n) for n in nodes} == before

    # ---- inside a window (every day, all day), one receiver up, one down
    down = f"http://127.0.0.1:{free_port()}/down"  # nothing listens there
    r = lab.apply("--window", "daily 00:00-24:00", "--notify", receiver.url, "--notify", down)
    assert r.returncode == 0, r.stdout + r.stderr
    all_at(lab)

    got = [b for _, b in receiver.bodies]
    kinds = [b["event"] for b in got]
    assert kinds[0] == "run-started" and kinds[-1] == "run-finished"
    assert sorted(b["node"] for b in got if b["event"] == "node-finished") == sorted(
        e["node"] for e in lab.events_list() if e["event"] == "node-finished"
    )
    assert {b["node"] for b in got if b["event"] == "node-finished"} == set(nodes)
    assert not set(kinds) - {"run-started", "node-finished", "run-finished"}
    run_id = lab.state_doc()["run_id"]
    for b in got:
        assert (
            b["run_id"] == run_id
            and b["cluster"] == "lab"
            and b["text"].startswith("upgrader[lab]: run ")
        )
    assert got[0]["target"] == TARGET and sorted(got[0]["nodes"]) == sorted(nodes)
    assert got[-1]["ok"] is True and "finished: succeeded" in got[-1]["text"]
    # each event reached the receiver that is up promptly: the one that is down (retrying
    # with backoff in the same run) held nothing
    for at, b in receiver.bodies:
        assert at - _ts(b["ts"]) < timedelta(seconds=3), b

    # the one that is down: every event counted in one warning line, its URL shown bare
    sent = len(got)
    warn = [line for line in r.stderr.splitlines() if "not delivered" in line]
    assert len(warn) == 1, r.stderr
    assert f"notify {down}: {sent} event(s) not delivered" in warn[0]
