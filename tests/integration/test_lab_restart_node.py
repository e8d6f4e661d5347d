"""``upgrader lab restart-node`` on a real lab, seen by the official ``kubernetes`` client, the
real ``kubectl`` and real SSH (paramiko against the lab's OpenSSH sshd); and the long waits
that a restarting node holds up (``wait_control_plane``, the between-nodes health gate)
saying what they wait for while it is down.

One lab for the module (starting one costs tens of seconds under load); the tests run in
file order and each leaves every node Ready again."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
from cli_run import cli
from lab_api_fixture import wait_for
from labkit import LabFiles, fast_playbooks, lab_down, lab_up, running_lab

from bench._perf import flag_spec

pytestmark = pytest.mark.integration

SPEC = flag_spec(1, 2, ssh_user="root", version="v1.27.8", delays={"kubelet_ready": 0.5})


class Lab(LabFiles):
    def __init__(self, d: Path) -> None:
        super().__init__(d)
        from kubernetes import client, config

        api = config.new_client_from_config(config_file=str(d / "kubeconfig"))  # type: ignore[no-untyped-call]
        self.api = api
        self.core = client.CoreV1Api(api)

    def connect(self, node: str, user: str | None = None, timeout: float = 5) -> paramiko.SSHClient:
        """A new SSH connection (short timeouts: a node that is down refuses at once)."""
        return super().connect(node, user, timeout)

    def ssh(self, node: str, command: str) -> tuple[int, str]:
        c = self.connect(node)
        try:
            _, out, _ = c.exec_command(command, timeout=60)
            text = out.read().decode()
            return out.channel.recv_exit_status(), text
        finally:
            c.close()

    def ready(self, node: str) -> tuple[str, str]:
        """(Ready condition status, kubelet version) by the official client."""
        n = self.core.read_node(node)
        cond = [c.status for c in n.status.conditions or [] if c.type == "Ready"]
        return (cond[0] if cond else "none", n.status.node_info.kubelet_version)

    def kubectl_ready(self, node: str) -> str:
        """The node's Ready status and kubelet version by the real kubectl."""
        r = subprocess.run(
            [
                "kubectl",
                "--kubeconfig",
                str(self.dir / "kubeconfig"),
                "get",
                "node",
                node,
                "-o",
                'jsonpath={.status.conditions[?(@.type=="Ready")].status} '
                "{.status.nodeInfo.kubeletVersion}",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    def restart(self, node: str, down_for: float) -> subprocess.Popen[str]:
        """`upgrader lab restart-node` in the background (as an operator's second terminal)."""
        import sys

        from cli_run import cli_env

        return subprocess.Popen(
            [sys.executable, "-m", "upgrader", "lab", "restart-node", node,
             "--dir", str(self.dir), "--down-for", str(down_for)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
            stdin=subprocess.DEVNULL,
        )  # fmt: skip


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("restart") / "lab", SPEC) as d:
        yield Lab(d)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl on this machine")
def test_restart_node_drops_sessions_goes_not_ready_and_comes_back_at_the_installed_kubelet(
    lab: Lab,
) -> None:
    assert lab.ready("w-1") == ("True", "v1.27.8")
    # the kubelet package upgraded, not restarted: the API still says v1.27.8
    rc, _ = lab.ssh(
        "w-1",
        "sed -i 's#/v1.27/#/v1.28/#' /etc/apt/sources.list.d/kubernetes.list && apt-get update -q"
        " && apt-get install -y --allow-change-held-packages kubelet=1.28.4-1.1",
    )
    assert rc == 0
    assert lab.ready("w-1") == ("True", "v1.27.8")

    # a session open on w-1 when it goes down
    held = lab.connect("w-1")
    _, out, _ = held.exec_command("echo started; sleep 120; echo never")
    assert out.readline() == "started\n"
    w2 = lab.connect("w-2")  # another node's session lives through it

    proc = lab.restart("w-1", down_for=4)
    seen_client = wait_for(
        lambda: lab.ready("w-1")[0] != "True",
        what="w-1 not Ready (kubernetes client)",
        timeout=60.0,
    )
    seen_kubectl = lab.kubectl_ready("w-1")
    assert not seen_kubectl.startswith("True"), seen_kubectl
    assert seen_client is True
    assert lab.ready("w-1")[0] == "Unknown"  # its kubelet stopped posting status
    # the open session was dropped without an exit status; new connections are refused
    assert out.read().decode() == ""
    assert out.channel.recv_exit_status() == -1
    held.close()
    with pytest.raises((paramiko.SSHException, OSError)):
        lab.connect("w-1").close()
    # its pods are not Ready while it is down
    pods = lab.core.list_pod_for_all_namespaces(field_selector="spec.nodeName=w-1").items
    assert pods and all(
        [c.status for c in p.status.conditions if c.type == "Ready"] == ["False"] for p in pods
    )
    # other nodes are untouched
    _, o2, _ = w2.exec_command("hostname")
    assert o2.channel.recv_exit_status() == 0
    w2.close()

    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert stdout.startswith(f"lab {lab.dir}: restarted w-1 ({lab.address('w-1')}): down 4s, ")
    assert "1 SSH session(s) dropped" in stdout and "kubelet v1.28.4 started" in stdout

    # back: Ready at the kubelet installed on the node, seen by both clients
    wait_for(
        lambda: lab.ready("w-1") == ("True", "v1.28.4"), what="w-1 Ready at v1.28.4", timeout=60.0
    )
    assert lab.kubectl_ready("w-1") == "True v1.28.4"
    # sshd answers again on the same port with the same host key (RejectPolicy)
    assert lab.ssh("w-1", "kubelet --version") == (0, "Kubernetes v1.28.4\n")
    assert lab.ssh("w-1", "systemctl is-active kubelet") == (0, "active\n")
    wait_for(
        lambda: all(
            [c.status for c in p.status.conditions if c.type == "Ready"] == ["True"]
            for p in lab.core.list_pod_for_all_namespaces(field_selector="spec.nodeName=w-1").items
        ),
        what="w-1's pods Ready again",
        timeout=60.0,
    )
    st = cli("lab", "status", "--dir", str(lab.dir))
    assert st.returncode == 0 and "3/3 node addresses answer" in st.stdout, st.stdout


def test_restart_node_bad_input_is_one_line(lab: Lab, tmp_path: Path) -> None:
    r = cli("lab", "restart-node", "w-9", "--dir", str(lab.dir))
    assert r.returncode == 2
    assert r.stderr == (
        f"error: node 'w-9': not a node of the lab in {lab.dir} (nodes: cp-1, w-1, w-2)\n"
    )
    r = cli("lab", "restart-node", "w-1", "--dir", str(lab.dir), "--down-for", "-1")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--down-for" in r.stderr
    r = cli("lab", "restart-node", "w-1", "--dir", str(tmp_path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a lab directory" in r.stderr


def test_an_interrupted_restart_brings_the_node_back_at_once(lab: Lab) -> None:
    import signal

    proc = lab.restart("w-2", down_for=600)
    wait_for(lambda: lab.ready("w-2")[0] != "True", what="w-2 not Ready", timeout=60.0)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err == "error: interrupted: w-2 was brought back up at once\n"
    assert time.monotonic() - t0 < 30
    wait_for(lambda: lab.ready("w-2")[0] == "True", what="w-2 Ready again", timeout=60.0)
    assert lab.ssh("w-2", "echo back") == (0, "back\n")


def test_control_plane_wait_speaks_while_its_node_restarts(lab: Lab) -> None:
    """``wait_control_plane`` on cp-1 while cp-1 reboots: its mirror pods are not Ready,
    and the wait says so (each component, its image tag, Ready or not, the time left)
    every ``progress_every`` seconds until they are Ready again."""
    from upgrader.kube.nodes import wait_control_plane

    proc = lab.restart("cp-1", down_for=4)
    wait_for(lambda: lab.ready("cp-1")[0] != "True", what="cp-1 not Ready", timeout=60.0)
    said: list[tuple[float, str]] = []
    start = time.monotonic()
    lines = wait_control_plane(
        lab.api, "cp-1", "v1.27.8", timeout=90, poll=0.2,
        on_progress=lambda t: said.append((time.monotonic() - start, t)), progress_every=1.0,
    )  # fmt: skip
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert all("image tag v1.27.8, Ready=True" in line for line in lines)
    assert len(said) >= 2, said
    first = said[0][1]
    assert first.startswith("waiting for the control plane of cp-1 to run v1.27.8 and be Ready: ")
    for comp in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        assert f"{comp}: image tag v1.27.8, Ready=False" in first, first
    assert "s of 90s left" in first
    assert all(b - a >= 0.9 for (a, _), (b, _) in itertools.pairwise(said))


def test_the_health_gate_speaks_while_a_node_restarts(lab: Lab) -> None:
    """The between-nodes health gate (what ``apply`` runs before each node) while w-2 is
    down: it names the NotReady node and the time left, then passes once w-2 is back."""
    from upgrader.core.model import PlanEntry
    from upgrader.preflight import between_nodes, health_gate

    said: list[tuple[str, str]] = []
    hook = between_nodes(
        lambda: health_gate(lab.api),
        timeout=90,
        interval=0.5,
        on_progress=lambda batch, text: said.append((batch[0].node, text)),
        progress_every=1.0,
    )
    proc = lab.restart("w-2", down_for=4)
    wait_for(lambda: lab.ready("w-2")[0] != "True", what="w-2 not Ready", timeout=60.0)
    hook([PlanEntry("w-1", "worker", "worker", "v1.28.4", ())])
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert said, "the gate waited in silence"
    node, first = said[0]
    assert node == "w-1"
    assert first.startswith("waiting for the cluster health gate: ")
    assert "w-2" in first and "s of 90s left" in first, first


# --------------------------------------------------------------------------- apply


TARGET = "v1.28.4"


def test_apply_says_what_the_health_gate_waits_for_while_a_node_reboots(tmp_path: Path) -> None:
    """A real `upgrader apply`: while w-1 finishes, w-2 reboots (`lab restart-node`, down
    30 s). The health gate before w-2 finds it NotReady and, instead of waiting in silence,
    says so (a `health-gate-waiting` event in `--events` and a progress line), then
    passes once w-2 is back; the run goes on and upgrades w-2."""
    import sys

    from cli_run import cli_env

    spec = {
        **SPEC,
        "workloads": [
            {"kind": "Deployment", "name": "web", "replicas": 2},
            {"kind": "DaemonSet", "namespace": "kube-system", "name": "kube-proxy"},
        ],
        "delays": {"kubelet_ready": 0.3, "pod_termination": 0.1},
    }
    d = tmp_path / "lab"
    fast_playbooks(tmp_path / "playbooks")
    events = tmp_path / "events.jsonl"
    lab_up(d, spec)
    lab = Lab(d)
    proc: subprocess.Popen[str] | None = None
    restart: subprocess.Popen[str] | None = None
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "upgrader", "apply", "-i", str(d / "inventory.yaml"),
             "--to", TARGET, "--yes", "--playbooks", str(tmp_path / "playbooks"),
             "--events", str(events)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            env=cli_env(), text=True,
        )  # fmt: skip

        def seen(kind: str, step: str | None = None) -> list[dict[str, Any]]:
            if not events.exists():
                return []
            docs = [json.loads(x) for x in events.read_text().splitlines() if x.strip()]
            return [e for e in docs if e["event"] == kind and (step is None or e["step"] == step)]

        def started() -> bool:
            assert proc is not None and proc.poll() is None, "apply ended too early"
            return bool(seen("step-started", f"{TARGET}/w-1/worker/kubelet-kubectl-packages"))

        # w-2 goes down while w-1 installs its kubelet; w-1's remaining steps (checksums,
        # kubelet restart, wait-ready, uncordon) take a few seconds, so the gate before w-2
        # still finds w-2 down for most of the 30 s
        wait_for(started, what="w-1's kubelet install", timeout=300)
        restart = lab.restart("w-2", down_for=30)
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, out + err
        _, r_err = restart.communicate(timeout=120)
        assert restart.returncode == 0, r_err
    finally:
        for p in (proc, restart):
            if p is not None and p.poll() is None:
                p.kill()
        lab_down(d)
    gate = seen("health-gate-waiting")
    assert gate, "the health gate waited in silence"
    assert all(e["nodes"] == ["w-2"] and e["node"] == "w-2" and "step" not in e for e in gate)
    first = gate[0]["message"]
    assert first.startswith("waiting for the cluster health gate: ") and "w-2" in first, first
    assert "NODE_NOT_READY" in first and "s of 300s left" in first, first
    lines = [x for x in out.splitlines() if "before w-2: waiting for the cluster health gate" in x]
    assert lines and "NODE_NOT_READY" in lines[0], out
    assert seen("step-finished", f"{TARGET}/w-2/worker/wait-ready")  # the run went on
