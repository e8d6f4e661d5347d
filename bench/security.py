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
- **known_hosts markers** (issue 12, attack 9): the lab's key on an ``@revoked`` line
  (also under ``accept-new``), or only a ``@cert-authority`` line for every node: ``plan``
  and ``apply`` refuse (exit 4, a ``HOST_KEY_REJECTED`` blocker per node naming the key's
  fingerprint or the CA line), no command runs, known_hosts is not rewritten; a
  ``@cert-authority`` line for other hosts beside hashed entries and comments: ``plan``
  works (exit 0); never a traceback;
- **RBAC and ssh_config** (attack 12): ``upgrader rbac`` grants no ``create`` on Leases,
  every namespaced write by name, and prints the run's Lease; loaded into the lab API
  server's RBAC, those rules let the run read and take its Lease and refuse creating other
  Leases in kube-system (403); an ssh_config whose ``Include`` (inside a ``Host`` block, a
  glob relative to ``~/.ssh``) alone gives the nodes' port and user lets ``plan`` reach
  them (exit 0), an included file writable by others or a ``%`` token is refused (exit 2,
  one line) before any node is contacted;
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
- **lab directory** (attack 4): ``lab up`` into a directory ``nobody`` made, one inside
  it, one under a parent anyone may write (no sticky bit), a group-writable one, one
  reached through ``nobody``'s symlink: each is exit 2 with one line naming it, nothing
  written into it, no process started, no sudoers drop-in; the running lab's sshd has
  ``StrictModes yes`` and every file it or its ForceCommand trusts is root's alone;
- **node lock** (attack 8): on lab nodes the SSH user without sudo cannot open the node
  lock, create or symlink in ``/run/upgrader`` or move it; holding the old
  ``/run/lock/upgrader.lock`` does not stall root's wrapped command; a lock held by a
  process of that user is reported "user ..., not root";
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
- **kubeconfig credentials** (attack 11): with a client certificate and key (signed by the
  lab's CA) inline in the kubeconfig, ``plan`` is SIGKILLed once it has connected (and,
  in full mode, later on): no file under its temp directory holds the key's PEM body, during
  the run or after; a kubeconfig user with an ``exec`` plugin: ``plan`` names the plugin's
  command before it runs, never its arguments or environment values.

Must not: weaken a lab's security for anything but the check at hand (each check restores
the files it rewrote), or leave a lab running.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import paramiko
import yaml

from bench._campaign import (
    FAST_DELAYS,
    REPO,
    TARGET,
    Lab,
    Proc,
    Table,
    apply_argv,
    cli,
    fast_playbooks,
    lab_session,
    machine,
    node,
    run_campaign,
)
from bench._recorded import recorded_run, shell_step

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
    """One check's outcome; its fields, in this order, are its entry in the result document."""

    check: str
    ok: bool = True
    cases: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def fail(self, what: str) -> None:
        self.ok = False
        self.problems.append(what)


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


def _ssh_argv(lab: Lab, node_name: str, command: str, *, as_root: bool) -> list[str]:
    """OpenSSH's client to the node as the lab's SSH user (host key checked against the
    lab's known_hosts); ``as_root``: ``command`` through the node's sudo when that user is
    not root (as the product runs its steps)."""
    info = lab.info
    user = str(info["ssh"].get("user") or "root")
    if as_root and user != "root":
        command = "sudo -n sh -c " + shlex.quote(command)
    return [
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
        f"{user}@{info['nodes'][node_name]['address']}",
        command,
    ]


