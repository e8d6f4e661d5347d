"""Security campaign: hostile values never reach a shell unquoted, unknown or changed SSH
host keys are refused, and no secret lands in transcripts, events, the state file or a
process's argv.

Owns the campaign (``python -m bench.security``) and ``bench/results/security.json``. The
checks, each against a real lab through the real CLI:

- **inventory values**: every string field of the lab's inventory gets each shell payload
  (``$(touch CANARY)``, ``;touch CANARY``, backquotes, pipes, newlines, quotes); ``plan``
  must refuse the file with exit 2 and one line, or, where the field is free text (a path,
  a label, a kubeconfig context), run without the canary file ever appearing;
- **url_template**: a custom repository URL with every character the validator allows that
  a shell would still interpret (``[`` ``]`` ``~`` ``^`` ``%`` ``=`` ``,`` ``+`` ``@``
  ``:``) is rendered as one shell word, and the repository step, executed on a lab
  node, writes that URL to the node's repository file byte for byte;
- **facts values** (what nodes report: package versions, package manager, node and
  cluster names): a facts file carrying shell payloads is planned (with a site playbook
  whose own steps use every template variable); each rendered command either keeps the
  payload inside one shell word, or the plan is refused; every rendered shell step then
  runs on a lab node and the canary file must not appear;
- **host keys**: with the lab's ``known_hosts`` emptied (unknown key) or rewritten with
  another key (changed key, also under ``host_key_policy: accept-new``), ``plan`` and
  ``apply`` refuse (exit 3: a ``HOST_KEY_REJECTED`` blocker per node, or exit 4), every
  node is named with its host key, and no command runs on any node;
- **secrets**: a full ``apply`` with a sudo password in the variable named by
  ``ssh.sudo_password_env`` and a site step that prints the API bearer token, a kubeadm join
  command (bootstrap token, discovery hash) and a certificate key on stdout and stderr and
  then fails: the token, the sudo password and the private key's body appear in
  no transcript, event, state file, stored plan or CLI output, and in no process's argv
  sampled while the run goes on; the state file, the events file and the transcripts are
  mode 0600.

- **state files** (issue 12, attacks 1 and 2): an unfinished run recorded beside the lab,
  then: its stored plan rewritten with another command, its directory or state file made
  writable by others, its ``transcripts`` path pointed outside the state directory, a
  playbook step changed since it started, a symlink in place of ``<state>.lock``,
  ``--events`` or ``facts -o``: each is exit 2 with one error line naming the path (or the
  changed step), no command on any node, the symlinks' target unchanged;
- **node output** (attack 5): a fact probe reading a 1 GiB file on a node, and a command
  printing 200 MiB on stdout, then on stderr (``--quick``: 32 MiB, stdout), through the real SSH
  transport: ``plan`` reports ``FACT_TOO_LARGE`` naming the node and the cap (exit 3), the
  command's output past the cap is dropped, and the peak RSS grows by well under 64 MiB;
- **terminal escapes** (attack 6): OSC 52, CSI and U+202E in a node's daemon.json (quoted
  by ``DOCKERD_TCP_NO_TLS``), in the banner lines an SSH server sends before its version
  line (``plan`` and ``plan -vv`` each), and in a failing site step's
  stdout and stderr (``apply``'s error line, ``status``, the transcript): none of the raw
  characters appears, each is shown escaped (``\\x1b``, ``\\u202e``);
- **playbook text** (attack 7): a site step whose command, check or description holds CR,
  ESC, BEL, NUL, DEL, a C1 control or a bidi override/isolate: ``plan`` refuses it at load
  time (exit 2, one line naming file, phase, step and field), nothing runs.

Must not: weaken a lab's security for anything but the check at hand (each check restores
the files it rewrote), or leave a lab running.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench._campaign import (
    FAST_DELAYS,
    REPO,
    TARGET,
    Lab,
    Proc,
    Table,
    cli,
    fast_playbooks,
    lab_session,
    machine,
    node,
    write_result,
)

DATA = REPO / "tests" / "data"


def payloads(canary: Path) -> list[str]:
    c = str(canary)
    return [
        f"$(touch {c})",
        f";touch {c}",
        f"`touch {c}`",
        f"|touch {c}",
        f"&&touch {c}",
        f"'$(touch {c})'",
        f'"$(touch {c})"',
        f"\ntouch {c}\n",
        f"${{IFS}}touch${{IFS}}{c}",
    ]


@dataclass
class Check:
    name: str
    ok: bool = True
    cases: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def fail(self, what: str) -> None:
        self.ok = False
        self.problems.append(what)

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "ok": self.ok,
            "cases": self.cases,
            "problems": self.problems,
            "notes": self.notes,
        }


def _calls_total(lab: Lab) -> int:
    return sum(len(v) for v in lab.all_calls().values())


def _one_line_error(r: Proc) -> bool:
    lines = r.stderr_lines
    return len(lines) == 1 and lines[0].startswith("error:")


# --------------------------------------------------------------------------- inventory values


def _string_paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _string_paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _string_paths(v, (*prefix, i))
    elif isinstance(doc, str):
        yield prefix


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for p in path[:-1]:
        doc = doc[p]
    doc[path[-1]] = value


def check_inventory_values(lab: Lab, work: Path, limit: int | None = None) -> Check:
    ch = Check("inventory values with shell payloads")
    canary = work / "canary-inventory"
    base = yaml.safe_load(lab.inventory.read_text())
    base.setdefault("kubeconfig", {})["context"] = "lab"
    base["nodes"][1]["labels"] = {"site": "eu"}
    base["nodes"][1]["user"] = "root"
    base["ssh"]["sudo_password_env"] = "UPGRADER_SUDO"
    paths = list(_string_paths(base))
    if limit is not None:  # the smoke test: a node name, an address, a free-text path
        keep = {("nodes", 0, "name"), ("nodes", 1, "address"), ("kubeconfig", "path")}
        paths = [p for p in paths if p in keep]
    accepted: set[str] = set()
    for path in paths:
        for i, p in enumerate(payloads(canary)[:limit]):
            doc = json.loads(json.dumps(base))
            orig = doc
            for k in path[:-1]:
                orig = orig[k]
            _set(doc, path, f"{orig[path[-1]]}{p}")
            f = lab.dir / f"sec-inv-{i}.yaml"
            f.write_text(yaml.safe_dump(doc, sort_keys=False))
            before = _calls_total(lab)
            r = cli("plan", "-i", str(f), "--to", TARGET, "--json", timeout=180)
            f.unlink()
            ch.cases += 1
            where = ".".join(map(str, path))
            if canary.exists():
                ch.fail(f"{where}: payload {p!r} created the canary (exit {r.code})")
                canary.unlink()
            if "Traceback" in r.stderr:
                ch.fail(f"{where}: traceback for payload {p!r}")
            if r.code == 2:
                if not _one_line_error(r):
                    ch.fail(f"{where}: refused with {len(r.stderr_lines)} stderr lines")
                if _calls_total(lab) != before:
                    ch.fail(f"{where}: refused, but only after commands ran on the nodes")
            else:
                accepted.add(where)
    ch.notes.append(
        "accepted (free-text fields, no canary): " + (", ".join(sorted(accepted)) or "none")
    )
    return ch


# --------------------------------------------------------------------------- url_template

ODD_URL = "https://pkgs.example.invalid/a[b]c/~u^v%41=w,z+q@r:s/v{minor}/deb/"


def _ssh(lab: Lab, node_name: str, command: str, timeout: float = 60) -> subprocess.Popen[str]:
    """``command`` as root on the node: the lab's SSH user, through the node's sudo when
    that user is not root (as the product runs its steps)."""
    info = lab.info
    addr = info["nodes"][node_name]["address"]
    user = str(info["ssh"].get("user") or "root")
    if user != "root":
        command = "sudo -n sh -c " + shlex.quote(command)
    return subprocess.Popen(
        [
            "ssh",
            "-i",
            str(lab.dir / "id_ed25519"),
            "-o",
            f"UserKnownHostsFile={lab.dir / 'known_hosts'}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-p",
            str(info["ssh"]["port"]),
            f"{user}@{addr}",
            command,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def run_on(lab: Lab, node_name: str, command: str, timeout: float = 60) -> tuple[int, str, str]:
    p = _ssh(lab, node_name, command, timeout)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        return -1, out, err
    return p.returncode, out, err


def _words_contain(command: str, value: str) -> bool:
    """``value`` is (inside) one word of ``command`` as a POSIX shell splits it."""
    try:
        words = shlex.split(command, posix=True)
    except ValueError:
        return False
    return any(value in w for w in words)


def check_url_template(lab: Lab, work: Path) -> Check:
    ch = Check("url_template with shell-special characters")
    doc = yaml.safe_load(lab.inventory.read_text())
    doc["packages"]["url_template"] = ODD_URL
    doc["packages"]["repository"] = "custom"
    f = lab.dir / "sec-url.yaml"
    f.write_text(yaml.safe_dump(doc, sort_keys=False))
    r = cli("plan", "-i", str(f), "--to", TARGET, "--json", timeout=180)
    f.unlink()
    ch.cases += 1
    if r.code not in (0, 3):
        ch.fail(f"plan with the custom url_template exited {r.code}: {r.stderr.strip()[:300]}")
        return ch
    url = ODD_URL.replace("{minor}", "1.28")
    plan = json.loads(r.stdout)
    steps = [s for e in plan.get("nodes", []) for s in e.get("steps", [])]
    repo_steps = [s for s in steps if s.get("name") == "package-repository" and s.get("command")]
    if not repo_steps:
        ch.fail("no package-repository step rendered (the workers' repositories are at 1.27)")
        return ch
    for s in repo_steps:
        ch.cases += 1
        if not _words_contain(s["command"], url):
            ch.fail(f"{s['id']}: the URL is not one shell word: {s['command'][:300]}")
    # Run the rendered repository step on its node: the file must hold the URL literally.
    # The lab's curl serves pkgs.k8s.io only: a shell function stands in for it (the
    # rendered command itself is run unchanged after it).
    s = repo_steps[0]
    key = "https://pkgs.k8s.io/core:/stable:/v1.28/deb/Release.key"
    stand_in = f"curl() {{ command curl -fsSL {key}; }}; "
    code, _out, err = run_on(lab, s["node"], stand_in + s["command"])
    root = Path(lab.info["nodes"][s["node"]]["root"])
    listing = root / "etc" / "apt" / "sources.list.d" / "kubernetes.list"
    text = listing.read_text() if listing.exists() else ""
    ch.cases += 1
    if url not in text:
        ch.fail(
            f"{s['node']}: kubernetes.list does not hold the URL verbatim "
            f"(exit {code}; file: {text.strip()[:200]!r}; stderr: {err.strip()[:200]!r})"
        )
    else:
        ch.notes.append(f"{s['node']}: kubernetes.list holds {url!r} verbatim (step exit {code})")
    return ch


# --------------------------------------------------------------------------- facts values


SITE_PLAYBOOK = {
    "version": 1,
    "phases": {
        "worker": {
            "pre": [
                {
                    "name": "site-echo",
                    "kind": "shell",
                    "description": "echo every template value of {node}",
                    "command": (
                        "{pkg_resolve}echo {node} {cluster} {version} {kversion} {minor} {role} "
                        "{pm} {repo_url} {repo_key_url} {pkg_version}"
                    ),
                    "retry_safe": True,
                }
            ]
        }
    },
}


FACT_FIELDS = ("repo_versions", "package_manager", "node_name", "cluster_name", "os_family")


def _hostile_facts(p: str, field_: str) -> dict[str, Any]:
    """A facts file whose ``field_`` carries ``p`` (what a node or the API reported)."""
    doc = json.loads((DATA / "facts" / "one-cp-two-workers.json").read_text())
    if field_ == "cluster_name":
        doc["cluster"]["name"] = f"demo{p}"
    for n in doc["nodes"]:
        if field_ == "repo_versions":
            n["repo_versions"] = [f"1.28.4-1.1{p}", "1.28.3-1.1"]
            n.get("packages", {}).pop("kubeadm", None)
        if n["role"] == "worker":
            if field_ == "node_name":
                n["name"] = f"{n['name']}{p}"
            if field_ == "package_manager":
                n["package_manager"] = f"apt{p}"
            if field_ == "os_family":
                n["os_family"] = f"debian{p}"
    return dict(doc)


MARKER = "XMARKX"


def _plan_commands(r: Proc) -> dict[str, str]:
    plan = json.loads(r.stdout)  # {"nodes": [{"name", "phase", "hop", "steps": [...]}], ...}
    out: dict[str, str] = {}
    for e in plan.get("nodes", []):
        for s in e.get("steps", []):
            for key in ("command", "check"):
                if s.get(key):
                    out[f"{s['id']} ({key})"] = s[key]
    return out


def _same_words(benign: str, hostile: str, payload: str) -> bool:
    """The payload changed no word boundary: splitting the hostile command gives the benign
    command's words with the marker replaced by the payload."""
    try:
        bw = shlex.split(benign, posix=True)
        hw = shlex.split(hostile, posix=True)
    except ValueError:
        return False
    return hw == [w.replace(MARKER, payload) for w in bw]


