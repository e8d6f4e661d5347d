"""The fake API of the integration tests: a small real HTTPS server that answers
Kubernetes API paths with canned JSON, and the TLS server under it for other loopback
HTTPS peers (webhook receivers, checksum servers, a mutual-TLS server).

Owns :class:`TLSServer` (a threaded ``http.server`` on 127.0.0.1 behind TLS, its PKI made by
the lab's own certificate code, ``upgrader_lab.apiserver.certs``) and :class:`StubAPI`
(canned Kubernetes API JSON, bearer token, a kubeconfig for itself, so the official client
talks to it with TLS verified) with the object builders its routes use. For reader and
gatherer tests that need exact object shapes (pagination, mirror pods with digests, a
missing ConfigMap) or scripted faults (503 twice, then 200); a test that needs a whole
simulated cluster uses the lab's real API server (``lab_api_fixture.LabAPI``) instead.
Must not: hold assertions (the tests do).
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from upgrader_lab.apiserver.certs import LabPki, ensure_pki

TOKEN = "stub-token-not-a-secret"

# A route answers (status, json body) for a path and its query parameters.
Handler = Callable[[dict[str, str]], tuple[int, Any]]


@dataclass
class TLSServer:
    """``handler`` served on 127.0.0.1 (a free port) behind TLS, in a daemon thread."""

    httpd: ThreadingHTTPServer
    pki: LabPki

    @classmethod
    def start(
        cls, handler: type[BaseHTTPRequestHandler], pki_dir: Path, *, client_certs: bool = False
    ) -> TLSServer:
        """Start serving; ``client_certs``: require a client certificate signed by the CA."""
        pki = ensure_pki(pki_dir, "stub", "127.0.0.1")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(pki.server_cert), str(pki.server_key))
        if client_certs:
            ctx.load_verify_locations(cafile=str(pki.ca_cert))
            ctx.verify_mode = ssl.CERT_REQUIRED
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        httpd.daemon_threads = True
        threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return cls(httpd, pki)

    @property
    def ca(self) -> Path:
        return self.pki.ca_cert

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class StubAPI:
    directory: Path
    routes: dict[str, Handler] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    _server: TLSServer | None = None
    port: int = 0
    ca: Path | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def json(self, path: str, body: Any, status: int = 200) -> None:
        self.routes[path] = lambda _q: (status, body)

    def sequence(self, path: str, answers: list[tuple[int, Any]]) -> None:
        """Answer ``path`` with each of ``answers`` in turn, repeating the last."""
        queue = list(answers)

        def handler(_q: dict[str, str]) -> tuple[int, Any]:
            return queue.pop(0) if len(queue) > 1 else queue[0]

        self.routes[path] = handler

    def start(self) -> StubAPI:
        stub = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                stub.requests.append(self.path)
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._send(401, _status(401, "Unauthorized"))
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                handler = stub.routes.get(parts.path.rstrip("/") or "/")
                if handler is None:
                    return self._send(404, _status(404, f"{parts.path} not found"))
                status, body = handler(query)
                self._send(status, body)

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = TLSServer.start(H, self.directory)
        self.port = self._server.port
        self.ca = self._server.ca
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def kubeconfig(self, path: Path, *, url: str | None = None, insecure: bool = False) -> Path:
        assert self.ca is not None
        cluster: dict[str, Any] = {"server": url or self.url}
        if insecure:
            cluster["insecure-skip-tls-verify"] = True
        else:
            cluster["certificate-authority"] = str(self.ca)
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "stub", "cluster": cluster}],
            "users": [{"name": "admin", "user": {"token": TOKEN}}],
            "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "admin"}}],
            "current-context": "stub",
        }
        path.write_text(yaml.safe_dump(doc))
        return path


def _status(code: int, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": {401: "Unauthorized", 404: "NotFound"}.get(code, "InternalError"),
        "code": code,
    }


# --------------------------------------------------------------------------- object builders


def version_doc(git: str) -> dict[str, Any]:
    major, minor = git.lstrip("v").split(".")[:2]
    return {"major": major, "minor": minor, "gitVersion": git, "platform": "linux/amd64"}


def kubeadm_config(version: str) -> dict[str, Any]:
    cc = (
        "apiServer: {}\napiVersion: kubeadm.k8s.io/v1beta3\ncertificatesDir: /etc/kubernetes/pki\n"
        "clusterName: kubernetes\ncontrolPlaneEndpoint: 10.0.0.10:6443\n"
        "etcd:\n  local:\n    dataDir: /var/lib/etcd\nimageRepository: registry.k8s.io\n"
        f"kind: ClusterConfiguration\nkubernetesVersion: {version}\n"
        "networking:\n  dnsDomain: cluster.local\n  serviceSubnet: 10.96.0.0/12\n"
    )
    return {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
        "data": {"ClusterConfiguration": cc},
    }


def node_obj(
    name: str,
    kubelet: str,
    *,
    ready: str = "True",
    unschedulable: bool = False,
    control_plane: bool = False,
    runtime: str = "containerd://1.7.2",
) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
    if control_plane:
        labels["node-role.kubernetes.io/control-plane"] = ""
    spec: dict[str, Any] = {"podCIDR": "10.244.0.0/24"}
    if unschedulable:
        spec["unschedulable"] = True
    return {
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
        "status": {
            "conditions": [
                {
                    "type": "MemoryPressure",
                    "status": "False",
                    "reason": "KubeletHasSufficientMemory",
                },
                {"type": "Ready", "status": ready, "reason": "KubeletReady"},
            ],
            "nodeInfo": {
                "kubeletVersion": kubelet,
                "kubeProxyVersion": kubelet,
                "containerRuntimeVersion": runtime,
                "osImage": "Ubuntu 22.04.3 LTS",
            },
        },
    }


def mirror_pod(component: str, node: str, tag: str, *, digest: bool = False) -> dict[str, Any]:
    image = f"registry.k8s.io/{component}:{tag}"
    if digest:
        image += "@sha256:" + "ab" * 32
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": f"{component}-{node}",
            "namespace": "kube-system",
            "labels": {"component": component, "tier": "control-plane"},
            "annotations": {
                "kubernetes.io/config.mirror": "0123456789abcdef",
                "kubernetes.io/config.source": "file",
            },
        },
        "spec": {"nodeName": node, "containers": [{"name": component, "image": image}]},
        "status": {"phase": "Running"},
    }


def plain_pod(name: str, node: str, image: str) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": "kube-system", "labels": {"k8s-app": name}},
        "spec": {"nodeName": node, "containers": [{"name": name, "image": image}]},
    }


def list_doc(kind: str, items: list[dict[str, Any]], cont: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": "100"}
    if cont:
        meta["continue"] = cont
    return {"kind": kind, "apiVersion": "v1", "metadata": meta, "items": items}


def paged(kind: str, items: list[dict[str, Any]], size: int) -> Handler:
    """A list route that honours ``limit``/``continue`` with pages of ``size``."""

    def handler(q: dict[str, str]) -> tuple[int, Any]:
        start = int(q.get("continue") or 0)
        end = start + size
        return 200, list_doc(kind, items[start:end], str(end) if end < len(items) else None)

    return handler
