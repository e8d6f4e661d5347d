"""Issue 12, attack 11: the kubeconfig's client key never lands in a file, even when the
CLI is SIGKILLed while it talks to the API; an ``exec`` credential plugin is announced.

Against the real lab API server (``lab_api_fixture``) and the real CLI in a subprocess.
The lab authenticates with its bearer token; the kubeconfig also carries a client
certificate and key signed by the lab's CA, which the Kubernetes client loads into TLS on
every connection (the lab does not ask for it; ``tests/unit/test_kube_client.py`` checks
a server that requires it).
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from cli_run import cli, cli_env
from kubeapi_stub import TLSServer
from lab_api_fixture import LabAPI, small_spec, wait_for

from bench.security import client_cert, files_holding, key_body_lines

LEASE_PATH = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"


def cert_user(cert_pem: bytes, key_pem: bytes, token: str | None = None) -> dict[str, Any]:
    """A kubeconfig user with the client certificate and key inline (and ``token``)."""
    user = {"token": token} if token is not None else {}
    return {
        **user,
        "client-certificate-data": base64.b64encode(cert_pem).decode(),
        "client-key-data": base64.b64encode(key_pem).decode(),
    }


def admin_client_cert(ca_cert: Path, ca_key: Path) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) for ``CN=upgrader-test, O=system:masters``, signed by the
    lab's CA."""
    return client_cert(ca_cert, ca_key, "upgrader-test", "system:masters")


def write_kubeconfig(lab: LabAPI, path: Path, user: dict[str, Any]) -> None:
    ca_b64 = base64.b64encode(lab.ca_file.read_bytes()).decode()
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "lab", "cluster": {"server": lab.url, "certificate-authority-data": ca_b64}}
        ],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "ops"}}],
        "current-context": "lab",
        "users": [{"name": "ops", "user": user}],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)


