"""Runs the lab API server (``python -m upgrader_lab.apiserver``) for integration tests.

Owns starting the real server process on a tmp DIR from a hand-written ``spec.json``
(waiting for ``DIR/apiserver.json`` and ``/readyz``), restarting and stopping it, raw
HTTPS requests verified against the lab CA, and running the real ``kubectl`` clients
against it. Does not depend on the lab runner.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Json = dict[str, Any]


def small_spec(**overrides: Any) -> Json:
    """cp-1 + three workers, web x3 (maxUnavailable 1), db x2 (minAvailable 1), kube-proxy."""
    spec: Json = {
        "cluster_name": "lab",
        "version": "v1.27.8",
        "nodes": [
            {
                "name": "cp-1",
                "role": "control-plane",
                "os_family": "debian",
                "kubelet": "v1.27.8",
                "kubeadm": "v1.27.8",
                "kubectl": "v1.27.8",
                "control_plane": "v1.27.8",
                "cordoned": False,
                "address": "127.61.0.2",
                "never_ready": False,
                "runtime": "containerd://1.7.2",
            },
            {
                "name": "w-1",
                "role": "worker",
                "os_family": "rhel",
                "kubelet": "v1.27.8",
                "address": "127.61.0.3",
            },
            {
                "name": "w-2",
                "role": "worker",
                "os_family": "debian",
                "kubelet": "v1.27.8",
                "address": "127.61.0.4",
            },
            {
                "name": "w-3",
                "role": "worker",
                "os_family": "debian",
                "kubelet": "v1.27.8",
                "address": "127.61.0.5",
            },
        ],
        "workloads": [
            {
                "kind": "Deployment",
                "namespace": "default",
                "name": "web",
                "replicas": 3,
                "pdb": {"maxUnavailable": 1},
                "empty_dir": False,
                "grace_period": 1,
            },
            {
                "kind": "Deployment",
                "namespace": "default",
                "name": "db",
                "replicas": 2,
                "pdb": {"minAvailable": 1},
                "grace_period": 1,
            },
            {"kind": "DaemonSet", "namespace": "kube-system", "name": "kube-proxy"},
        ],
        "delays": {
            "kubelet_ready": 0.5,
            "package_install": 0.0,
            "pod_termination": 0.1,
            "download": 0.0,
            "command": 0.0,
        },
        "faults": [],
        "missing_packages": [],
        "rbac": None,
    }
    spec.update(overrides)
    return spec


def wait_for(pred: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``pred`` until it returns something truthy and return that (no fixed sleeps in the
    tests): the one wait helper of the integration tests."""
    deadline = time.monotonic() + timeout
    interval = 0.02
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.25)


@dataclass
class HTTPResult:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class LabAPI:
    dir: Path
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    port: int = 0
    token: str = ""
    restarts: int = 0
    _log: Any = field(default=None, repr=False)

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def start(cls, directory: Path, spec: Json, port: int = 0) -> LabAPI:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "spec.json").write_text(json.dumps(spec, indent=1))
        lab = cls(directory)
        lab._launch(port)
        return lab

    def _launch(self, port: int = 0) -> None:
        logs = self.dir / "logs"
        logs.mkdir(exist_ok=True)
        self._log = open(logs / "apiserver.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "upgrader_lab.apiserver",
                "--dir",
                str(self.dir),
                "--port",
                str(port),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc = self.proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(
                    f"lab API server exited with {proc.returncode}: {self.log_tail()}"
                )
            try:
                info = json.loads((self.dir / "apiserver.json").read_text())
            except (OSError, ValueError):
                return False
            if info.get("pid") != proc.pid:
                return False
            self.url, self.port = info["url"], int(info["port"])
            return True

        wait_for(ready, 60, "apiserver.json")
        self.token = (self.dir / "secrets" / "admin-token").read_text().strip()
        wait_for(lambda: self.request("GET", "/readyz", token=None).status == 200, 20, "readyz")

    def stop(self) -> None:
        """SIGTERM, as the runner does; the server must exit 0 (state saved) promptly."""
        clean = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                clean = self.proc.wait(15) == 0
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                clean = False
        if self._log is not None:
            self._log.close()
            self._log = None
        if not clean:
            raise AssertionError(f"lab API server did not stop cleanly: {self.log_tail()}")

    def restart(self) -> None:
        """Stop the process and start a new one on the same DIR (state must survive)."""
        self.stop()
        self.restarts += 1
        self._launch()

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = (self.dir / "logs" / "apiserver.log").read_text().splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    # ------------------------------------------------------------------ HTTP
    @property
    def ca_file(self) -> Path:
        return self.dir / "pki" / "ca.crt"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        token: str | bool | None = True,
        timeout: float = 30.0,
        raw: bytes | None = None,
    ) -> HTTPResult:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.ssl_context(), timeout=timeout
        )
        hdrs = {"Accept": "application/json"}
        if token is True:
            hdrs["Authorization"] = f"Bearer {self.token}"
        elif isinstance(token, str):
            hdrs["Authorization"] = f"Bearer {token}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            return HTTPResult(
                resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
            )
        finally:
            conn.close()

    def get_json(self, path: str) -> Any:
        r = self.request("GET", path)
        assert r.status == 200, (path, r.status, r.body[:300])
        return r.json()

    def state(self) -> Json:
        data: Json = self.get_json("/_lab/v1/state")
        return data

    # ------------------------------------------------------------------ kubectl
    def kubectl(
        self, *args: str, binary: str = "kubectl", timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env["HOME"] = str(self.dir / "home")
        env.pop("KUBECONFIG", None)
        cache = self.dir / "kube-cache"
        return subprocess.run(
            [
                binary,
                "--kubeconfig",
                str(self.dir / "kubeconfig"),
                "--cache-dir",
                str(cache),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )


def kubectl_binaries() -> dict[str, str]:
    """``{"dispatcher": path, "1.27": path, ...}`` for the kubectl clients installed here."""
    found: dict[str, str] = {}
    disp = shutil.which("kubectl")
    if disp is None:
        return found
    found["dispatcher"] = disp
    real_dir = Path(os.path.realpath(disp)).parent
    for p in sorted(real_dir.glob("kubectl.1.*")):
        found[p.name.removeprefix("kubectl.")] = str(p)
    return found