def check_facts_values(
    lab: Lab, work: Path, limit: int | None = None, fields: tuple[str, ...] = FACT_FIELDS
) -> Check:
    ch = Check("facts values with shell payloads, rendered and executed")
    # under the lab directory: a node command sees it wherever the lab lives (with a non-root
    # SSH user, a node hides host directories others may not search, e.g. pytest's)
    canary = lab.dir / "canary-facts"
    pb = fast_playbooks(work / "pb-site")
    (pb / "site.yaml").write_text(yaml.safe_dump(SITE_PLAYBOOK, sort_keys=False))

    def plan_for(value: str, field_: str) -> Proc:
        facts = work / "facts.json"
        facts.write_text(json.dumps(_hostile_facts(value, field_)))
        return cli("plan", "--facts", str(facts), "--to", TARGET, "--json", "--playbooks", str(pb))

    ran = refused = 0
    outcome: dict[str, str] = {}
    cases = [(f, p) for f in fields for p in payloads(canary)[:limit]]
    benigns: dict[str, dict[str, str]] = {}
    for field_, p in cases:
        if field_ not in benigns:
            base = plan_for(MARKER, field_)
            if base.code not in (0, 3):
                ch.fail(f"{field_}: the plan with a plain marker failed ({base.code}): "
                        f"{base.stderr[-300:]}")  # fmt: skip
                benigns[field_] = {}
                continue
            benigns[field_] = _plan_commands(base)
        benign = benigns[field_]
        if not benign:
            ch.fail(f"{field_}: the plain plan rendered no command")
            continue
        r = plan_for(p, field_)
        ch.cases += 1
        if "Traceback" in r.stderr:
            ch.fail(f"payload {p!r}: traceback")
            continue
        if r.code == 2:
            refused += 1
            outcome.setdefault(field_, "refused at load")
            if not _one_line_error(r):
                ch.fail(f"payload {p!r}: refused with {len(r.stderr_lines)} stderr lines")
            continue
        if r.code not in (0, 3):
            ch.fail(f"payload {p!r}: plan exited {r.code}: {r.stderr.strip()[:200]}")
            continue
        outcome[field_] = "rendered quoted, executed"
        hostile = _plan_commands(r)
        for key, cmd in hostile.items():
            bkey = key.replace(p, MARKER)
            if bkey not in benign:
                ch.fail(f"payload {p!r}: step {key[:80]!r} has no counterpart in the plain plan")
                continue
            if not _same_words(benign[bkey], cmd, p):
                ch.fail(f"payload {p!r}: {bkey}: the payload changed the words of: {cmd[:200]}")
        carrying = {cmd: key for key, cmd in hostile.items() if MARKER in benign.get(
            key.replace(p, MARKER), "")}  # fmt: skip
        if not carrying:
            outcome[field_] = "never reaches a command"
        for cmd, key in carrying.items():
            ch.cases += 1
            ran += 1
            run_on(lab, "w-2", cmd, timeout=30)
            if canary.exists():
                ch.fail(f"payload {p!r}: running {key} created the canary")
                canary.unlink()
    if ran == 0:
        ch.fail("no hostile value reached a rendered command: the check tested nothing")
    ch.notes.append(
        f"{len(cases)} (field, payload) cases: {refused} plans refused at load; "
        f"{ran} rendered commands (steps and checks) executed on a lab node; "
        + "; ".join(f"{k}: {v}" for k, v in sorted(outcome.items()))
    )
    return ch