def write_inventory(path: Path, kubeconfig: Path) -> None:
    doc = {
        "cluster": {"name": "lab"},
        "kubeconfig": {"path": str(kubeconfig), "context": "lab"},
        "nodes": [
            {"name": "cp-1", "address": "127.61.0.2", "role": "control-plane"},
            {"name": "w-1", "address": "127.61.0.3", "role": "worker"},
        ],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture
def slow_lease_lab(tmp_path: Path) -> Iterator[LabAPI]:
    """A lab whose GETs of the lock lease hang (the client times out and retries): the CLI is caught
    mid-request, connected, with its credentials loaded."""
    spec = small_spec(
        faults=[{"api": {"method": "GET", "path_prefix": LEASE_PATH, "timeout": 60, "times": 20}}]
    )
    server = LabAPI.start(tmp_path / "lab", spec)
    try:
        yield server
    finally:
        server.stop()


def test_client_key_is_in_no_file_after_a_sigkilled_run(
    slow_lease_lab: LabAPI, tmp_path: Path
) -> None:
    lab = slow_lease_lab
    cert_pem, key_pem = admin_client_cert(lab.ca_file, lab.dir / "pki" / "ca.key")
    needles = key_body_lines(key_pem)
    assert len(needles) > 10
    kubeconfig = tmp_path / "ops" / "kubeconfig"
    kubeconfig.parent.mkdir()
    write_kubeconfig(
        lab,
        kubeconfig,
        cert_user(cert_pem, key_pem, token=lab.token),
    )
    inv = tmp_path / "ops" / "inventory.yaml"
    write_inventory(inv, kubeconfig)
    child_tmp = tmp_path / "child-tmp"
    child_tmp.mkdir()
    env = cli_env()
    env["TMPDIR"] = str(child_tmp)
    proc = subprocess.Popen(
        [sys.executable, "-m", "upgrader", "status", "-i", str(inv)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        # the lease GET arrived at the server: TLS is up, the client key was loaded
        wait_for(
            lambda: proc.poll() is not None or lab.get_json("/_lab/v1/faults")["faults"],
            90,
            "the CLI's lease request",
        )
        assert proc.poll() is None, proc.communicate()
        # while it runs: the key is in no file (a reader of /tmp could take it now)
        during = files_holding(child_tmp, needles, recursive=True)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    after = files_holding(child_tmp, needles, recursive=True)
    after += files_holding(Path(tempfile.gettempdir()), needles, recursive=False)
    assert during == [], f"the client key is on disk while the CLI runs: {during}"
    assert after == [], f"the client key is left on disk after SIGKILL: {after}"


def test_a_client_key_kubeconfig_still_talks_to_the_api(tmp_path: Path) -> None:
    """The same kubeconfig (token + client certificate + key, CA data) works end to end:
    ``status`` reads the lease through TLS with the key loaded, and exits 0."""
    lab = LabAPI.start(tmp_path / "lab", small_spec())
    try:
        cert_pem, key_pem = admin_client_cert(lab.ca_file, lab.dir / "pki" / "ca.key")
        kubeconfig = tmp_path / "kubeconfig"
        write_kubeconfig(
            lab,
            kubeconfig,
            cert_user(cert_pem, key_pem, token=lab.token),
        )
        inv = tmp_path / "inventory.yaml"
        write_inventory(inv, kubeconfig)
        r = cli("status", "-i", str(inv), timeout=120)
    finally:
        lab.stop()
    assert r.returncode == 0, r.stderr
    assert "free" in r.stdout, r.stdout


# --------------------------------------------------------------------------- mutual TLS


class _VersionByClientCN(http.server.BaseHTTPRequestHandler):
    """Answers ``/version`` with the client certificate's CN as ``gitVersion`` (and
    records each CN in ``seen``)."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        cert = self.connection.getpeercert() or {}  # type: ignore[attr-defined]
        cn = next(
            (v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"),
            "",
        )
        self.seen.append(cn)
        fields = ("buildDate", "compiler", "gitCommit", "gitTreeState", "goVersion")
        doc = {k: "x" for k in fields}
        doc.update(major="1", minor="27", platform="linux/amd64", gitVersion=cn)
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_the_in_memory_client_key_authenticates_a_mutual_tls_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that requires the client certificate accepts the in-memory key: the TLS
    layer really reads ``/proc/self/fd/N`` (no token: the certificate is the identity),
    and nothing holding the key appears in the temp directory."""
    from kubernetes.client import VersionApi

    from upgrader.kube.client import make_api_client
    from upgrader_lab.apiserver.certs import ensure_pki

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    pki = ensure_pki(tmp_path / "pki-home", "lab", "127.0.0.1")
    cert_pem, key_pem = admin_client_cert(pki.ca_cert, pki.ca_key)
    seen: list[str] = []
    handler = type("Handler", (_VersionByClientCN,), {"seen": seen})
    # a server that requires a client certificate signed by the same CA
    server = TLSServer.start(handler, tmp_path / "pki-home", client_certs=True)
    try:
        kubeconfig = tmp_path / "kubeconfig"
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "m",
                    "cluster": {
                        "server": server.url,
                        "certificate-authority-data": base64.b64encode(
                            pki.ca_cert.read_bytes()
                        ).decode(),
                    },
                }
            ],
            "contexts": [{"name": "m", "context": {"cluster": "m", "user": "u"}}],
            "current-context": "m",
            "users": [
                {
                    "name": "u",
                    "user": cert_user(cert_pem, key_pem),
                }
            ],
        }
        kubeconfig.write_text(yaml.safe_dump(doc))
        api = make_api_client(kubeconfig, None)
        try:
            cfg = api.configuration
            for attr in ("ssl_ca_cert", "cert_file", "key_file"):
                assert str(getattr(cfg, attr)).startswith("/proc/self/fd/"), attr
            assert Path(cfg.key_file).read_bytes() == key_pem
            info = VersionApi(api).get_code()
            assert info.git_version == "upgrader-test"
            held = files_holding(tmp_path / "tmp", key_body_lines(key_pem), recursive=True)
            assert held == []
        finally:
            api.close()  # type: ignore[no-untyped-call]
    finally:
        server.stop()
    assert seen == ["upgrader-test"]


