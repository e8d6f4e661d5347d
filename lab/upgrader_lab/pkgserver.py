"""The lab's package repository server: ``python -m upgrader_lab.pkgserver --dir DIR``.

Owns one process that serves ``DIR/pkgs/`` (the signed per-minor repositories written by
``upgrader_lab.debrepo``) over HTTPS on ``127.0.0.1`` with the lab CA's server certificate
(``DIR/pki/apiserver.crt``, which names 127.0.0.1), at the port chosen on the lab's first
start and kept in ``DIR/pkgserver.json`` (the nodes' sources lists name it, so it must not
change across restarts). Each ``.deb`` is served after the spec's ``delays.download``
seconds (the simulated download time). GET and HEAD of files only; a missing file is 403,
as pkgs.k8s.io answers. It writes ``{"pid", "port", "url"}`` to ``DIR/pkgserver.json``
once it listens and logs one line per request to stderr (the runner sends it to
``DIR/logs/pkgserver.log``).

Must not: serve anything outside ``DIR/pkgs``, list directories, or daemonize.
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
INFO = "pkgserver.json"


def info_path(lab_dir: Path) -> Path:
    return lab_dir / INFO


def read_info(lab_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads(info_path(lab_dir).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def url_template(port: int) -> str:
    """The inventory's ``packages.url_template`` for a lab whose server listens on
    ``port``: pkgs.k8s.io's path layout under the lab's own address."""
    return f"https://{HOST}:{port}/core:/stable:/v{{minor}}/deb/"


class _Handler(SimpleHTTPRequestHandler):
    server_version = "upgrader-lab-pkgs"
    sys_version = ""

    def translate_path(self, path: str) -> str:
        root: str = self.server.root  # type: ignore[attr-defined]
        clean = posixpath.normpath(urllib.parse.unquote(path.split("?", 1)[0].split("#", 1)[0]))
        parts = [p for p in clean.split("/") if p and p not in (".", "..")]
        return os.path.join(root, *parts)

    def list_directory(self, path: str | os.PathLike[str]) -> None:
        self.send_error(403, "Forbidden")
        return None

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # pkgs.k8s.io answers 403 for what does not exist (e.g. a minor not published)
        if code == 404:
            code, message = 403, "Forbidden"
        super().send_error(code, message, explain)

    def do_GET(self) -> None:
        # the simulated download time: a .deb's body starts after delays.download seconds
        delay: float = self.server.download_delay  # type: ignore[attr-defined]
        if delay > 0 and self.path.split("?", 1)[0].endswith(".deb"):
            time.sleep(delay)
        super().do_GET()

    def do_POST(self) -> None:
        self.send_error(405, "Method Not Allowed")

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def _download_delay(lab_dir: Path) -> float:
    try:
        spec = json.loads((lab_dir / "spec.json").read_text())
        return max(0.0, float((spec.get("delays") or {}).get("download") or 0.0))
    except (OSError, ValueError, TypeError):
        return 0.0


def serve(lab_dir: Path, port: int) -> int:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(
        str(lab_dir / "pki" / "apiserver.crt"), str(lab_dir / "pki" / "apiserver.key")
    )
    httpd = ThreadingHTTPServer((HOST, port), _Handler)
    httpd.daemon_threads = True
    httpd.root = str(lab_dir / "pkgs")  # type: ignore[attr-defined]
    httpd.download_delay = _download_delay(lab_dir)  # type: ignore[attr-defined]
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    real_port = int(httpd.server_address[1])
    info = {"pid": os.getpid(), "port": real_port, "url": f"https://{HOST}:{real_port}/"}
    tmp = info_path(lab_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps(info) + "\n")
    os.replace(tmp, info_path(lab_dir))
    stop = threading.Event()

    def _stop(*_: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2})
    thread.daemon = True
    thread.start()
    stop.wait()
    httpd.shutdown()
    httpd.server_close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m upgrader_lab.pkgserver")
    parser.add_argument("--dir", required=True, type=Path, help="lab directory")
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    args = parser.parse_args(argv)
    if not 0 < args.port <= 65535:
        print(f"--port: {args.port} is not a TCP port", file=sys.stderr)
        return 2
    try:
        return serve(args.dir.resolve(), args.port)
    except (OSError, ssl.SSLError) as exc:
        print(f"upgrader lab package server: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