def _ssh(lab: Lab, node_name: str, command: str, timeout: float = 60) -> subprocess.Popen[str]:
    """``command`` as root on the node."""
    return subprocess.Popen(
        _ssh_argv(lab, node_name, command, as_root=True),
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


def _plan_or_apply(cmd: str, inv: Path | str, state: Path) -> list[str]:
    """The arguments of ``plan`` of ``inv`` to the target, or (``cmd`` "apply") of ``apply``
    of it without a question, its run recorded in ``state``."""
    if cmd == "apply":
        return apply_argv(inv, "--state", str(state))
    return ["plan", "-i", str(inv), "--to", TARGET]


@contextmanager
def _known_hosts_trial(lab: Lab, inventory_name: str) -> Iterator[Path]:
    """For the ``with`` block: a copy of the lab's inventory named ``inventory_name`` with
    ``host_key_policy: accept-new``; after it, the lab's known_hosts is as before and the
    copy is gone."""
    kh = lab.dir / "known_hosts"
    original = kh.read_text()
    inv_doc = yaml.safe_load(lab.inventory.read_text())
    inv_doc["ssh"]["host_key_policy"] = "accept-new"
    inv_accept = lab.dir / inventory_name
    inv_accept.write_text(yaml.safe_dump(inv_doc, sort_keys=False))
    try:
        yield inv_accept
    finally:
        kh.write_text(original)
        inv_accept.unlink(missing_ok=True)


def _run_with_known_hosts(
    lab: Lab,
    cmd: str,
    known_hosts: str,
    inv: Path,
    state: Path,
    extra_env: dict[str, str] | None,
) -> tuple[Proc, str, list[str], int]:
    """``cmd`` (plan or apply) of ``inv`` with the lab's known_hosts set to ``known_hosts``:
    the run, its stdout and stderr, the lines of it that speak of a node's host key, and
    the number of commands that ran on the nodes."""
    (lab.dir / "known_hosts").write_text(known_hosts)
    lab.clear_calls()
    r = cli(*_plan_or_apply(cmd, inv, state), timeout=180, extra_env=extra_env)
    text = r.stdout + r.stderr
    rejected = [
        ln.strip()
        for ln in text.splitlines()
        if "host key" in ln.lower() and any(n in ln for n in lab.node_names)
    ]
    return r, text, rejected, _calls_total(lab)


def check_host_keys(
    lab: Lab, work: Path, extra_env: dict[str, str] | None = None, quick: bool = False
) -> Check:
    ch = Check("unknown and changed SSH host keys")
    original = (lab.dir / "known_hosts").read_text()
    other = _other_key(work)
    changed = "\n".join(
        " ".join([*line.split()[:2], other]) if line.strip() and not line.startswith("#") else line
        for line in original.splitlines()
    )
    with _known_hosts_trial(lab, "sec-accept-new.yaml") as inv_accept:
        cases: list[tuple[str, str, Path]] = [
            ("unknown host key (empty known_hosts)", "", lab.inventory),
            ("changed host key", changed + "\n", lab.inventory),
            ("changed host key, host_key_policy accept-new", changed + "\n", inv_accept),
        ]
        for what, content, inv in cases:
            for cmd in ("plan",) if quick else ("plan", "apply"):
                r, text, rejected, calls = _run_with_known_hosts(
                    lab, cmd, content, inv, work / "hk-state.json", extra_env
                )
                ch.cases += 1
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
    return ch


def _hashed_name(name: str) -> str:
    salt = secrets.token_bytes(20)
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def check_known_hosts_markers(
    lab: Lab, work: Path, extra_env: dict[str, str] | None = None, quick: bool = False
) -> Check:
    """Attack 9: known_hosts lines with ``@revoked`` / ``@cert-authority`` markers (which
    crashed every command with paramiko's InvalidHostKey traceback), hashed names."""
    ch = Check("known_hosts @revoked and @cert-authority markers")
    original = (lab.dir / "known_hosts").read_text()
    lines = [ln for ln in original.splitlines() if ln.strip() and not ln.startswith("#")]
    keytype, blob = lines[0].split()[1:3]
    lab_key = f"{keytype} {blob}"
    fingerprint = paramiko.PKey.from_type_string(keytype, base64.b64decode(blob)).fingerprint
    other = f"ssh-ed25519 {_other_key(work)}"
    hashed = "".join(f"{_hashed_name(ln.split()[0])} {lab_key}\n" for ln in lines)
    with _known_hosts_trial(lab, "sec-kh-accept-new.yaml") as inv_accept:
        # (what, known_hosts text, inventory, refused?, words every refusal line must hold)
        cases: list[tuple[str, str, Path, bool, tuple[str, ...]]] = [
            ("@revoked line for the lab's key (plain lines kept)",
             original + f"@revoked * {lab_key}\n", lab.inventory, True, ("REVOKED", fingerprint)),
            ("@revoked line, host_key_policy accept-new",
             original + f"@revoked * {lab_key}\n", inv_accept, True, ("REVOKED", fingerprint)),
            ("only a @cert-authority line (the lab's sshd has no certificate)",
             f"@cert-authority * {other}\n", lab.inventory, True,
             ("trusts only the certificate authority",)),
            ("@cert-authority line for other hosts, hashed entries and comments",
             f"# comment\n@cert-authority *.corp.example {other}\n@revoked old.example {other}\n"
             + hashed, lab.inventory, False, ()),
        ]  # fmt: skip
        if quick:
            cases = [cases[0], cases[3]]
        for what, content, inv, refused, words in cases:
            for cmd in ("plan",) if quick or not refused else ("plan", "apply"):
                r, text, rejected, calls = _run_with_known_hosts(
                    lab, cmd, content, inv, work / "khm-state.json", extra_env
                )
                ch.cases += 1
                if "Traceback" in text:
                    ch.fail(f"{cmd}, {what}: traceback: {r.stderr[-300:]}")
                if not refused:
                    if r.code != 0:
                        ch.fail(f"{cmd}, {what}: exit {r.code} (want 0): {text[-300:]}")
                    elif cmd == "plan":
                        ch.notes.append(f"{what}: plan exit 0")
                    continue
                if r.code != 4:  # a refused host key: the node could not be reached
                    ch.fail(f"{cmd}, {what}: exit {r.code} (want 4): {text[-300:]}")
                named = {
                    n
                    for n in lab.node_names
                    if any(n in ln and all(w in ln for w in words) for ln in rejected)
                }
                if named != set(lab.node_names):
                    ch.fail(f"{cmd}, {what}: refusals with {words} name {sorted(named)} only")
                if calls:
                    ch.fail(f"{cmd}, {what}: {calls} commands ran on the nodes")
                if (lab.dir / "known_hosts").read_text() != content:
                    ch.fail(f"{cmd}, {what}: known_hosts was rewritten")
                if cmd == "plan" and rejected:
                    ch.notes.append(f"{what}: exit {r.code}: {rejected[0][:220]}")
    return ch


def _rbac_api_cases(ch: Check, docs: list[dict[str, Any]]) -> None:
    """The printed rules and Lease loaded into the lab API server's own RBAC (in process):
    the run's Lease can be read and taken, no other Lease can be created in kube-system."""
    from upgrader.rbac import lab_rules
    from upgrader_lab.apiserver.api import Api, Request
    from upgrader_lab.apiserver.seed import initial_objects
    from upgrader_lab.apiserver.spec import parse_spec
    from upgrader_lab.apiserver.store import Store

    spec = parse_spec(
        {
            "nodes": [{"name": "cp-1", "role": "control-plane", "address": "127.61.0.2"}],
            "rbac": {"allow": lab_rules(), "lease": any(d["kind"] == "Lease" for d in docs)},
        }
    )
    store = Store(None)
    store.cluster = {"version": spec.version}
    store.seed(initial_objects(spec, time.time()))
    api = Api(store, spec)

    def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else b""
        r = api.handle(Request(method, path, {}, {"content-type": "application/json"}, data))
        return r.code, json.loads(r.body)

    base = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"
    code, lease = call("GET", f"{base}/upgrader-lock")
    ch.cases += 1
    if code != 200:
        ch.fail(f"the printed Lease is not readable with the printed rules: {code}")
        return
    lease["spec"] = {"holderIdentity": "bench@here/run", "leaseDurationSeconds": 60}
    ch.cases += 1
    if call("PUT", f"{base}/upgrader-lock", lease)[0] != 200:
        ch.fail("the printed rules do not let the run take its Lease")
    for name in ("kube-controller-manager", "cloud-controller-manager", "upgrader-lock-2"):
        ch.cases += 1
        body = {"metadata": {"name": name, "namespace": "kube-system"}, "spec": {}}
        code, _ = call("POST", base, body)
        if code != 403:
            ch.fail(f"the printed rules let the identity create Lease kube-system/{name}: {code}")
    ch.notes.append(
        "printed rules: Lease upgrader-lock get/update 200, create of 3 other Leases 403"
    )


def check_rbac_and_ssh_include(
    lab: Lab, work: Path, extra_env: dict[str, str] | None = None, quick: bool = False
) -> Check:
    """Attack 12: ``create leases`` in kube-system could not be limited by name; ssh_config
    ``Include`` was ignored silently."""
    ch = Check("RBAC without create on Leases, ssh_config Include")
    # ---- the printed RBAC: no create on Leases, every namespaced write by name, the Lease
    printed = cli("rbac", "--user", "upgrader", extra_env=extra_env)
    docs = [d for d in yaml.safe_load_all(printed.stdout) if d] if printed.code == 0 else []
    ch.cases += 1
    if printed.code != 0 or not docs:
        ch.fail(f"upgrader rbac: exit {printed.code}: {printed.stderr[-200:]}")
        return ch
    for d in docs:
        for rule in d.get("rules") or []:
            verbs = set(rule.get("verbs") or [])
            if "leases" in (rule.get("resources") or []) and "create" in verbs:
                ch.fail(f"{d['kind']} grants create on leases: {rule}")
            writes = verbs & {"create", "update", "patch", "delete"}
            if d["kind"] == "Role" and writes and not rule.get("resourceNames"):
                ch.fail(f"Role grants {sorted(verbs)} without resourceNames: {rule}")
    if [d["kind"] for d in docs].count("Lease") != 1:
        ch.fail("upgrader rbac does not print the run's Lease")
    _rbac_api_cases(ch, docs)

    # ---- ssh_config Include: the lab's port and user come only from an included file
    home = work / "include-home"
    ssh_dir = home / ".ssh"
    (ssh_dir / "config.d").mkdir(parents=True, exist_ok=True)
    inv_doc = yaml.safe_load(lab.inventory.read_text())
    port, user = inv_doc["ssh"].pop("port"), inv_doc["ssh"].pop("user", None)
    inv_doc["ssh"]["use_ssh_config"] = True
    for n in inv_doc["nodes"]:
        n.pop("port", None)
    inv = lab.dir / "sec-include.yaml"
    inv.write_text(yaml.safe_dump(inv_doc, sort_keys=False))
    addresses = " ".join(n["address"] for n in inv_doc["nodes"])
    included = ssh_dir / "config.d" / "lab.conf"
    included.write_text(f"Port {port}\n" + (f"User {user}\n" if user else ""))
    env = {**(extra_env or {}), "HOME": str(home)}
    cases = [
        ("Include inside a Host block, glob, relative to ~/.ssh", f"Host {addresses}\n"
         "  Include config.d/*.conf\n", 0o600, 0, None),
        ("the included file writable by others", "Include config.d/*.conf\n", 0o666, 2,
         "bad owner or permissions"),
        ("an Include with a %-token", "Include %d/config.d/*.conf\n", 0o600, 2,
         "%-tokens"),
    ]  # fmt: skip
    if quick:
        cases = cases[:2]
    try:
        for what, config, mode, want, words in cases:
            (ssh_dir / "config").write_text(config)
            included.chmod(mode)
            lab.clear_calls()
            r = cli("plan", "-i", str(inv), "--to", TARGET, timeout=180, extra_env=env)
            ch.cases += 1
            text = r.stdout + r.stderr
            if "Traceback" in text:
                ch.fail(f"{what}: traceback: {r.stderr[-300:]}")
            if r.code != want:
                ch.fail(f"{what}: exit {r.code} (want {want}): {text[-300:]}")
                continue
            if words is not None:
                if not _one_line_error(r) or words not in r.stderr:
                    ch.fail(f"{what}: not one error line with {words!r}: {r.stderr[-300:]}")
                if _calls_total(lab):
                    ch.fail(f"{what}: {_calls_total(lab)} commands ran on the nodes")
                ch.notes.append(f"{what}: exit {r.code}: {r.stderr.strip()[:200]}")
            else:
                ch.notes.append(f"{what}: plan exit 0 (port and user from the included file)")
    finally:
        inv.unlink(missing_ok=True)
        shutil.rmtree(home, ignore_errors=True)
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
        args = apply_argv(inv, "--playbooks", str(pb), "--events", str(events))
        key_parts = _key_body(lab.dir / "id_ed25519")
        secret_values = {
            "token": [token],
            "sudo password": [password],
            "private key": key_parts,
            "kubeadm bootstrap token": [f"{tok[0]}.{tok[1]}"],
            "discovery-token CA cert hash": [ca_hash],
            "certificate key": [cert_key],
        }
        # attack 3 of issue 12: the old snapshot path in /tmp, visible in argv, was raced
        with ArgvWatch([token, password, "/tmp/upgrader-etcd-snapshot"]) as watch:
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
        for p in [state, _journal_of(state), lab.plan_file, events]:
            if p.exists():
                artefacts.append((p.name, p.read_text(errors="replace")))
        try:
            tdir = Path(_state_doc(state)["transcripts"])
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
        _check_snapshot_place(ch, lab, state)
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


def _journal_of(state: Path) -> Path:
    """The journal beside a state file (``<state>.journal``): scanned like the state."""
    from upgrader.state import journal_path

    return journal_path(state)


def _state_doc(state: Path) -> dict[str, Any]:
    """The run recorded at ``state`` with its journal replayed (``upgrader.state.load``);
    a missing or unreadable one is a ValueError like a corrupt file."""
    from upgrader.errors import ConfigError
    from upgrader.state import load

    try:
        run = load(state)
    except ConfigError as e:
        raise ValueError(str(e)) from None
    if run is None:
        raise ValueError(f"{state}: no state file")
    return run.to_dict()


def _check_snapshot_place(ch: Check, lab: Lab, state: Path) -> None:
    """Issue 12, attack 3: the etcd snapshot (every Secret of the cluster) never passes
    through a shared directory: on the node it stays root-only in etcd's data directory, it
    reaches this machine over the SSH channel into a 0600 file in a 0700 directory, and no
    file under a node's or this machine's shared temporary directories holds it."""
    try:
        snap = _state_doc(state).get("etcd_snapshot") or {}
    except (OSError, ValueError) as e:
        ch.fail(f"etcd snapshot: cannot read the state: {e}")
        return
    ch.cases += 1
    if not snap:
        ch.fail("etcd snapshot: the run recorded none")
        return
    remote, local = str(snap.get("remote", "")), Path(str(snap.get("path", "")))
    if not remote.startswith("/var/lib/etcd/"):
        ch.fail(f"etcd snapshot: the node's copy is at {remote}, not in etcd's data directory")
    node_copy = lab.dir / "nodes" / str(snap.get("node")) / "root" / remote.lstrip("/")
    if node_copy.exists() and node_copy.stat().st_mode & 0o077:
        ch.fail(f"etcd snapshot: the node's copy has mode {oct(node_copy.stat().st_mode & 0o777)}")
    if not local.is_file() or local.stat().st_mode & 0o777 != 0o600:
        ch.fail(f"etcd snapshot: the local copy {local} is missing or not 0600")
    elif local.parent.stat().st_mode & 0o777 != 0o700:
        ch.fail(f"etcd snapshot: {local.parent} is not 0700")
    shared = [Path(tempfile.gettempdir()), Path("/var/tmp"), Path("/dev/shm")]
    for node_dir in sorted((lab.dir / "nodes").iterdir()):
        shared += [node_dir / "root" / d for d in ("tmp", "var/tmp", "dev/shm")]
    for d in shared:
        for f in d.glob("*snapshot*") if d.is_dir() else ():
            ch.fail(f"etcd snapshot: a file in a shared directory: {f}")
    ch.notes.append(
        f"etcd snapshot: node copy {remote} (0600), local copy 0600 in a 0700 directory, none "
        "in a shared directory, no snapshot path in any argv"
    )


# --------------------------------------------------------------------------- state files


def _record_run(lab: Lab, state: Path, playbooks: Path | None = None) -> Path:
    """An unfinished run of the lab's cluster recorded at ``state`` as ``apply`` records it
    (stored plan with its digest, input digests); returns the stored plan's path."""
    from upgrader import state as st
    from upgrader.apply import run_fingerprint, run_inputs
    from upgrader.core.versions import KubeVersion
    from upgrader.execute import stored
    from upgrader.inventory import load_inventory
    from upgrader.planning import PlanRequest

    inv = load_inventory(lab.inventory)
    req = PlanRequest(target=KubeVersion.parse(TARGET), playbooks=playbooks)
    recorded_run(
        state,
        shell_step("a"),
        cluster=inv.cluster_name,
        inventory=lab.inventory,
        fingerprint=run_fingerprint(inv, req),
        inputs=run_inputs(inv, req),
        transcripts=st.default_transcripts_dir(state, "r1"),
    )
    return stored.plan_path(state)


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
    apply_args = tuple(apply_argv(lab.inventory, "--state"))

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


# --------------------------------------------------------------------------- kubeconfig credentials


def client_cert(
    ca_cert: Path, ca_key: Path, cn: str, organization: str | None = None
) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) for a client ``CN=cn`` (``O=organization``), signed by a
    lab's CA. RSA: a key body of many distinctive base64 lines."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    signer = serialization.load_pem_private_key(ca_key.read_bytes(), None)
    assert isinstance(signer, ec.EllipticCurvePrivateKey)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if organization is not None:
        names.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(names))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(signer, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), pem


