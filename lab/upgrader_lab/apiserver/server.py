"""The HTTP edge of the lab API server: TLS, threads, authentication, injected faults.

Owns the ``ThreadingHTTPServer`` (TLS handshake in the connection's own thread, HTTP/1.1
keep-alive, chunked streaming for watches), bearer-token authentication (401 without or
with a wrong token; anonymous only for /healthz, /livez, /readyz and /version, as on a
kubeadm cluster), the spec's API faults (an error status, or holding the request and
dropping it, for the first N matching requests, counted persistently), ``GET /metrics``
(rendered by :mod:`upgrader_lab.apiserver.metrics` from the spec) and
:class:`LabServer`, which assembles spec, PKI, store, controller and API for ``DIR`` and
writes ``DIR/kubeconfig`` and ``DIR/apiserver.json``. Must not: log tokens or bodies.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import select
import socket
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from upgrader_lab.apiserver import metrics
from upgrader_lab.apiserver.api import Api, Request, Response, json_response
from upgrader_lab.apiserver.certs import (
    ADMIN_USER,
    LabPki,
    atomic_write,
    ensure_pki,
    write_kubeconfig,
)
from upgrader_lab.apiserver.controller import Controller
from upgrader_lab.apiserver.seed import initial_objects
from upgrader_lab.apiserver.spec import ApiFault, LabSpec, load_spec
from upgrader_lab.apiserver.status import ApiError, generic, unauthorized
from upgrader_lab.apiserver.store import Store

log = logging.getLogger("upgrader_lab.apiserver")

PUBLIC_PATHS = ("/healthz", "/livez", "/readyz", "/version")
MAX_BODY = 16 * 1024 * 1024
ANONYMOUS = "system:anonymous"


def _is_public(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in PUBLIC_PATHS)


def _fault_exempt(path: str) -> bool:
    return path.startswith("/_lab/") or any(
        path == p or path.startswith(p + "/") for p in ("/healthz", "/livez", "/readyz")
    )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "lab-apiserver"
    sys_version = ""
    timeout = 300  # idle keep-alive connections are closed after this
    # TCP_NODELAY, as Go's net/http (kube-apiserver) has it: headers and body go out in two
    # writes, and with Nagle the body waited for the client's delayed ACK (40 ms a request).
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    # ------------------------------------------------------------------ plumbing
    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline(65537)
                if len(out) > MAX_BODY:
                    return None
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _is_closed(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def _send(self, resp: Response) -> None:
        self.send_response(resp.code)
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.send_header("Cache-Control", resp.headers.pop("Cache-Control", "no-cache, private"))
        self.send_header("Content-Type", resp.content_type)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        if resp.stream is not None:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            try:
                for chunk in resp.stream:
                    if chunk:
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (OSError, ssl.SSLError):
                self.close_connection = True
            finally:
                close = getattr(resp.stream, "close", None)
                if close is not None:
                    close()
            return
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        self.wfile.write(resp.body)

    # ------------------------------------------------------------------ request
    def _serve(self) -> None:
        start = time.monotonic()
        srv = self.server
        parts = urlsplit(self.path)
        path = parts.path or "/"
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        body = self._read_body()
        log.debug(
            "%s %s content-type=%r accept=%r user-agent=%r",
            self.command,
            self.path,
            self.headers.get("Content-Type"),
            self.headers.get("Accept"),
            self.headers.get("User-Agent"),
        )
        code = 0
        try:
            if body is None:
                raise generic(413, "the request body is too large")
            user = srv.authenticate(self.headers.get("Authorization"), path)
            fault = srv.take_fault(self.command, path)
            if fault is not None and fault.timeout is not None:
                srv.stopping.wait(fault.timeout)
                self.close_connection = True
                log.info(
                    "%s %s %s held %.0fs and dropped (injected fault)",
                    self.client_address[0],
                    self.command,
                    path,
                    fault.timeout,
                )
                return
            if fault is not None and fault.status is not None:
                headers = (
                    {"Retry-After": str(fault.retry_after)}
                    if fault.retry_after is not None
                    else None
                )
                raise ApiError(
                    fault.status,
                    generic(fault.status, f"simulated fault (spec faults[{fault.index}])").body,
                    headers,
                )
            req = Request(
                method=self.command,
                path=path,
                query=query,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                user=user,
            )
            if self.command == "GET" and path == "/metrics":
                resp = Response(
                    200, metrics.render(srv.lab.deprecated_requests), metrics.CONTENT_TYPE
                )
            else:
                resp = srv.api.handle(req, self._is_closed)
        except ApiError as e:
            resp = json_response(e.code, e.body, headers=e.headers)
        code = resp.code
        try:
            self._send(resp)
        finally:
            log.info(
                "%s %s %s %d %.1fms",
                self.client_address[0],
                self.command,
                path,
                code,
                (time.monotonic() - start) * 1000,
            )


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(
        self, addr: tuple[str, int], ctx: ssl.SSLContext, api: Api, lab: LabServer
    ) -> None:
        self.ctx = ctx
        self.api = api
        self.lab = lab
        self.stopping = api.stopping
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.address_family = family
        super().__init__(addr, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(30)
        try:
            tls = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log.debug("TLS handshake with %s failed: %s", client_address, e)
            return
        try:
            _Handler(tls, client_address, self)
        finally:
            with contextlib.suppress(OSError):
                tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def authenticate(self, header: str | None, path: str) -> str:
        return self.lab.authenticate(header, path)

    def take_fault(self, method: str, path: str) -> ApiFault | None:
        return self.lab.take_fault(method, path)


class LabServer:
    """One lab API server for ``directory`` (spec.json in, kubeconfig/apiserver.json out)."""

    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.dir = directory.resolve()
        self.host = host
        self.port = port
        self.stopping = threading.Event()
        self.spec: LabSpec = load_spec(self.dir / "spec.json")
        self.deprecated_requests = metrics.load_requests(self.dir / "spec.json")
        self.pki: LabPki = ensure_pki(self.dir, self.spec.cluster_name, host)
        self._token = self.pki.token()
        self.store = Store(self.dir / "api-state.json")
        self.controller = Controller(self.store, self.spec)
        if not self.store.load():
            now = time.time()
            self.store.cluster = {"version": self.spec.version, "created": now}
            self.store.seed(initial_objects(self.spec, now))
            self.controller.settle()
            self.store.mark_dirty()
            self.store.persist()
        self.api: Api | None = None
        self.httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ auth & faults
    def authenticate(self, header: str | None, path: str) -> str:
        if header:
            scheme, _, cred = header.partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(
                cred.strip().encode(), self._token.encode()
            ):
                return ADMIN_USER
            raise unauthorized()
        if _is_public(path):
            return ANONYMOUS
        raise unauthorized()

    def take_fault(self, method: str, path: str) -> ApiFault | None:
        if _fault_exempt(path):
            return None
        for f in self.spec.api_faults:
            if not f.matches(method, path):
                continue
            with self.store.lock:
                used = self.store.faults.get(str(f.index), 0)
                if used >= f.times:
                    continue
                self.store.faults[str(f.index)] = used + 1
                self.store.mark_dirty()
            self.store.persist()
            log.info(
                "injecting fault faults[%d] on %s %s (%d/%d)",
                f.index,
                method,
                path,
                used + 1,
                f.times,
            )
            return f
        return None

    # ------------------------------------------------------------------ lifecycle
    def _previous_port(self) -> int:
        try:
            data = json.loads((self.dir / "apiserver.json").read_text())
            return int(data.get("port", 0))
        except (OSError, ValueError, TypeError, AttributeError):
            return 0

    def _bind(self, api: Api, ctx: ssl.SSLContext) -> _HTTPServer:
        candidates = [self.port] if self.port else [p for p in (self._previous_port(),) if p] + [0]
        last: OSError | None = None
        for port in candidates:
            try:
                return _HTTPServer((self.host, port), ctx, api, self)
            except OSError as e:
                last = e
        assert last is not None
        raise last

    def start(self) -> str:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.pki.server_cert), str(self.pki.server_key))
        ctx.set_alpn_protocols(["http/1.1"])
        api = Api(self.store, self.spec, stopping=self.stopping)
        self.httpd = self._bind(api, ctx)
        port = int(self.httpd.server_address[1])
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.host in ("0.0.0.0", "::"):  # noqa: S104
            host = "127.0.0.1"
        url = f"https://{host}:{port}"
        api.server_address = f"{self.host}:{port}"
        self.api = api
        (self.dir / "apiserver.json").unlink(missing_ok=True)
        write_kubeconfig(self.dir / "kubeconfig", url, self.pki, self.spec.cluster_name)
        self.controller.start()
        self._thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="lab-apiserver",
            daemon=True,
        )
        self._thread.start()
        info = {
            "url": url,
            "port": port,
            "pid": os.getpid(),
            "ca": str(self.pki.ca_cert),
            "token_file": str(self.pki.token_file),
        }
        atomic_write(self.dir / "apiserver.json", (json.dumps(info, indent=2) + "\n").encode())
        log.info("lab API server listening on %s (dir %s)", url, self.dir)
        return url

    def stop(self) -> None:
        self.stopping.set()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
        self.controller.stop()
        self.store.persist()