# --------------------------------------------------------------------------- exec plugins

PLUGIN = """#!{python}
import json, sys
status = json.load(open(sys.argv[1]))
print(json.dumps({{"apiVersion": "client.authentication.k8s.io/v1beta1",
                  "kind": "ExecCredential", "status": status}}))
"""


def exec_user(tmp_path: Path, status: dict[str, Any], secret: str) -> dict[str, Any]:
    """A kubeconfig ``user`` whose exec plugin prints ``status``; ``secret`` is one of its
    arguments and an environment value (neither may be shown)."""
    plugin = tmp_path / "bin" / "cred-helper"
    plugin.parent.mkdir(exist_ok=True)
    plugin.write_text(PLUGIN.format(python=sys.executable))
    plugin.chmod(0o755)
    status_file = tmp_path / "status.json"
    status_file.write_text(json.dumps(status))
    return {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": str(plugin),
            "args": [str(status_file), f"--role-secret={secret}"],
            "env": [{"name": "HELPER_SECRET", "value": secret}],
            "interactiveMode": "Never",
        }
    }


def test_plan_and_apply_announce_the_exec_plugin(tmp_path: Path) -> None:
    """``plan`` (text and --json) and ``apply``'s preview say which command the kubeconfig's
    user runs, before it runs, and never its arguments or environment values."""
    lab = LabAPI.start(tmp_path / "lab", small_spec())
    secret = "s3cr3t-" + os.urandom(8).hex()
    try:
        kubeconfig = tmp_path / "kubeconfig"
        write_kubeconfig(lab, kubeconfig, exec_user(tmp_path, {"token": lab.token}, secret))
        inv = tmp_path / "inventory.yaml"
        write_inventory(inv, kubeconfig)
        # nodes that refuse SSH at once: the plan is blocked (exit 3) but printed
        doc = yaml.safe_load(inv.read_text())
        doc["ssh"] = {"port": 1, "connect_timeout": 2}
        inv.write_text(yaml.safe_dump(doc))
        plan = cli("plan", "-i", str(inv), "--to", "v1.28.4", timeout=300)
        plan_json = cli("plan", "-i", str(inv), "--to", "v1.28.4", "--json", timeout=300)
        applied = cli("apply", "-i", str(inv), "--to", "v1.28.4", "--yes", timeout=300)
    finally:
        lab.stop()
    plugin = tmp_path / "bin" / "cred-helper"
    line = f"kubeconfig user 'ops' runs an exec credential plugin: {plugin}"
    assert plan.returncode == 4, plan.stderr
    assert plan.stdout.splitlines()[0] == line, plan.stdout[:300]
    assert "Upgrade plan:" in plan.stdout  # the plugin's token worked: facts were gathered
    assert plan_json.returncode == 4, plan_json.stderr
    json.loads(plan_json.stdout)  # stdout stays one JSON document
    assert line in plan_json.stderr.splitlines()
    assert applied.returncode == 4, applied.stderr
    assert applied.stdout.splitlines()[0] == line, applied.stdout[:300]
    for r in (plan, plan_json, applied):
        assert secret not in r.stdout + r.stderr
        assert lab.token not in r.stdout + r.stderr


