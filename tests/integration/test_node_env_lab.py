"""node_env and packages.mirror end to end on the lab's Debian nodes (real sudo, real apt,
real curl, the lab's HTTPS package server): the inventory points every node command at a
proxy on loopback (a small CONNECT proxy in this test, with a password in its URL) and
names the package server as the mirror of pkgs.k8s.io instead of a custom url_template.
``apply`` 1.27 -> 1.28 must send the repository key download and apt's https fetches
through the proxy (with the credentials: the proxy saw them), write the mirror's 1.28
line into each node's sources list, and keep the password out of the plan, the output,
the events, the transcripts and the state file; a command run as root through sudo sees
the variables (sudo resets the environment: they are exported inside it)."""

from __future__ import annotations

import base64
import json
import select
import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_run import cli
from labkit import fast_playbooks

from upgrader.inventory import load_inventory
from upgrader.transport.ssh import SSHPool
from upgrader_lab import runner
from upgrader_lab import spec as labspec
from upgrader_lab.node import wrapper

pytestmark = pytest.mark.integration

PASSWORD = "pw!x"
USERINFO = "labuser:pw%21x"  # percent-encoded, as a URL carries it


class _Proxy(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Tunnel)
        self.seen: list[tuple[str, str, str | None]] = []  # (method, target, Basic userinfo)


class _Tunnel(socketserver.StreamRequestHandler):
    """HTTP CONNECT only (https through a proxy): read the request head, dial the target,
    answer 200, then copy bytes both ways until one side closes."""

    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = self.connection.recv(4096)
            if not chunk:
                return
            head += chunk
        lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        method, target = lines[0].split(" ")[:2]
        auth = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "proxy-authorization":
                kind, _, token = value.strip().partition(" ")
                if kind.lower() == "basic":
                    auth = base64.b64decode(token).decode()
        server: _Proxy = self.server  # type: ignore[assignment]
        server.seen.append((method, target, auth))
        if method != "CONNECT":
            self.connection.sendall(b"HTTP/1.1 405 CONNECT only\r\nContent-Length: 0\r\n\r\n")
            return
        host, port = target.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=30) as up:
            self.connection.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            rest = head.split(b"\r\n\r\n", 1)[1]
            if rest:
                up.sendall(rest)
            pair = [self.connection, up]
            while True:
                ready, _, _ = select.select(pair, [], [], 60)
                if not ready:
                    return
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (up if s is self.connection else self.connection).sendall(data)


@pytest.fixture
def proxy() -> Iterator[_Proxy]:
    server = _Proxy()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Path]:
    lab_dir = tmp_path / "lab"
    spec = labspec.parse_spec(
        {
            "version": "v1.27.8",
            "delays": {"kubelet_ready": 0.3, "pod_termination": 0.1},
            # one worker: no PodDisruptionBudget (an evicted pod has nowhere else to go)
            "workloads": [
                {"kind": "Deployment", "name": "web", "replicas": 2},
                {"kind": "DaemonSet", "namespace": "kube-system", "name": "kube-proxy"},
            ],
            "nodes": [
                {"name": "cp-1", "role": "control-plane"},
                {"name": "w-1", "role": "worker"},
            ],
        }
    )
    runner.up(lab_dir, spec)
    try:
        yield lab_dir
    finally:
        runner.down(lab_dir, purge=True)


def _texts(*paths: Path) -> Iterator[tuple[Path, str]]:
    for p in paths:
        for f in [p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file()):
            yield f, f.read_text(errors="replace")


def test_proxy_and_mirror_reach_apt_and_curl_and_the_password_stays_hidden(
    lab: Path, proxy: _Proxy, tmp_path: Path
) -> None:
    info: dict[str, Any] = json.loads((lab / "lab.json").read_text())
    template = str(info["pkgserver"]["url_template"])
    mirror = template.split("/core:/", 1)[0]  # https://127.0.0.1:PORT
    pkg_target = mirror.removeprefix("https://")
    proxy_url = f"http://{USERINFO}@127.0.0.1:{proxy.server_address[1]}"

    inventory = lab / "inventory.yaml"
    doc = yaml.safe_load(inventory.read_text())
    doc["packages"] = {
        **{k: v for k, v in doc["packages"].items() if k != "url_template"},
        "repository": "pkgs.k8s.io",
        "mirror": mirror,
    }
    doc["node_env"] = {"https_proxy": proxy_url, "no_proxy": ".cluster.local"}
    doc["nodes"][1]["node_env"] = {"HTTPS_PROXY": proxy_url}
    inventory.write_text(yaml.safe_dump(doc, sort_keys=False))

    # a command run as root through the lab's real sudo sees the variables
    inv = load_inventory(inventory, ssh_config_path=tmp_path / "none")
    with SSHPool() as pool:
        t = pool.get(inv.ssh_target("w-1"))
        r = t.run('id -u; printf "%s\\n" "$https_proxy" "$HTTPS_PROXY" "$no_proxy"')
    assert r.ok, r.stderr
    assert r.stdout.splitlines() == ["0", proxy_url, proxy_url, ".cluster.local"]
    assert PASSWORD not in r.command and "pw%21x" not in r.command
    assert not proxy.seen  # nothing went through the proxy yet

    events = tmp_path / "events.jsonl"
    playbooks = fast_playbooks(tmp_path / "playbooks")
    args = ["apply", "-i", str(inventory), "--to", "v1.28.4", "--yes", "--events", str(events)]
    apply = cli(*args, "--playbooks", str(playbooks), timeout=900)
    assert apply.returncode == 0, apply.stderr[-3000:] + apply.stdout[-3000:]
    out = apply.stdout
    assert "Node environment: HTTPS_PROXY, https_proxy, no_proxy (values redacted)" in out
    assert f"Package mirror: {mirror} (stands for https://pkgs.k8s.io)" in out

    # apt and curl went through the proxy, with the credentials, to the mirror (so did
    # the lab's simulated tools that call the API server: no_proxy does not name it)
    connects = [(t, a) for m, t, a in proxy.seen if m == "CONNECT"]
    to_mirror = [a for t, a in connects if t == pkg_target]
    assert len(to_mirror) >= 2 and set(to_mirror) == {f"labuser:{PASSWORD}"}
    assert {m for m, _, _ in proxy.seen} == {"CONNECT"}
    # the mirror's 1.28 repository is what each node's sources list now names
    for node in ("cp-1", "w-1"):
        listing = wrapper.run_on_node(
            lab, node, "cat /etc/apt/sources.list.d/kubernetes.list", timeout=60
        )
        assert listing.stdout == (
            "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] "
            f"{mirror}/core:/stable:/v1.28/deb/ /\n"
        )

    # the password is nowhere upgrader writes or prints
    state = lab / ".upgrader"
    shown = [(Path("stdout"), out), (Path("stderr"), apply.stderr), *_texts(state, events)]
    for path, text in shown:
        assert PASSWORD not in text and "pw%21x" not in text, path