def _with_user(lab: Lab, dest: Path, user: dict[str, Any]) -> Path:
    """A copy of the lab's inventory (beside it: its relative paths still hold; the caller
    removes it) whose kubeconfig, a copy in ``dest``, has ``user`` as its user."""
    dest.mkdir(parents=True, exist_ok=True)
    kc = yaml.safe_load((lab.dir / "kubeconfig").read_text())
    for u in kc["users"]:
        u["user"] = user
    (dest / "kubeconfig").write_text(yaml.safe_dump(kc, sort_keys=False))
    (dest / "kubeconfig").chmod(0o600)
    inv = yaml.safe_load(lab.inventory.read_text())
    inv["kubeconfig"] = {"path": str(dest / "kubeconfig"), "context": None}
    path = lab.dir / f"{dest.name}-inventory.yaml"
    path.write_text(yaml.safe_dump(inv, sort_keys=False))
    return path


def key_body_lines(key_pem: bytes) -> list[bytes]:
    """The base64 lines of a PEM key (16 characters or more): what a copy of it on disk holds."""
    return [
        line.strip()
        for line in key_pem.splitlines()
        if line.strip() and not line.startswith(b"-----") and len(line.strip()) >= 16
    ]


def files_holding(root: Path, needles: list[bytes], recursive: bool) -> list[Path]:
    """Regular files under ``root`` (small ones) holding any of ``needles``."""
    found: list[Path] = []
    walker = os.walk(root) if recursive else [(str(root), [], os.listdir(root))]
    for dirpath, _dirs, names in walker:
        for name in names:
            p = Path(dirpath) / name
            try:
                if p.is_symlink() or not p.is_file() or p.stat().st_size > 256 * 1024:
                    continue
                data = p.read_bytes()
            except OSError:
                continue
            if any(n in data for n in needles):
                found.append(p)
    return found