# --------------------------------------------------------------------------- host keys


def _other_key(work: Path) -> str:
    key = work / "other_host_key"
    if not key.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
            check=True,
            capture_output=True,
        )
    return key.with_suffix(".pub").read_text().split()[1]


def check_host_keys(
    lab: Lab, work: Path, extra_env: dict[str, str] | None = None, quick: bool = False
) -> Check:
    ch = Check("unknown and changed SSH host keys")
    kh = lab.dir / "known_hosts"
    original = kh.read_text()
    other = _other_key(work)
    changed = "\n".join(
        " ".join([*line.split()[:2], other]) if line.strip() and not line.startswith("#") else line
        for line in original.splitlines()
    )
    inv_doc = yaml.safe_load(lab.inventory.read_text())
    accept_new = json.loads(json.dumps(inv_doc))
    accept_new["ssh"]["host_key_policy"] = "accept-new"
    inv_accept = lab.dir / "sec-accept-new.yaml"
    inv_accept.write_text(yaml.safe_dump(accept_new, sort_keys=False))
    cases: list[tuple[str, str, Path]] = [
        ("unknown host key (empty known_hosts)", "", lab.inventory),
        ("changed host key", changed + "\n", lab.inventory),
        ("changed host key, host_key_policy accept-new", changed + "\n", inv_accept),
    ]
    try:
        for what, content, inv in cases:
            for cmd in ("plan",) if quick else ("plan", "apply"):
                kh.write_text(content)
                lab.clear_calls()
                args = ["plan", "-i", str(inv), "--to", TARGET]
                if cmd == "apply":
                    args = ["apply", "-i", str(inv), "--to", TARGET, "--yes", "--state",
                            str(work / "hk-state.json")]  # fmt: skip
                r = cli(*args, timeout=180, extra_env=extra_env)
                ch.cases += 1
                calls = _calls_total(lab)
                text = r.stdout + r.stderr
                rejected = [
                    ln.strip()
                    for ln in text.splitlines()
                    if "host key" in ln.lower() and any(n in ln for n in lab.node_names)
                ]
                # A refused host key is a blocker finding of the gather (exit 3, named per
                # node in the plan's findings) or a transport error (exit 4).
                if r.code not in (3, 4):
                    ch.fail(f"{cmd}, {what}: exit {r.code} (want 3 or 4): {text[-200:]}")
                named = {n for n in lab.node_names if any(n in ln for ln in rejected)}
                if named != set(lab.node_names):
                    ch.fail(f"{cmd}, {what}: host key refusals name {sorted(named)} only")
                if "Traceback" in r.stderr:
                    ch.fail(f"{cmd}, {what}: traceback")
                if calls:
                    ch.fail(f"{cmd}, {what}: {calls} commands ran on the nodes")
                if cmd == "plan" and rejected:
                    ch.notes.append(f"{what}: exit {r.code}: {rejected[0][:200]}")
    finally:
        kh.write_text(original)
        inv_accept.unlink(missing_ok=True)
    return ch


