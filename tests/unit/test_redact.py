"""The one redaction function, and every sink that keeps or shows text going through it:
the same secret-laden output pushed through a real engine run (a real shell command on a
local "node") must leave no secret in the state file, the events file, the transcript, the
progress text or the CLI's error line."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from run_kit import one_hop_run, shell_step

from upgrader import state as st
from upgrader.core.model import PlanEntry
from upgrader.errors import StepFailed
from upgrader.execute import events as ev
from upgrader.execute.engine import Engine, EngineOptions
from upgrader.execute.ops import NodeState
from upgrader.execute.progress import PlainReporter
from upgrader.redact import MASK, make_redactor, redact, redact_obj
from upgrader.transport.local import LocalTransport

TOKEN = "abcdef.0123456789abcdef"
CERT_KEY = "f" * 64
CA_HASH = "sha256:" + "a" * 64
BEARER = "eyJhbGciOiJSUzI1NiJ9.payload.sig"
PASSWORD = "pw3"  # three characters: masked too


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"kubeadm join 1.2.3.4:6443 --token {TOKEN}", f"kubeadm join 1.2.3.4:6443 --token {MASK}"),
        (f"bootstrap token {TOKEN} created", f"bootstrap token {MASK} created"),
        (f"--certificate-key={CERT_KEY}", f"--certificate-key={MASK}"),
        (f"Using certificate key:\n{CERT_KEY}", f"Using certificate key:\n{MASK}"),
        (f"--discovery-token-ca-cert-hash {CA_HASH}", f"--discovery-token-ca-cert-hash {MASK}"),
        (f"hash {CA_HASH} ok", f"hash sha256:{MASK} ok"),
        (f"Authorization: Bearer {BEARER}", f"Authorization: Bearer {MASK}"),
        ("password=hunter2 next", f"password={MASK} next"),
    ],
)
def test_credential_shapes_are_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_what_is_not_a_credential_stays() -> None:
    digest = "registry.k8s.io/pause@sha256:" + "b" * 64
    plain = "kubeadm 1.28.4-1.1 hold ok installed; node w-1.example.com Ready"
    assert redact(digest) == digest
    assert redact(plain) == plain
    # a release checksum is a bare 64-hex value with no "certificate key" before it
    assert redact(f"{'c' * 64}  /usr/bin/kubeadm") == f"{'c' * 64}  /usr/bin/kubeadm"


def test_exact_secrets_of_any_length_longest_first() -> None:
    r = make_redactor(["pw3", "pw3-long"])
    assert r("a pw3-long b pw3 c") == f"a {MASK} b {MASK} c"
    assert make_redactor(["x"])("xyx") == f"{MASK}y{MASK}"
    assert make_redactor([""])("unchanged") == "unchanged"


def test_redact_obj_masks_before_json_escaping() -> None:
    secret = 'q"uo\\te'
    doc = redact_obj({"a": [f"x{secret}y", 3, {"b": secret}], "n": None}, make_redactor([secret]))
    assert doc == {"a": [f"x{MASK}y", 3, {"b": MASK}], "n": None}


class _Kube:
    def node_state(self, node: str) -> NodeState:
        return NodeState(node, True, False, "v1.27.8")


def _leaky_run(
    tmp_path: Path, leak: str, masker_secrets: list[str], engine_secrets: tuple[str, ...]
) -> tuple[dict[str, str], StepFailed]:
    """A real engine run of a step that prints ``leak`` on stdout and stderr and fails:
    the text of the state file, events file, transcript, progress and engine error."""
    node_dir = tmp_path / "node"
    node_dir.mkdir()
    (node_dir / "leak.txt").write_text(leak + "\n")
    step = shell_step(
        "leaky",
        "cat leak.txt; cat leak.txt >&2; exit 7",
        description="a site tool that prints credentials",
        timeout=20.0,
    )
    entries = [PlanEntry(node="w-1", role="worker", phase="worker", hop="v1.28.4", steps=(step,))]
    state_path = tmp_path / "state" / "lab.state.json"
    run = one_hop_run([step], transcripts=str(tmp_path / "state" / "t"))
    st.save(state_path, run)
    events_file = tmp_path / "events.jsonl"
    masker = ev.make_masker(masker_secrets)
    sink = ev.JsonlSink(events_file, masker)
    progress = io.StringIO()
    engine = Engine(
        entries,
        run,
        save=lambda s: st.save(state_path, s),
        transports=lambda n: LocalTransport(n, cwd=node_dir),
        kube=_Kube(),  # type: ignore[arg-type]
        options=EngineOptions(secrets=engine_secrets, backoff_initial=0.01, backoff_max=0.02),
        on_event=ev.Fanout([sink, PlainReporter(progress)]),
        transcripts=ev.TranscriptWriter(tmp_path / "state" / "t", masker),
        sleep=lambda s: None,
    )
    with pytest.raises(StepFailed) as ei:
        engine.run()
    sink.close()
    sinks = {
        "state file": state_path.read_text(),
        "events file": events_file.read_text(),
        "transcript": (tmp_path / "state" / "t" / "w-1.log").read_text(),
        "progress": progress.getvalue(),
        "engine error": str(ei.value),
    }
    return sinks, ei.value


def _cli_error_line(message: str) -> subprocess.CompletedProcess[str]:
    """The real entry point printing ``message`` as a StepFailed error."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from upgrader import cli; from upgrader.errors import StepFailed\n"
            "def boom(**kw): raise StepFailed(sys.argv[1])\n"
            "cli.app = boom; cli.main()",
            message,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_one_secret_laden_output_through_every_sink(tmp_path: Path) -> None:
    """State file, events file, transcript, progress text and the CLI error line."""
    leak = (
        f"kubeadm join cp:6443 --token {TOKEN} --discovery-token-ca-cert-hash {CA_HASH} "
        f"--certificate-key {CERT_KEY}; bare {TOKEN}; Authorization: Bearer {BEARER}; "
        f"sudo said {PASSWORD}"
    )
    secrets_ = [TOKEN, CERT_KEY, "a" * 64, BEARER, PASSWORD]
    # the engine knows the sudo password only
    sinks, err = _leaky_run(tmp_path, leak, [PASSWORD], (PASSWORD,))
    # the CLI's error line: the real entry point printing the engine's error, followed by the
    # raw output (without the password, which only the engine knows): both masked
    raw = leak.replace(PASSWORD, "")
    cli = _cli_error_line(f"{err} | {raw}")
    sinks["cli error line"] = cli.stderr
    assert cli.returncode == 1 and cli.stderr.startswith("error: ")
    for name, text in sinks.items():
        assert MASK in text, f"{name} kept nothing of the output"
        for s in secrets_:
            assert s not in text, f"{s[:10]}... survives in the {name}"
    assert "sudo said ***" in sinks["transcript"]