def _fd_links(pid: int) -> list[str]:
    out = []
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return out


def check_kube_credentials(lab: Lab, work: Path, quick: bool = False) -> Check:
    """Attack 11 of issue 12: the client key in /tmp after a SIGKILL; a silent exec plugin."""
    ch = Check("kubeconfig client key on disk after SIGKILL; exec plugin announced")
    pki = lab.dir / "pki"
    cert_pem, key_pem = client_cert(pki / "ca.crt", pki / "ca.key", "bench-ops")
    needles = key_body_lines(key_pem)
    inv = _with_user(
        lab,
        work / "kc-certs",
        {
            "token": lab.token(),
            "client-certificate-data": base64.b64encode(cert_pem).decode(),
            "client-key-data": base64.b64encode(key_pem).decode(),
        },
    )
    delays = [0.0] if quick else [0.0, 1.0, 3.0]
    for delay in delays:
        tmp = work / f"kc-tmp-{delay}"
        tmp.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, TMPDIR=str(tmp), NO_COLOR="1")
        env.pop("KUBECONFIG", None)
        p = subprocess.Popen(
            [sys.executable, "-m", "upgrader", "plan", "-i", str(inv), "--to", TARGET],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=REPO,
        )
        what = f"plan SIGKILLed {delay:.0f}s after its first connection"
        ch.cases += 1
        try:
            deadline = time.monotonic() + 120
            links: list[str] = []
            # connected: the API client (and its credentials) was built before any socket
            while p.poll() is None and time.monotonic() < deadline:
                links = _fd_links(p.pid)
                if any(x.startswith("socket:") for x in links):
                    break
                time.sleep(0.01)
            time.sleep(delay)
            if p.poll() is not None:
                ch.notes.append(f"{what}: the run ended first (exit {p.returncode})")
            else:
                memfds = sum("memfd:" in x for x in _fd_links(p.pid) or links)
                during = files_holding(tmp, needles, recursive=True)
                p.send_signal(signal.SIGKILL)
                p.wait(60)
                for f in during:
                    ch.fail(f"{what}: the client key is in {f} while the run goes on")
                ch.notes.append(f"{what}: {memfds} memfd(s) held, {len(during)} key files")
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(60)
        after = files_holding(tmp, needles, recursive=True)
        after += files_holding(Path(tempfile.gettempdir()), needles, recursive=False)
        for f in after:
            ch.fail(f"{what}: the client key is left in {f}")
    # the exec plugin: named (command only) before it runs
    secret = "bench-secret-" + secrets.token_hex(8)
    plugin = work / "kc-exec" / "bin" / "cred-helper"
    plugin.parent.mkdir(parents=True, exist_ok=True)
    plugin.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"print(json.dumps({{'apiVersion': 'client.authentication.k8s.io/v1beta1', "
        f"'kind': 'ExecCredential', 'status': {{'token': open(sys.argv[1]).read().strip()}}}}))\n"
    )
    plugin.chmod(0o755)
    inv2 = _with_user(
        lab,
        work / "kc-exec",
        {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": str(plugin),
                "args": [lab.info["api"]["token_file"], f"--secret={secret}"],
                "env": [{"name": "HELPER_SECRET", "value": secret}],
                "interactiveMode": "Never",
            }
        },
    )
    r = cli("plan", "-i", str(inv2), "--to", TARGET, timeout=300)
    ch.cases += 1
    user = yaml.safe_load((inv2.parent / "kubeconfig").read_text())["users"][0]["name"]
    want = f"kubeconfig user {user!r} runs an exec credential plugin: {plugin}"
    first = r.stdout.splitlines()[0] if r.stdout else ""
    ch.notes.append(f"exec plugin: plan exit {r.code}; first line: {first[:120]}")
    if r.code != 0:
        ch.fail(f"exec plugin: plan exit {r.code}: {(r.stderr or r.stdout)[-300:]}")
    if first != want:
        ch.fail(f"exec plugin: plan does not name it first (want {want!r}): {first[:160]!r}")
    if secret in r.stdout + r.stderr:
        ch.fail("exec plugin: its argument or environment value is shown")
    for written in (inv, inv2):
        written.unlink(missing_ok=True)
    return ch