# --------------------------------------------------------------------------- secrets


class ArgvWatch:
    """Samples every process's argv while a run goes on, looking for secret values."""

    def __init__(self, secrets_: list[str]) -> None:
        self.secrets = [s for s in secrets_ if s]
        self.hits: list[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> ArgvWatch:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples += 1
            for d in Path("/proc").iterdir():
                if not d.name.isdigit():
                    continue
                try:
                    raw = (d / "cmdline").read_bytes()
                except OSError:
                    continue
                text = raw.replace(b"\0", b" ").decode(errors="replace")
                for s in self.secrets:
                    if s in text and len(self.hits) < 20:
                        self.hits.append(f"pid {d.name}: {text[:160]}")
            self._stop.wait(0.2)


def _key_body(key_file: Path) -> list[str]:
    """Distinctive pieces of the private key: its base64 lines and the raw key bytes."""
    lines = [
        x.strip()
        for x in key_file.read_text().splitlines()
        if x.strip() and not x.startswith("-----")
    ]
    blob = base64.b64decode("".join(lines))
    return [x for x in lines if len(x) >= 16] + [
        blob[-64:].hex(),
        base64.b64encode(blob[-64:]).decode(),
    ]


def check_secrets(work: Path, quick: bool = False) -> Check:
    ch = Check("secrets after a full apply (token, private key, sudo password)")
    workers = [node("w-1")] if quick else [node("w-1"), node("w-2")]
    spec = {
        "version": "v1.27.8",
        "delays": dict(FAST_DELAYS),
        "nodes": [node("cp-1", "control-plane", repo_minor="1.28"), *workers],
        # one worker: its pods need nowhere else to go (a DaemonSet only)
        **(
            {"workloads": [{"kind": "DaemonSet", "namespace": "kube-system", "name": "kube-proxy"}]}
            if quick
            else {}
        ),
    }
    # The lab's nodes ask their SSH user's password in sudo (real sudo, when the lab runs as
    # root): the run must pass the lab's own password; a lab without real sudo (not root)
    # accepts any, so a generated one stands in.
    spec["sudo_password"] = True
    password = "sudo-" + secrets.token_hex(12)
    env_name = "UPGRADER_BENCH_SUDO_PASSWORD"
    with lab_session(work / "secrets-lab", spec) as lab:
        if (lab.info.get("sudo") or {}).get("password_file"):
            password = Path(lab.info["sudo"]["password_file"]).read_text().strip()
        token = lab.token()
        inv_doc = yaml.safe_load(lab.inventory.read_text())
        inv_doc["ssh"]["sudo"] = True
        inv_doc["ssh"]["sudo_password_env"] = env_name
        inv = lab.dir / "sec-inventory.yaml"
        inv.write_text(yaml.safe_dump(inv_doc, sort_keys=False))
        pb = fast_playbooks(work / "pb-leak")
        # what `kubeadm token create --print-join-command` and `init --upload-certs` print;
        # each value is assembled on the node from halves, so that no whole value is in the
        # command (which the stored plan keeps verbatim)
        alnum = "abcdefghijklmnopqrstuvwxyz0123456789"
        tok = ("".join(secrets.choice(alnum) for _ in range(6)),
               "".join(secrets.choice(alnum) for _ in range(16)))  # fmt: skip
        ca_hash, cert_key = secrets.token_hex(32), secrets.token_hex(32)
        kubeadm_echo = (
            f"A={tok[0]}; B={tok[1]}; H={ca_hash[:32]}; K={cert_key[:32]}; "
            f'echo "kubeadm join cp:6443 --token $A.$B --discovery-token-ca-cert-hash '
            f'sha256:$H{ca_hash[32:]} --control-plane --certificate-key $K{cert_key[32:]}"'
        )
        tokfile = shlex.quote(str(lab.dir / "secrets" / "admin-token"))
        leak = {
            "version": 1,
            "phases": {
                "worker": {
                    "post": [
                        {
                            "name": "site-leaky-tool",
                            "kind": "shell",
                            "description": "a site tool that prints the API token (it happens)",
                            "command": (
                                f"cat {tokfile}; "
                                f"sed 's/^/Authorization: Bearer /' {tokfile} >&2; "
                                f"{kubeadm_echo}; {kubeadm_echo} >&2; "
                                f"test -e {shlex.quote(str(lab.dir / 'leak-ok'))}"
                            ),
                            "retry_safe": True,
                        }
                    ]
                }
            },
        }
        (pb / "site.yaml").write_text(yaml.safe_dump(leak, sort_keys=False))
        events = work / "secrets-events.jsonl"
        args = ["apply", "-i", str(inv), "--to", TARGET, "--yes", "--playbooks", str(pb),
                "--events", str(events)]  # fmt: skip
        key_parts = _key_body(lab.dir / "id_ed25519")
        secret_values = {
            "token": [token],
            "sudo password": [password],
            "private key": key_parts,
            "kubeadm bootstrap token": [f"{tok[0]}.{tok[1]}"],
            "discovery-token CA cert hash": [ca_hash],
            "certificate key": [cert_key],
        }
        with ArgvWatch([token, password]) as watch:
            first = cli(*args, timeout=900, extra_env={env_name: password})
            (lab.dir / "leak-ok").touch()  # under the lab directory: nodes see it
            second = cli(*args, timeout=900, extra_env={env_name: password})
        ch.cases += 2
        ch.notes.append(
            f"first run (leaky step fails): exit {first.code}; second: exit {second.code}; "
            f"{watch.samples} argv samples"
        )
        if first.code != 1:
            ch.fail(f"the first run should fail at the leaky step: exit {first.code}")
        if second.code != 0:
            ch.fail(f"the second run should finish: exit {second.code}: {second.stderr[-300:]}")
        for hit in watch.hits:
            ch.fail(f"a secret in a process's argv: {hit}")
        outputs = first.stdout + first.stderr + second.stdout + second.stderr
        artefacts: list[tuple[str, str]] = [("stdout/stderr of the runs", outputs)]
        state = lab.state
        for p in [state, lab.plan_file, events]:
            if p.exists():
                artefacts.append((p.name, p.read_text(errors="replace")))
        try:
            tdir = Path(json.loads(state.read_text())["transcripts"])
            for t in sorted(tdir.glob("*.log")):
                artefacts.append((f"transcript {t.name}", t.read_text(errors="replace")))
                mode = t.stat().st_mode & 0o777
                if mode != 0o600:
                    ch.fail(f"transcript {t.name} has mode {oct(mode)} (want 0600)")
        except (OSError, ValueError, KeyError) as e:
            ch.fail(f"no transcripts to inspect: {e}")
        if state.exists() and state.stat().st_mode & 0o777 != 0o600:
            ch.fail(f"state file mode {oct(state.stat().st_mode & 0o777)} (want 0600)")
        if events.exists() and events.stat().st_mode & 0o777 != 0o600:
            ch.fail(f"events file mode {oct(events.stat().st_mode & 0o777)} (want 0600)")
        leaked_token_seen = any("***" in text for _, text in artefacts)
        for name, text in artefacts:
            ch.cases += 1
            for kind, vals in secret_values.items():
                if any(v in text for v in vals):
                    ch.fail(f"the {kind} appears in {name}")
        if not leaked_token_seen:
            ch.notes.append("no masked value (***) seen: the leaky step's output was not kept?")
        else:
            ch.notes.append("the leaky step's token output is kept masked (***)")
    return ch


# --------------------------------------------------------------------------- state files


def _record_run(lab: Lab, state: Path, playbooks: Path | None = None) -> Path:
    """An unfinished run of the lab's cluster recorded at ``state`` as ``apply`` records it
    (stored plan with its digest, input digests); returns the stored plan's path."""
    from upgrader import state as st
    from upgrader.apply import run_fingerprint, run_inputs
    from upgrader.core.model import PlanEntry, Step
    from upgrader.core.versions import KubeVersion
    from upgrader.execute import stored
    from upgrader.inventory import load_inventory
    from upgrader.planning import PlanRequest

    inv = load_inventory(lab.inventory)
    req = PlanRequest(target=KubeVersion.parse(TARGET), playbooks=playbooks)
    step = Step(
        id=f"{TARGET}/w-1/worker/a",
        kind="shell",
        node="w-1",
        hop=TARGET,
        phase="worker",
        name="a",
        description="a",
        command="true",
        timeout=10.0,
    )
    entry = PlanEntry(node="w-1", role="worker", phase="worker", hop=TARGET, steps=(step,))
    sp = stored.StoredPlan("r1", "v1.27.8", TARGET, (TARGET,), "per-hop", (entry,))
    plan = stored.plan_path(state)
    digest = stored.save(plan, sp)
    run = st.new_run(
        cluster=inv.cluster_name,
        inventory=lab.inventory,
        fingerprint=run_fingerprint(inv, req),
        target=TARGET,
        hops=[TARGET],
        strategy="per-hop",
        steps=[step],
        run_id="r1",
        plan_digest=digest,
        inputs=run_inputs(inv, req),
        transcripts=st.default_transcripts_dir(state, "r1"),
    )
    st.save(state, run)
    return plan


def _refused(ch: Check, lab: Lab, what: str, r: Proc, before: int, must: str) -> None:
    """Exit 2, one error line containing ``must``, no command on any node."""
    ch.cases += 1
    line = r.stderr_lines[-1] if r.stderr_lines else ""
    ch.notes.append(f"{what}: exit {r.code}: {line[:160]}")
    if r.code != 2:
        ch.fail(f"{what}: exit {r.code}, want 2: {r.stderr[-300:]}")
    elif not _one_line_error(r):
        ch.fail(f"{what}: refused with {len(r.stderr_lines)} stderr lines")
    elif must not in line:
        ch.fail(f"{what}: the error line does not say {must!r}: {line}")
    if _calls_total(lab) != before:
        ch.fail(f"{what}: commands ran on the nodes")


def check_state_files(lab: Lab, work: Path) -> Check:
    """Attack 1 (forged state / stored plan) and attack 2 (symlinks) of issue 12."""
    ch = Check("forged state files and symlinked operator files")
    base = work / "state-attacks"
    shutil.rmtree(base, ignore_errors=True)
    victim = work / "victim"
    victim.write_text("precious\n")
    apply_args = ("apply", "-i", str(lab.inventory), "--to", TARGET, "--yes", "--state")

    def fresh(name: str, playbooks: Path | None = None) -> tuple[Path, Path]:
        d = base / name
        d.mkdir(parents=True, mode=0o700)
        state = d / "lab.state.json"
        return state, _record_run(lab, state, playbooks)

    # 1a: the stored plan rewritten with a step of the attacker's
    state, plan = fresh("forged-plan")
    doc = json.loads(plan.read_text())
    doc["entries"][0]["steps"][0]["command"] = f"touch {work / 'canary-plan'}"
    plan.write_text(json.dumps(doc))
    before = _calls_total(lab)
    r = cli(*apply_args, str(state), timeout=300)
    _refused(ch, lab, "forged stored plan", r, before, "does not match the digest")
    if (work / "canary-plan").exists():
        ch.fail("the forged plan's step ran")
    # 1b: a state directory others can write (a shared checkout, /tmp)
    state, _ = fresh("shared-dir")
    state.parent.chmod(0o777)
    before = _calls_total(lab)
    r = cli(*apply_args, str(state), timeout=300)
    _refused(ch, lab, "state dir mode 0777", r, before, "writable by group or others")
    state.parent.chmod(0o700)
    # 1c: a state file others can write
    state.chmod(0o666)
    r = cli(*apply_args, str(state), timeout=300)
    _refused(ch, lab, "state file mode 0666", r, before, "writable by group or others")
    state.chmod(0o600)
    # 1d: the transcripts path of the state file pointed outside the state directory
    state, _ = fresh("transcripts-outside")
    doc = json.loads(state.read_text())
    doc["transcripts"] = str(work / "elsewhere")
    state.write_text(json.dumps(doc))
    before = _calls_total(lab)
    r = cli(*apply_args, str(state), timeout=300)
    _refused(ch, lab, "transcripts outside the state dir", r, before, "outside the state dir")
    # 1e: a playbook step changed since the run started: refused naming the step
    pb = fast_playbooks(base / "pb")
    site = {
        "version": 1,
        "phases": {
            "worker": {
                "post": [{"name": "site-x", "kind": "shell", "description": "d", "command": "true"}]
            }
        },
    }
    (pb / "site.yaml").write_text(yaml.safe_dump(site))
    state, _ = fresh("changed-playbook", pb)
    site["phases"]["worker"]["post"][0]["command"] = f"touch {work / 'canary-changed'}"  # type: ignore[index]
    (pb / "site.yaml").write_text(yaml.safe_dump(site))
    before = _calls_total(lab)
    r = cli(*apply_args, str(state), "--playbooks", str(pb), timeout=300)
    _refused(ch, lab, "changed playbook", r, before, "step worker.post.site-x changed")
    # 2: symlinks where the operator side writes
    d = base / "links"
    d.mkdir(parents=True, mode=0o700)
    (d / "lab.state.json.lock").symlink_to(victim)
    for what, args in (
        ("symlinked lock (status)", ("status", "-i", str(lab.inventory), "--state")),
        ("symlinked lock (apply)", apply_args),
    ):
        before = _calls_total(lab)
        r = cli(*args, str(d / "lab.state.json"), timeout=300)
        _refused(ch, lab, what, r, before, "symbolic link")
    (d / "lab.state.json.lock").unlink()
    link = d / "events.jsonl"
    link.symlink_to(victim)
    before = _calls_total(lab)
    r = cli(*apply_args, str(d / "lab.state.json"), "--events", str(link), timeout=300)
    _refused(ch, lab, "symlinked --events", r, before, "symbolic link")
    r = cli("facts", "-i", str(lab.inventory), "-o", str(link), timeout=300)
    _refused(ch, lab, "symlinked facts -o", r, before, "symbolic link")
    if victim.read_text() != "precious\n":
        ch.fail("the symlinks' target was changed")
    return ch


# --------------------------------------------------------------------------- playbook text

HIDDEN_CHARS = {
    "CR": "\r",
    "ESC": "\x1b[2K",
    "BEL": "\x07",
    "NUL": "\x00",
    "DEL": "\x7f",
    "C1 CSI": "\x9b",
    "U+202E": "\u202e",
    "U+2066": "\u2066",
}


def check_playbook_text(lab: Lab, work: Path, quick: bool = False) -> Check:
    """Attack 7 of issue 12: a site step that shows one command and runs another."""
    ch = Check("playbook text with control characters and bidi overrides")
    pb = fast_playbooks(work / "pb-hidden")
    canary = work / "canary-hidden"
    fields = ("command",) if quick else ("command", "check", "description")
    for name, char in HIDDEN_CHARS.items():
        for field_ in fields:
            step = {
                "name": "site-x",
                "kind": "shell",
                "description": "update the motd",
                "command": "true",
                "check": "true",
            }
            step[field_] = f"touch {canary}{char}echo harmless"
            (pb / "site.yaml").write_text(
                yaml.safe_dump({"version": 1, "phases": {"worker": {"post": [step]}}})
            )
            before = _calls_total(lab)
            r = cli(
                "plan",
                "-i",
                str(lab.inventory),
                "--to",
                TARGET,
                "--playbooks",
                str(pb),
                timeout=300,
            )
            _refused(
                ch,
                lab,
                f"{name} in {field_}",
                r,
                before,
                f"phases.worker.post[0].{field_} (phase worker, step site-x)",
            )
            if canary.exists():
                ch.fail(f"{name} in {field_}: the hidden command ran")
                canary.unlink()
    ch.notes = [n for n in ch.notes if "exit 2" not in n] + [
        f"{ch.cases} playbooks with hidden characters refused at load time"
        if ch.ok
        else "some playbooks with hidden characters were accepted"
    ]
    return ch


# --------------------------------------------------------------------------- node output

# Runs ARGV and prints its peak RSS in KiB (ru_maxrss of the waited child) as the last
# line of stderr: the memory of exactly that one process tree's biggest process.
_RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "r = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, capture_output=True, text=True)\n"
    "sys.stdout.write(r.stdout)\n"
    "sys.stderr.write(r.stderr)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(r.returncode)\n"
)
# Runs one command on a lab node through the real SSHTransport and prints
# {"rss_before", "rss_after" (KiB), "stdout_dropped", "stderr_dropped", "stdout_len",
# "marker"}: argv = inventory, node, command.
_SSH_PEAK = """
import json, resource, sys
from upgrader.inventory import load_inventory
from upgrader.transport.ssh import SSHPool
inv = load_inventory(sys.argv[1])
node = next(n for n in inv.nodes if n.name == sys.argv[2])
with SSHPool() as pool:
    t = pool.get(inv.ssh_target(node))
    t.run("true", timeout=60, sudo=False)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r = t.run(sys.argv[3], timeout=600, sudo=False)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rss_before": before, "rss_after": after, "exit": r.exit_code,
    "stdout_dropped": getattr(r, "stdout_dropped", 0),
    "stderr_dropped": getattr(r, "stderr_dropped", 0),
    "stdout_len": len(r.stdout), "marker": "bytes dropped ...]" in r.stdout}))
"""