def test_the_kubeconfig_token_and_client_key_through_every_sink(tmp_path: Path) -> None:
    """A step that prints the kubeconfig (its ``client-key-data``), the client key's PEM and
    the bare bearer token: ``apply`` masks them with what it learns from the API client
    (``apply._secrets``) in the state file, events file, transcript, progress text and
    the CLI error line."""
    import base64
    from types import SimpleNamespace

    import yaml

    from upgrader.apply import _secrets
    from upgrader.kube import credfiles
    from upgrader.kube.client import make_api_client

    body = [base64.b64encode(bytes([i]) * 48).decode() for i in range(1, 5)]
    key_pem = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(body) + "\n-----END PRIVATE KEY-----\n"
    key_b64 = base64.b64encode(key_pem.encode()).decode()
    bare_token = "kc-token-" + "Z9" * 12
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
                "users": [
                    {
                        "name": "u",
                        "user": {
                            "token": bare_token,
                            "client-certificate-data": key_b64,
                            "client-key-data": key_b64,
                        },
                    }
                ],
            }
        )
    )
    api = make_api_client(kubeconfig, None)
    try:
        found = _secrets(SimpleNamespace(nodes=[], node_env_secrets=tuple), api)  # type: ignore[arg-type]
    finally:
        api.close()  # type: ignore[no-untyped-call]
    leak = f"{kubeconfig.read_text()}\n{key_pem}token is {bare_token}"
    sinks, err = _leaky_run(tmp_path, leak, list(found), found)
    cli = _cli_error_line(str(err))
    sinks["cli error line"] = cli.stderr
    assert cli.returncode == 1 and cli.stderr.startswith("error: ")
    assert credfiles.store().memfd_ok is False or str(api.configuration.key_file).startswith(
        "/proc/self/fd/"
    )
    for name, text in sinks.items():
        assert MASK in text, f"{name} kept nothing of the output"
        for s in [bare_token, key_b64, *body]:
            assert s not in text, f"{s[:10]}... survives in the {name}"