# --------------------------------------------------------------------------- lab directory


def _lab_processes(d: Path) -> list[int]:
    """Processes whose command line names ``d`` or a file in it (what `lab up` starts)."""
    from upgrader_lab import runner

    return [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and runner.ours(int(p.name), d)
    ]


def check_lab_dir(lab: Lab, work: Path) -> Check:
    """Attack 4 of issue 12: ``lab up`` into a directory another user controls is refused
    (exit 2, one line naming it, nothing written or started); the running lab's sshd is
    strict and its trusted files are root's alone."""
    from upgrader_lab import sudo as labsudo

    ch = Check("lab directory another user controls")
    base = work / "lab-dirs"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(mode=0o755)
    nobody = 65534
    evil = base / "evil"
    evil.mkdir(mode=0o755)
    os.chown(evil, nobody, nobody)
    shared = base / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # the attack: a parent anyone may write
    mine = base / "loose"
    mine.mkdir()
    os.chmod(mine, 0o775)  # the attack: a group-writable lab directory
    link = base / "link"
    link.symlink_to(base)
    os.lchown(link, nobody, nobody)
    cases = [
        ("a directory nobody made", evil, f"{evil}: owned by nobody"),
        ("a directory inside it", evil / "lab", f"its parent {evil} is owned by nobody"),
        ("under a parent anyone may write", shared / "lab", "without the sticky bit"),
        ("a group-writable directory", mine, "writable by group or others"),
        ("through nobody's symlink", link / "lab", f"{link} is a symlink owned by nobody"),
    ]
    for what, d, must in cases:
        ch.cases += 1
        existed = d.exists()
        r = cli("lab", "up", "--dir", str(d), "--workers", "1", "--no-api", timeout=120)
        line = r.stderr_lines[-1] if r.stderr_lines else ""
        ch.notes.append(f"{what}: exit {r.code}: {line[:160]}")
        if r.code != 2 or not _one_line_error(r) or must not in line:
            ch.fail(
                f"{what}: exit {r.code}, want 2 and one line saying {must!r}: {r.stderr[-300:]}"
            )
        left = [p.name for p in d.iterdir()] if d.is_dir() else []
        if left or d.exists() != existed:
            ch.fail(f"{what}: lab up wrote into {d}: {left}")
        if _lab_processes(d) or labsudo.host_dropin_path(d).exists():
            ch.fail(f"{what}: something was started or put in place for {d}")
    # the running lab: StrictModes yes, and what sshd trusts is root's alone
    ch.cases += 1
    configs = sorted((lab.dir / "sshd").glob("sshd_config*"))
    if not configs or not all("\nStrictModes yes\n" in c.read_text() for c in configs):
        ch.fail("the lab's sshd does not run with StrictModes yes")
    trusted = [lab.dir, lab.dir / "sshd", *configs, lab.dir / "sshd" / "authorized_keys"]
    trusted += [lab.dir / "sshd" / "ssh_host_ed25519_key", lab.dir / "bin"]
    trusted += sorted((lab.dir / "bin").iterdir())
    for f in trusted:
        st = os.lstat(f)
        if st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
            ch.fail(f"{f}: owner {st.st_uid}, mode {st.st_mode & 0o7777:04o}: others may change it")
    ch.notes.append(f"the lab's sshd: StrictModes yes, {len(trusted)} trusted paths root's alone")
    return ch