def test_a_client_key_from_an_exec_plugin_is_moved_into_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exec plugin that returns ``clientKeyData``: the loader writes it to our private
    directory, which it leaves at once for a memfd; nothing holding it stays on disk."""
    from upgrader.kube import credfiles
    from upgrader.kube.client import make_api_client

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(credfiles, "_store", None)  # a fresh store under this temp dir
    lab = LabAPI.start(tmp_path / "lab", small_spec())
    try:
        cert_pem, key_pem = admin_client_cert(lab.ca_file, lab.dir / "pki" / "ca.key")
        status = {
            "clientCertificateData": cert_pem.decode(),
            "clientKeyData": key_pem.decode(),
        }
        kubeconfig = tmp_path / "kubeconfig"
        write_kubeconfig(lab, kubeconfig, exec_user(tmp_path, status, "x"))
        api = make_api_client(kubeconfig, None)
        try:
            assert str(api.configuration.key_file).startswith("/proc/self/fd/")
            assert Path(api.configuration.key_file).read_bytes() == key_pem
            held = files_holding(tmp_path / "tmp", key_body_lines(key_pem), recursive=True)
            assert held == []
        finally:
            api.close()  # type: ignore[no-untyped-call]
            credfiles.store().close()
    finally:
        lab.stop()
    # at exit the private directory goes too: nothing is left under the temp directory
    assert [p for p in (tmp_path / "tmp").rglob("*") if not p.is_dir()] == []
    assert list((tmp_path / "tmp").glob(f"upgrader-kube-*/{os.getpid()}-*")) == []


def test_failed_api_calls_show_no_credential(tmp_path: Path) -> None:
    """A kubeconfig whose token the API server rejects (401), an API that fails (500), with
    debug logging (-vv), and an exec plugin that fails printing credentials: the error lines
    and logs name the failure, never the token or the client key (the client's request
    headers are not printed; log lines go through the redaction)."""
    spec = small_spec(
        faults=[{"api": {"method": "GET", "path_prefix": LEASE_PATH, "status": 500, "times": 50}}]
    )
    lab = LabAPI.start(tmp_path / "lab", spec)
    try:
        cert_pem, key_pem = admin_client_cert(lab.ca_file, lab.dir / "pki" / "ca.key")
        wrong = "wrong-" + os.urandom(16).hex()
        inv = {}
        for name, token in (("rejected", wrong), ("failing", lab.token)):
            kubeconfig = tmp_path / name / "kubeconfig"
            kubeconfig.parent.mkdir()
            write_kubeconfig(
                lab,
                kubeconfig,
                cert_user(cert_pem, key_pem, token=token),
            )
            inv[name] = tmp_path / name / "inventory.yaml"
            write_inventory(inv[name], kubeconfig)
            doc = yaml.safe_load(inv[name].read_text())
            doc["ssh"] = {"port": 1, "connect_timeout": 2}
            inv[name].write_text(yaml.safe_dump(doc))
        # an exec plugin that fails, printing credentials on stderr (the kubernetes loader
        # logs its stderr as it is)
        failing = tmp_path / "bin" / "failing-helper"
        failing.parent.mkdir(exist_ok=True)
        failing.write_text(
            "#!/bin/sh\n"
            f"echo 'refresh failed: Authorization: Bearer {wrong} password={wrong}' >&2\n"
            "exit 1\n"
        )
        failing.chmod(0o755)
        kubeconfig = tmp_path / "plugin" / "kubeconfig"
        kubeconfig.parent.mkdir()
        plugin_user = {
            "exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(failing)}
        }
        write_kubeconfig(lab, kubeconfig, plugin_user)
        inv["plugin"] = tmp_path / "plugin" / "inventory.yaml"
        write_inventory(inv["plugin"], kubeconfig)
        runs = {
            "status, exec plugin failing": cli("status", "-i", str(inv["plugin"])),
            "plan, token rejected": cli(
                "plan", "-vv", "-i", str(inv["rejected"]), "--to", "v1.28.4", timeout=300
            ),
            "status, token rejected": cli("status", "-vv", "-i", str(inv["rejected"])),
            "status, API failing": cli("status", "-vv", "-i", str(inv["failing"]), timeout=300),
        }
    finally:
        lab.stop()
    assert runs["plan, token rejected"].returncode == 5, runs["plan, token rejected"].stderr
    assert "401" in runs["plan, token rejected"].stderr
    assert "unknown (API: GET lease" in runs["status, token rejected"].stdout
    assert "500" in runs["status, API failing"].stdout + runs["status, API failing"].stderr
    assert "Authorization: Bearer ***" in runs["status, exec plugin failing"].stderr
    secrets = [wrong, lab.token, *(x.decode() for x in key_body_lines(key_pem))]
    for what, r in runs.items():
        for s in secrets:
            assert s not in r.stdout + r.stderr, f"{what}: {s[:10]}... shown"