def _cli_peak(*args: str) -> tuple[Proc, int]:
    """The CLI in a subprocess: (its result, its peak RSS in bytes)."""
    from bench._campaign import cli_argv, env

    t0 = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-c", _RSS_WRAPPER, *cli_argv(*args)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env(),
        stdin=subprocess.DEVNULL,
        cwd=REPO,
    )
    err, _, rss = p.stderr.rstrip("\n").rpartition("\n")
    kib = int(rss) if rss.strip().isdigit() else 0
    return Proc(list(args), p.returncode, p.stdout, err, time.monotonic() - t0), kib * 1024


def check_output_bounds(lab: Lab, work: Path, quick: bool = False) -> Check:
    """Attack 5 of issue 12: one node sending a huge output exhausts the operator's memory."""
    ch = Check("huge node output: memory stays flat")
    mib = 1024 * 1024
    base, base_rss = _cli_peak("plan", "-i", str(lab.inventory), "--to", TARGET)
    ch.notes.append(f"plan baseline: exit {base.code}, peak RSS {base_rss // mib} MiB")
    # a fact probe reads a 1 GiB file (sparse: no disk used)
    big = lab.dir / "nodes" / "w-2" / "root" / "etc" / "docker" / "daemon.json"
    big.parent.mkdir(parents=True, exist_ok=True)
    try:
        with big.open("wb") as fh:
            fh.truncate(1024 * mib)
        r, rss = _cli_peak("plan", "-i", str(lab.inventory), "--to", TARGET)
    finally:
        big.unlink(missing_ok=True)
    ch.cases += 1
    growth = (rss - base_rss) // mib
    line = next((x for x in r.stdout.splitlines() if "FACT_TOO_LARGE" in x), "")
    ch.notes.append(f"1 GiB fact file on w-2: exit {r.code}, peak RSS +{growth} MiB: {line[:160]}")
    if r.code != 3 or "w-2" not in line or "bytes (the cap)" not in line:
        ch.fail(f"1 GiB fact file: exit {r.code}, no FACT_TOO_LARGE for w-2: {r.stderr[-300:]}")
    if rss - base_rss > 64 * mib:
        ch.fail(f"1 GiB fact file: peak RSS grew by {growth} MiB")
    # a command printing N MiB on stdout, then on stderr, through the real SSH transport
    n = 32 if quick else 200
    streams = (("stdout", ""), ("stderr", " >&2"))
    for stream, redirect in streams[:1] if quick else streams:
        ch.cases += 1
        cmd = f"head -c {n * mib} /dev/zero | tr '\\000' x{redirect}; echo end{redirect}"
        p = subprocess.run(
            [sys.executable, "-c", _SSH_PEAK, str(lab.inventory), "w-1", cmd],
            capture_output=True,
            text=True,
            timeout=900,
            env=os.environ | {"PYTHONPATH": str(REPO)},
            cwd=REPO,
        )
        try:
            got = json.loads(p.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            ch.fail(f"{n} MiB on {stream}: no result: {p.stderr[-300:]}")
            continue
        grew = (got["rss_after"] - got["rss_before"]) // 1024
        dropped = got[f"{stream}_dropped"]
        ch.notes.append(
            f"{n} MiB on {stream}: exit {got['exit']}, {dropped} bytes dropped, "
            f"peak RSS +{grew} MiB"
        )
        if got["exit"] != 0 or dropped < (n - 8) * mib:
            ch.fail(f"{n} MiB on {stream}: exit {got['exit']}, only {dropped} bytes dropped")
        if grew > 48:
            ch.fail(f"{n} MiB on {stream}: peak RSS grew by {grew} MiB")
    return ch


# OSC 52 (sets the operator's clipboard), CSI (clears the screen), RLO (reverses the text)
EVIL_OUTPUT = "\x1b]52;c;ZWNobyBwd25lZA==\x07\x1b[2J\u202e"
EVIL_SHOWN = "\\x1b]52;c;ZWNobyBwd25lZA==\\x07"
_RAW = ("\x1b", "\x07", "\x9b", "\u202e")


def _raw_in(*texts: str) -> list[str]:
    return sorted({repr(c) for t in texts for c in _RAW if c in t})


@contextmanager
def _banner_server(host: str, line: str) -> Iterator[int]:
    """A TCP server on ``host`` that answers every connection with 100 lines of ``line``
    and never an SSH version line (what a hostile node's sshd may send before the
    protocol starts); yields its port."""
    import socket

    srv = socket.create_server((host, 0))
    srv.settimeout(0.2)
    stop = threading.Event()
    payload = "".join(f"{line} {i}\r\n" for i in range(100)).encode()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                try:
                    conn.sendall(payload)
                    conn.recv(4096)
                except OSError:
                    pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield int(srv.getsockname()[1])
    finally:
        stop.set()
        t.join(5)
        srv.close()


def check_terminal_escapes(lab: Lab, work: Path, quick: bool = False) -> Check:
    """Attack 6 of issue 12: terminal escapes from the nodes reach the operator's terminal."""
    ch = Check("terminal escapes in node output")
    inv = str(lab.inventory)
    docker = lab.dir / "nodes" / "w-1" / "root" / "etc" / "docker"
    docker.mkdir(parents=True, exist_ok=True)
    hosts = {"hosts": ["unix:///var/run/docker.sock", "tcp://0.0.0.0:2375" + EVIL_OUTPUT]}
    try:
        (docker / "daemon.json").write_text(json.dumps(hosts))
        for flags in [()] if quick else [(), ("-vv",)]:
            ch.cases += 1
            r = cli("plan", "-i", inv, "--to", TARGET, *flags, timeout=300)
            what = " ".join(("plan", *flags)) + ": DOCKERD_TCP_NO_TLS quoting a daemon.json host"
            raw = _raw_in(r.stdout, r.stderr)
            ch.notes.append(f"{what}: exit {r.code}, raw {', '.join(raw) or 'none'}")
            if raw:
                ch.fail(f"{what}: raw {', '.join(raw)} on the terminal")
            if EVIL_SHOWN not in r.stdout:
                ch.fail(f"{what}: the finding does not show the escapes: exit {r.code}")
    finally:
        (docker / "daemon.json").unlink(missing_ok=True)
    # an SSH server whose pre-protocol banner lines carry them (w-2 pointed at it)
    doc = yaml.safe_load(lab.inventory.read_text())
    w2 = next(n for n in doc["nodes"] if n["name"] == "w-2")
    banner_inv = lab.dir / "inventory-banner.yaml"
    try:
        with _banner_server(str(w2["address"]), "hello" + EVIL_OUTPUT) as port:
            w2["port"] = port
            banner_inv.write_text(yaml.safe_dump(doc))
            for flags in [()] if quick else [(), ("-vv",)]:
                ch.cases += 1
                r = cli("plan", "-i", str(banner_inv), "--to", TARGET, *flags, timeout=300)
                what = " ".join(("plan", *flags)) + ": SSH banner lines of w-2"
                raw = _raw_in(r.stdout, r.stderr)
                ch.notes.append(f"{what}: exit {r.code}, raw {', '.join(raw) or 'none'}")
                if raw:
                    ch.fail(f"{what}: raw {', '.join(raw)} on the terminal")
                if EVIL_SHOWN not in r.stdout + r.stderr:
                    ch.fail(f"{what}: the banner is not shown escaped: exit {r.code}")
    finally:
        banner_inv.unlink(missing_ok=True)
    # a failing step whose stderr carries them: the error line, then `status`
    pb = fast_playbooks(work / "pb-escapes")
    evil = "printf '\\033]52;c;ZWNobyBwd25lZA==\\007\\033[2J\\342\\200\\256boom\\n'"
    step = {
        "name": "site-escapes",
        "kind": "shell",
        "description": "a step whose output carries terminal escapes",
        "command": f"{evil}; {evil} >&2; exit 1",
    }
    doc = {"version": 1, "phases": {"first-control-plane": {"pre": [step]}}}
    (pb / "site.yaml").write_text(yaml.safe_dump(doc))
    state_dir = lab.dir / ".upgrader"
    try:
        r = cli(
            "apply",
            "-i",
            inv,
            "--to",
            TARGET,
            "--yes",
            "--no-prestage",
            "--playbooks",
            str(pb),
            timeout=600,
        )
        st = cli("status", "-i", inv, timeout=120)
        logs = list(state_dir.rglob("cp-1.log"))
        transcript = logs[0].read_text() if logs else ""
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    for what, out, code, want in (
        ("apply's failing step (error line)", r.stdout + r.stderr, r.code, 1),
        ("status of the failed run", st.stdout + st.stderr, st.code, 0),
        ("the failed node's transcript", transcript, 0 if logs else -1, 0),
    ):
        ch.cases += 1
        raw = _raw_in(out)
        ch.notes.append(f"{what}: exit {code}, raw {', '.join(raw) or 'none'}")
        if code != want:
            ch.fail(f"{what}: exit {code}, want {want}: {out[-300:]}")
        if raw:
            ch.fail(f"{what}: raw {', '.join(raw)} shown")
        if EVIL_SHOWN not in out:
            ch.fail(f"{what}: the step's output is not shown escaped")
    return ch


# --------------------------------------------------------------------------- main


def campaign(work: Path, quick: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every check; ``quick`` keeps a few payloads and fields per check (the smoke test)."""
    t0 = time.monotonic()
    checks: list[Check] = []
    spec = {
        "version": "v1.27.8",
        "delays": dict(FAST_DELAYS),
        "nodes": [node("cp-1", "control-plane", repo_minor="1.28"), node("w-1"), node("w-2")],
    }
    with lab_session(work / "lab", spec) as lab:
        lab.clear_calls()
        quick_fields = ("repo_versions", "node_name")
        fns: list[tuple[str, Callable[[Lab, Path], Check]]] = [
            ("host keys", lambda lab, w: check_host_keys(lab, w, quick=quick)),
            (
                "inventory values",
                lambda lab, w: check_inventory_values(lab, w, limit=2 if quick else None),
            ),
            ("url_template", check_url_template),
            ("state files", check_state_files),
            ("playbook text", lambda lab, w: check_playbook_text(lab, w, quick=quick)),
            ("node output", lambda lab, w: check_output_bounds(lab, w, quick=quick)),
            ("terminal escapes", lambda lab, w: check_terminal_escapes(lab, w, quick=quick)),
            (
                "facts values",
                lambda lab, w: check_facts_values(
                    lab,
                    w,
                    limit=2 if quick else None,
                    fields=quick_fields if quick else FACT_FIELDS,
                ),
            ),
        ]
        for name, fn in fns:
            log(f"{name} ...")
            c = fn(lab, work)
            checks.append(c)
            log(f"  {'ok' if c.ok else 'FAILED'} ({c.cases} cases)")
    log("secrets ...")
    c = check_secrets(work, quick=quick)
    checks.append(c)
    log(f"  {'ok' if c.ok else 'FAILED'} ({c.cases} cases)")
    return {
        "checks": [c.to_dict() for c in checks],
        "failed": sum(not c.ok for c in checks),
        "seconds": round(time.monotonic() - t0, 1),
        "machine": machine(),
    }


def summary(doc: dict[str, Any]) -> str:
    t = Table(["check", "cases", "result"])
    for c in doc["checks"]:
        t.add(c["check"], c["cases"], "ok" if c["ok"] else f"FAILED ({len(c['problems'])})")
    lines = [t.text(), f"{len(doc['checks'])} checks, {doc['failed']} failed"]
    for c in doc["checks"]:
        for p in c["problems"]:
            lines.append(f"problem [{c['check']}]: {p}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.security", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="a few payloads per check")
    a = ap.parse_args(argv)
    os.environ.pop("KUBECONFIG", None)
    work = Path(tempfile.mkdtemp(prefix="upgrader-security-"))
    try:
        doc = campaign(work, quick=a.quick)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = write_result("security", doc, a.out, scratch=work)
    print(summary(doc))
    print(f"results: {path}")
    return 0 if doc["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