# --------------------------------------------------------------------------- node lock


def _run_as_user(lab: Lab, node_name: str, command: str, timeout: float = 60) -> Proc:
    """``command`` on the node as the lab's SSH user, without sudo."""
    t0 = time.monotonic()
    argv = _ssh_argv(lab, node_name, command, as_root=False)
    p = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    return Proc(argv, p.returncode, p.stdout, p.stderr, time.monotonic() - t0)


def check_node_lock(lab: Lab, work: Path, quick: bool = False) -> Check:
    """Attack 8 of issue 12: on a lab node, the SSH user without sudo can neither open,
    create nor plant the node lock; holding the old ``/run/lock/upgrader.lock`` no longer
    stalls root's commands; a lock held by a non-root process is named as such."""
    from upgrader.core import nodelock

    ch = Check("node lock held or planted by a non-root user")
    user = str(lab.info["ssh"].get("user") or "root")
    if user == "root":
        ch.fail("the lab's SSH user is root: no non-root user to try")
        return ch
    lock, lock_dir = nodelock.LOCK_PATH, nodelock.LOCK_DIR
    names = list(lab.info["nodes"])[:1] if quick else list(lab.info["nodes"])
    wrapped = shlex.quote(nodelock.wrap("echo ran", wait=1))
    for name in names:
        tries = {
            "open the lock": f"exec 9>>{lock} && flock -n 9 && echo GOT",
            "create in the lock dir": f"touch {lock_dir}/planted && echo GOT",
            "plant a symlink": f"ln -s /etc/shadow {lock_dir}/x && echo GOT",
            "replace the lock dir": f"mv {lock_dir} /tmp/x && echo GOT",
        }
        for what, cmd in tries.items():
            ch.cases += 1
            r = _run_as_user(lab, name, cmd)
            if r.code == 0 or "GOT" in r.stdout:
                ch.fail(f"{name}: {user} could {what}: {r.stdout.strip()}")
        # the old attack: hold /run/lock/upgrader.lock while root runs a wrapped command
        ch.cases += 1
        r = _run_as_user(
            lab, name, f"flock -n /run/lock/upgrader.lock sudo -n sh -c {wrapped}; echo rc=$?"
        )
        if r.stdout.strip().splitlines()[-1:] != ["rc=0"] or "ran" not in r.stdout:
            ch.fail(f"{name}: root's command under the held /run/lock lock: {r.stdout} {r.stderr}")
        # a non-root process holding the node lock is named as such
        ch.cases += 1
        hold = (
            f"(exec 9>>{lock}; flock 9; exec setpriv --reuid={user} --regid={user} "
            "--clear-groups sleep 3) </dev/null >/dev/null 2>&1 & "
            f"sleep 0.5; sh -c {wrapped}; echo rc=$?; wait"
        )
        r = _run_as_user(lab, name, f"sudo -n sh -c {shlex.quote(hold)}")
        want = f"user {user}, not root"
        if "rc=75" not in r.stdout or want not in r.stderr:
            ch.fail(f"{name}: a lock held by {user} was not reported as such: {r.stderr[-300:]}")
        else:
            ch.notes.append(f"{name}: {r.stderr.strip().splitlines()[-1][:200]}")
    if ch.ok:
        ch.notes.append(
            f"{len(names)} nodes: {user} cannot open, create, plant or replace {lock}; "
            "holding /run/lock/upgrader.lock stalls nothing"
        )
    return ch


# --------------------------------------------------------------------------- node output

# Runs ARGV and prints its peak RSS in KiB (ru_maxrss of the waited child) as the last
# line of stderr: the memory of exactly that one process tree's biggest process.
RSS_WRAPPER = (
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
        [sys.executable, "-c", RSS_WRAPPER, *cli_argv(*args)],
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
def banner_server(host: str, line: str) -> Iterator[int]:
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
        with banner_server(str(w2["address"]), "hello" + EVIL_OUTPUT) as port:
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
        r = cli(*apply_argv(inv, "--no-prestage", "--playbooks", str(pb)), timeout=600)
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


def lab_checks(quick: bool) -> list[tuple[str, Callable[[Lab, Path], Check]]]:
    """The checks that share one 3-node lab, by name, in the order they run."""
    quick_fields = ("repo_versions", "node_name")
    return [
        ("host keys", lambda lab, w: check_host_keys(lab, w, quick=quick)),
        (
            "known_hosts markers",
            lambda lab, w: check_known_hosts_markers(lab, w, quick=quick),
        ),
        (
            "inventory values",
            lambda lab, w: check_inventory_values(lab, w, limit=2 if quick else None),
        ),
        ("url_template", check_url_template),
        ("rbac and ssh_config", lambda lab, w: check_rbac_and_ssh_include(lab, w, quick=quick)),
        ("state files", check_state_files),
        ("playbook text", lambda lab, w: check_playbook_text(lab, w, quick=quick)),
        ("kubeconfig credentials", lambda lab, w: check_kube_credentials(lab, w, quick=quick)),
        ("lab directory", check_lab_dir),
        ("node lock", lambda lab, w: check_node_lock(lab, w, quick=quick)),
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


# Every check by name: the shared-lab ones, then "secrets" (a full apply on a lab of its own).
CHECK_NAMES = (*(name for name, _ in lab_checks(quick=True)), "secrets")


def campaign(
    work: Path,
    quick: bool = False,
    log: Callable[[str], None] = print,
    only: Collection[str] | None = None,
) -> dict[str, Any]:
    """Every check (``only``: those of these names, in the same order); ``quick`` keeps a
    few payloads and fields per check (the smoke tests)."""
    unknown = set(only or ()) - set(CHECK_NAMES)
    if unknown:
        raise ValueError(f"unknown checks {sorted(unknown)}; known: {', '.join(CHECK_NAMES)}")
    t0 = time.monotonic()
    checks: list[Check] = []
    spec = {
        "version": "v1.27.8",
        "delays": dict(FAST_DELAYS),
        "nodes": [node("cp-1", "control-plane", repo_minor="1.28"), node("w-1"), node("w-2")],
    }
    fns = [(name, fn) for name, fn in lab_checks(quick) if only is None or name in only]
    if fns:
        with lab_session(work / "lab", spec) as lab:
            lab.clear_calls()
            for name, fn in fns:
                log(f"{name} ...")
                c = fn(lab, work)
                checks.append(c)
                log(f"  {'ok' if c.ok else 'FAILED'} ({c.cases} cases)")
    if only is None or "secrets" in only:
        log("secrets ...")
        c = check_secrets(work, quick=quick)
        checks.append(c)
        log(f"  {'ok' if c.ok else 'FAILED'} ({c.cases} cases)")
    return {
        "checks": [asdict(c) for c in checks],
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
    doc = run_campaign("security", lambda work: campaign(work, quick=a.quick), summary, a.out)
    return 0 if doc["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
