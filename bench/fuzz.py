"""Bad-input campaign: hypothesis generates broken inventories, facts files, lab specs,
state files and command lines; every one must end in exit code 2 (or 3: a blocker), with
exactly one line on stderr, no traceback, and nothing executed on any node.

Owns the campaign (``python -m bench.fuzz [--cases N] [--seed S]``), its generators and
``bench/results/fuzz.json``. One long-lived lab serves every case: its inventory is the base
of the inventory mutations, and its nodes' ``calls.jsonl`` must stay empty throughout (a
rejected input that still reached a node is a failure). Cases run the real CLI entry point
(``upgrader.cli.main``) in-process for volume, and one case in ``--subprocess-every`` (plus
every case that could hang, like a YAML alias bomb) as a real ``python -m upgrader``
subprocess with a timeout.

What counts as "bad" is decided by the generator, not by upgrader: a mutation that certainly
breaks the document (an unknown key, a wrong type, a missing required field, a shell
metacharacter in a field that names a host, user, cluster or URL) *must* be rejected; a
mutation that may still be valid is first given to the product's loader, and skipped if the
loader accepts it (running it would legitimately touch the nodes).

Must not: run a valid apply against the lab (cases that could are constructed to fail, and a
lab that was touched anyway is reported and rebuilt), or leave the lab running.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from bench._campaign import (
    REPO,
    Lab,
    Table,
    cli_argv,
    env,
    lab_session,
    machine,
    run_campaign,
)

TARGET = "v1.28.4"
CURRENT = "v1.27.8"
DATA = REPO / "tests" / "data"
PLAYBOOK = REPO / "upgrader" / "playbooks" / "default.yaml"
METACHARS = [
    ";touch /tmp/upgrader-fuzz-canary",
    "$(touch /tmp/upgrader-fuzz-canary)",
    "`id`",
    "|id",
    "&&id",
    "\nid",
    "' ; id ; '",
    '" ; id ; "',
    " space",
    "*",
    "../../etc/passwd",
    "${IFS}id",
    ">/tmp/x",
    "\x00",
    "#comment",
]

# --------------------------------------------------------------------------- cases


@dataclass
class Case:
    category: str
    what: str
    args: list[str]
    files: dict[str, bytes] = field(default_factory=dict)  # name -> content, in the case dir
    must_reject: bool = True
    screen: str | None = None  # "inventory" | "spec": ask the loader first; skip if valid
    subprocess_only: bool = False
    allow_codes: tuple[int, ...] = (2, 3)

    def materialise(self, d: Path) -> list[str]:
        d.mkdir(parents=True, exist_ok=True)
        for name, data in self.files.items():
            (d / name).parent.mkdir(parents=True, exist_ok=True)
            (d / name).write_bytes(data)
        return [a.replace("{dir}", str(d)) for a in self.args]


@dataclass
class Outcome:
    code: int | None
    stdout: str
    stderr: str
    traceback: str | None
    seconds: float
    mode: str


# --------------------------------------------------------------------------- document mutation


def paths_of(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += paths_of(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += paths_of(v, (*prefix, i))
    return out


def get_at(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def set_at(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    get_at(doc, path[:-1])[path[-1]] = value


def del_at(doc: Any, path: tuple[Any, ...]) -> None:
    parent = get_at(doc, path[:-1])
    del parent[path[-1]]


def _type_name(v: Any) -> str:
    return type(v).__name__


def _type_class(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "str"
    if v is None:
        return "null"
    return "list" if isinstance(v, list) else "dict"


# Inventory fields whose values name a host, user, cluster, URL or variable: a shell
# metacharacter there must be refused at load time.
STRICT_STRING_KEYS = {
    ("cluster", "name"),
    ("nodes", "*", "name"),
    ("nodes", "*", "address"),
    ("nodes", "*", "user"),
    ("nodes", "*", "jump_host"),
    ("ssh", "user"),
    ("ssh", "jump_host"),
    ("ssh", "sudo_password_env"),
    ("packages", "url_template"),
}


def _generic(path: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple("*" if isinstance(p, int) else p for p in path)


values = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@dataclass(frozen=True)
class Rules:
    """What certainly breaks a document of one kind (see the module docstring)."""

    meta: frozenset[tuple[Any, ...]] = frozenset()  # fields refusing shell metacharacters
    closed: Callable[[tuple[Any, ...]], bool] = lambda path: False  # unknown keys refused
    lax: bool = True  # numbers/bools given as strings may be coerced


INVENTORY_RULES = Rules(
    meta=frozenset(STRICT_STRING_KEYS),
    closed=lambda path: "labels" not in path,
    lax=False,
)
SPEC_RULES = Rules(
    meta=frozenset(
        {
            ("cluster_name",),
            ("version",),
            ("nodes", "*", "name"),
            ("nodes", "*", "address"),
            ("nodes", "*", "kubelet"),
            ("nodes", "*", "kubeadm"),
            ("nodes", "*", "kubectl"),
            ("nodes", "*", "control_plane"),
            ("workloads", "*", "name"),
            ("workloads", "*", "namespace"),
            ("faults", "*", "node"),
            ("missing_packages", "*"),
        }
    ),
    closed=lambda path: (
        (len(path) >= 2 and path[0] in ("nodes", "delays")) or path[:1] == ("delays",)
    ),
)
LENIENT = Rules()
PLAYBOOK_RULES = Rules(closed=lambda path: True, lax=False)
STATE_RULES = Rules(lax=False)


@st.composite
def mutated_doc(draw: st.DrawFn, base: dict[str, Any], rules: Rules) -> Any:
    """(doc, description, must_reject)."""
    doc = copy.deepcopy(base)
    paths = paths_of(doc)
    kind = draw(st.sampled_from(["type", "meta", "delete", "unknown", "value", "dup", "empty"]))
    path = draw(st.sampled_from(paths))
    old = get_at(doc, path)
    gp = _generic(path)
    if kind == "type":
        new = draw(values)
        set_at(doc, path, new)
        # str -> non-str, number -> str/list/dict, mapping/list -> scalar: certainly wrong
        oc, nc = _type_class(old), _type_class(new)
        certain = oc != nc and nc != "null" and oc != "null"
        if rules.lax or rules is LENIENT:
            certain = certain and {oc, nc} not in ({"number", "bool"}, {"number", "str"})
            certain = certain and {oc, nc} != {"bool", "str"}
        certain = certain and rules is not LENIENT
        return doc, f"{'.'.join(map(str, path))}: {_type_name(old)} -> {new!r:.60}", certain
    if kind == "meta":
        strs = [p for p in paths if isinstance(get_at(doc, p), str)]
        if strs:
            path = draw(st.sampled_from(strs))
            gp = _generic(path)
        old = get_at(doc, path)
        m = draw(st.sampled_from(METACHARS))
        new = f"{old}{m}" if isinstance(old, str) else m
        set_at(doc, path, new)
        return doc, f"{'.'.join(map(str, path))} = {new!r:.60}", gp in rules.meta
    if kind == "delete":
        del_at(doc, path)
        return doc, f"delete {'.'.join(map(str, path))}", False
    if kind == "unknown":
        containers = [p for p in paths if isinstance(get_at(doc, p), dict)] + [()]
        cpath = draw(st.sampled_from(containers))
        key = draw(st.sampled_from(["nmae", "adress", "rolee", "extra", "sudo_pasword", "x"]))
        target = get_at(doc, cpath)
        if key in target:
            return doc, "no-op", False
        target[key] = draw(values)
        return doc, f"unknown key {'.'.join(map(str, (*cpath, key)))}", rules.closed(cpath)
    if kind == "value":
        new = draw(st.text(max_size=30))
        set_at(doc, path, new)
        return doc, f"{'.'.join(map(str, path))} = {new!r:.60}", False
    if kind == "dup":
        lists = [p for p in paths if isinstance(get_at(doc, p), list) and get_at(doc, p)]
        if not lists:
            return doc, "no-op", False
        lp = draw(st.sampled_from(lists))
        lst = get_at(doc, lp)
        lst.append(copy.deepcopy(lst[0]))
        return (
            doc,
            f"duplicate first item of {'.'.join(map(str, lp))}",
            lp == ("nodes",) and rules is not LENIENT,
        )
    # empty
    if isinstance(old, list | dict):
        set_at(doc, path, type(old)())
        empty_bad = gp in {("nodes",), ("cluster",)} and rules is not LENIENT
        return doc, f"{'.'.join(map(str, path))} emptied", empty_bad
    return doc, "no-op", False


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def _dump_yaml(doc: Any) -> bytes:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode()


def _truncate(data: bytes, draw: st.DrawFn) -> bytes:
    if len(data) < 2:
        return data
    return data[: draw(st.integers(min_value=1, max_value=len(data) - 1))]


# --------------------------------------------------------------------------- generators


class Gen:
    """Strategies producing :class:`Case` values against one lab."""

    def __init__(self, lab: Lab, work: Path) -> None:
        self.lab = lab
        self.work = work
        self.inv_doc = yaml.safe_load(lab.inventory.read_text())
        self.inv_dir = lab.dir  # inventories live beside the lab's own (relative paths)
        self.facts = {
            p.name: json.loads(p.read_text()) for p in sorted((DATA / "facts").glob("*.json"))
        }
        self.facts.pop("releases.json", None)
        self.kubespray = {
            p.name: p.read_bytes() for p in sorted((DATA / "inventories").glob("kubespray*.yaml"))
        }
        self.spec_doc: dict[str, Any] = {
            "cluster_name": "fuzz",
            "version": CURRENT,
            "nodes": [
                {"name": "cp-1", "role": "control-plane"},
                {"name": "w-1", "role": "worker", "os_family": "rhel"},
            ],
            "workloads": [
                {"kind": "Deployment", "name": "web", "replicas": 2, "pdb": {"maxUnavailable": 1}}
            ],
            "delays": {"kubelet_ready": 0.1},
            "faults": [{"node": "w-1", "match": "kubeadm upgrade node", "times": 1, "exit": 1}],
            "missing_packages": ["1.28.4"],
        }
        self.states = self._states()

    # ---- inventories
    def _inv_args(self, draw: st.DrawFn, name: str) -> list[str]:
        inv = f"{self.inv_dir}/{name}"
        cmd = draw(st.sampled_from(["plan", "facts", "status", "apply"]))
        if cmd == "plan":
            return ["plan", "-i", inv, "--to", TARGET]
        if cmd == "facts":
            return ["facts", "-i", inv]
        if cmd == "status":
            return ["status", "-i", inv, "--state", "{dir}/state.json"]
        return ["apply", "-i", inv, "--to", TARGET, "--yes", "--state", "{dir}/state.json"]

    def inventory(self) -> st.SearchStrategy[Case]:
        @st.composite
        def gen(draw: st.DrawFn) -> Case:
            doc, what, must = draw(mutated_doc(self.inv_doc, INVENTORY_RULES))
            name = f"fuzz-inv-{draw(st.integers(0, 10**9))}.yaml"
            return Case(
                "inventory",
                what,
                self._inv_args(draw, name),
                {f"@lab/{name}": _dump_yaml(doc)},
                must_reject=must,
                screen="inventory",
            )

        return gen()

    def inventory_raw(self) -> st.SearchStrategy[Case]:
        @st.composite
        def gen(draw: st.DrawFn) -> Case:
            kind = draw(st.sampled_from(["random-yaml", "text", "bytes", "truncated", "kubespray"]))
            base = _dump_yaml(self.inv_doc)
            if kind == "random-yaml":
                data, what = _dump_yaml(draw(json_values)), "random YAML document"
            elif kind == "text":
                data, what = draw(st.text(max_size=200)).encode(), "random text"
            elif kind == "bytes":
                data, what = draw(st.binary(max_size=200)), "random bytes"
            elif kind == "truncated":
                data = _truncate(base, draw)
                what = f"inventory truncated to {len(data)} bytes"
            else:
                src = draw(st.sampled_from(sorted(self.kubespray)))
                doc = yaml.safe_load(self.kubespray[src])
                mdoc, w, _ = draw(mutated_doc(doc, LENIENT))
                data, what = _dump_yaml(mdoc), f"{src}: {w}"
            name = f"fuzz-raw-{draw(st.integers(0, 10**9))}.yaml"
            return Case(
                "inventory",
                what,
                self._inv_args(draw, name),
                {f"@lab/{name}": data},
                must_reject=kind in ("bytes",) and not _is_yamlish(data),
                screen="inventory",
            )

        return gen()

    # ---- facts files
    def facts_file(self) -> st.SearchStrategy[Case]:
        @st.composite
        def gen(draw: st.DrawFn) -> Case:
            src = draw(st.sampled_from(sorted(self.facts)))
            kind = draw(st.sampled_from(["mutate", "mutate", "mutate", "truncated", "random"]))
            must = True
            if kind == "mutate":
                doc, what, must = draw(mutated_doc(self.facts[src], LENIENT))
                data = json.dumps(doc).encode()
                what = f"{src}: {what}"
            elif kind == "truncated":
                full = json.dumps(self.facts[src], indent=1).encode()
                data = _truncate(full, draw)
                what = f"{src} truncated to {len(data)} bytes"
            else:
                data = json.dumps(draw(json_values)).encode()
                what = "random JSON"
            extra = draw(st.sampled_from([[], ["--json"], ["--strategy", "drain-once"]]))
            to = draw(st.sampled_from([TARGET, "v1.29.0", "v1.28.0"]))
            return Case(
                "facts",
                what,
                ["plan", "--facts", "{dir}/facts.json", "--to", to, *extra],
                {"facts.json": data},
                must_reject=must,
                allow_codes=(2, 3) if must else (0, 2, 3),
            )

        return gen()

    # ---- lab specs
    def lab_spec(self) -> st.SearchStrategy[Case]:
        @st.composite
        def gen(draw: st.DrawFn) -> Case:
            kind = draw(st.sampled_from(["mutate", "mutate", "mutate", "random", "truncated"]))
            if kind == "mutate":
                doc, what, must = draw(mutated_doc(self.spec_doc, SPEC_RULES))
                data = _dump_yaml(doc)
            elif kind == "random":
                data, what, must = _dump_yaml(draw(json_values)), "random YAML", False
            else:
                data = _truncate(_dump_yaml(self.spec_doc), draw)
                what, must = f"spec truncated to {len(data)} bytes", False
            return Case(
                "lab-spec",
                what,
                ["lab", "up", "--dir", "{dir}/lab", "--spec", "{dir}/spec.yaml"],
                {"spec.yaml": data},
                must_reject=must,
                screen="spec",
            )

        return gen()

    # ---- state files
    def _states(self) -> dict[str, bytes]:
        """Valid state files to break: one unfinished run of this lab's cluster."""
        from upgrader import state as stmod

        steps = [  # pending records are the steps new_run needs (id, node, phase, name)
            stmod.StepRecord(
                f"{TARGET}/cp-1/first-control-plane/kubeadm-package",
                "cp-1",
                "first-control-plane",
                "kubeadm-package",
            ),
            stmod.StepRecord(f"{TARGET}/w-1/worker/drain", "w-1", "worker", "drain"),
        ]
        run = stmod.new_run(
            cluster="lab",
            inventory=self.lab.inventory,
            fingerprint="0" * 64,
            target=TARGET,
            hops=[TARGET],
            strategy="per-hop",
            steps=steps,
        )
        run = stmod.start_step(run, steps[0].id)
        good = run.to_dict()
        other_target = dict(good, target="v1.29.0", hops=["v1.29.0"])
        other_cluster = dict(good, cluster="prod-eu", inventory="/srv/prod-eu/inventory.yaml")
        return {
            "valid": json.dumps(good).encode(),
            "other-target": json.dumps(other_target).encode(),
            "other-cluster": json.dumps(other_cluster).encode(),
        }

    def state_file(self) -> st.SearchStrategy[Case]:
        @st.composite
        def gen(draw: st.DrawFn) -> Case:
            base = json.loads(self.states["valid"])
            kind = draw(
                st.sampled_from(
                    [
                        "truncated",
                        "mutate",
                        "mutate",
                        "schema",
                        "random",
                        "bytes",
                        "other-target",
                        "other-cluster",
                        "directory",
                    ]
                )
            )
            must = True
            files: dict[str, bytes] = {}
            state_arg = "{dir}/state.json"
            if kind == "truncated":
                data = _truncate(json.dumps(base, indent=1).encode(), draw)
                what = f"state truncated to {len(data)} bytes"
            elif kind == "mutate":
                doc, what, must = draw(mutated_doc(base, STATE_RULES))
                data = json.dumps(doc).encode()
            elif kind == "schema":
                data = json.dumps(dict(base, schema=draw(values))).encode()
                what = "another schema"
            elif kind == "random":
                data, what = json.dumps(draw(json_values)).encode(), "random JSON"
            elif kind == "bytes":
                data, what = draw(st.binary(max_size=100)), "random bytes"
            elif kind == "directory":
                data, what, state_arg = b"", "--state names a directory", "{dir}"
            else:
                data, what = self.states[kind], f"unfinished run of {kind}"
            if kind != "directory":
                files["state.json"] = data
            inv = str(self.lab.inventory)
            if kind in ("other-target", "other-cluster") or (
                must and draw(st.booleans()) and kind != "mutate"
            ):
                # apply must refuse before touching anything
                args = ["apply", "-i", inv, "--to", TARGET, "--yes", "--state", state_arg]
            else:
                args = ["status", "-i", inv, "--state", state_arg]
            return Case(
                "state",
                what,
                args,
                files,
                must_reject=must,
                allow_codes=(2,) if must else (0, 2),
            )

        return gen()

    # ---- command lines
    def cli_args(self) -> st.SearchStrategy[Case]:
        inv = str(self.lab.inventory)
        bad_values = st.sampled_from(
            ["", "-1", "0", "abc", "1e309", "nan", "99999999999999999999", "v1", "1.28", "--", "é"]
        )

        @st.composite
        def gen(draw: st.DrawFn, forced: str | None = None) -> Case:
            cmd = draw(
                st.sampled_from(
                    ["plan", "apply"] if forced else ["plan", "apply", "status", "facts"]
                )
            )
            base: dict[str, list[str]] = {
                "plan": ["plan", "-i", inv, "--to", TARGET],
                "apply": ["apply", "-i", inv, "--to", CURRENT, "--yes", "--state", "{dir}/s.json"],
                "status": ["status", "-i", inv, "--state", "{dir}/s.json"],
                "facts": ["facts", "-i", inv],
            }
            args = list(base[cmd])
            kind = forced or draw(
                st.sampled_from(
                    [
                        "unknown-flag",
                        "bad-int",
                        "bad-enum",
                        "bad-version",
                        "missing-required",
                        "missing-file",
                        "both-sources",
                        "extra-arg",
                        "bad-nodes",
                        "bad-float",
                    ]
                )
            )
            if kind == "unknown-flag":
                flag = draw(st.sampled_from(["--frobnicate", "--yes-please", "-Z", "--to-version"]))
                args.insert(draw(st.integers(1, len(args))), flag)
                what = f"unknown flag {flag}"
            elif kind == "bad-int":
                flag = "--max-workers"
                v = draw(st.sampled_from(["0", "-3", "abc", "513", "1.5", ""]))
                args += [flag, v]
                what = f"{flag} {v!r}"
            elif kind == "bad-float":
                if cmd == "apply":
                    flag = draw(st.sampled_from(["--drain-timeout", "--ready-timeout"]))
                    v = draw(
                        st.sampled_from(["-1", "abc", "0" if flag == "--ready-timeout" else "x"])
                    )
                    args += [flag, v]
                    what = f"{flag} {v!r}"
                else:
                    args += ["--max-workers", draw(bad_values)]
                    what = f"--max-workers {args[-1]!r}"
            elif kind == "bad-enum":
                if cmd in ("plan", "apply"):
                    v = draw(st.sampled_from(["sideways", "", "PER-HOP", "drain_once"]))
                    args += ["--strategy", v]
                    what = f"--strategy {v!r}"
                else:
                    args += ["--verbose=3"]
                    what = "--verbose=3 (a count flag given a value)"
            elif kind == "bad-version":
                if cmd in ("plan", "apply"):
                    v = draw(
                        st.sampled_from(
                            [
                                # (v1.28, 1.28.x and latest are targets now: the newest patch)
                                "v1.99",
                                "v1.28.4.5",
                                "newest",
                                "",
                                "v1.28.x.1",
                                "v2",
                                "v1.28.4;id",
                                "¹.28.4",
                            ]
                        )
                    )
                    i = args.index("--to")
                    args[i + 1] = v
                    what = f"--to {v!r}"
                else:
                    args += ["--to", TARGET]
                    what = "--to on a command without it"
            elif kind == "missing-required":
                drop = "-i" if cmd != "plan" or draw(st.booleans()) else "--to"
                i = args.index(drop)
                del args[i : i + 2]
                if cmd == "plan" and drop == "-i":
                    what = "plan without -i or --facts"
                else:
                    what = f"without {drop}"
            elif kind == "missing-file":
                i = args.index("-i")
                args[i + 1] = draw(st.sampled_from(["{dir}/nope.yaml", "{dir}", "/dev/null", ""]))
                what = f"-i {args[i + 1]!r}"
            elif kind == "both-sources":
                if cmd == "plan":
                    args += ["--facts", str(DATA / "facts" / "one-cp-two-workers.json")]
                    what = "plan with both -i and --facts"
                else:
                    args += ["--facts", "x.json"]
                    what = f"{cmd} --facts (no such option)"
            elif kind == "extra-arg":
                args.append(draw(st.sampled_from(["extra", "w-1", "-"])))
                what = f"stray argument {args[-1]!r}"
            elif kind in ("bad-playbook", "bad-release-data") and cmd in ("plan", "apply"):
                if kind == "bad-playbook":
                    doc = yaml.safe_load(PLAYBOOK.read_text())
                    mdoc, w, must = draw(mutated_doc(doc, PLAYBOOK_RULES))
                    files = {"pb/default.yaml": _dump_yaml(mdoc)}
                    args += ["--playbooks", "{dir}/pb"]
                    return Case(
                        "playbook", f"{cmd}: {w}", args, files, must_reject=must, screen="playbook"
                    )
                else:
                    data = draw(
                        st.sampled_from(
                            [b"", b"{", b"[]", b'{"minors": 5}', b'{"schema": 99}', b"\xff"]
                        )
                    )
                    files = {"releases.json": data}
                    args += ["--release-data", "{dir}/releases.json"]
                    what = f"--release-data {data!r}"
                return Case("cli", f"{cmd}: {what}", args, files, must_reject=True)
            elif kind in ("bad-playbook", "bad-release-data"):
                args += ["--playbooks", "{dir}"]
                what = f"{cmd} --playbooks (no such option)"
            else:
                if cmd in ("plan", "apply"):
                    v = draw(st.sampled_from(["w-9", "cp-1", "w-1,nope", ",", "W-1", "w-1;id"]))
                    args += ["--nodes", v]
                    what = f"--nodes {v!r}"
                else:
                    args += ["--nodes", "w-1"]
                    what = f"{cmd} --nodes (no such option)"
            # --nodes cp-1: a control plane is not a worker the run can be limited to
            return Case("cli", f"{cmd}: {what}", args, {}, must_reject=True)

        self._cli_gen = gen
        return gen()

    def playbook(self) -> st.SearchStrategy[Case]:
        """Broken playbook directories and release data files given to plan/apply."""
        if not hasattr(self, "_cli_gen"):
            self.cli_args()
        return st.sampled_from(["bad-playbook", "bad-release-data"]).flatmap(
            lambda k: self._cli_gen(forced=k)
        )

    def bomb(self) -> Case:
        lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
        prev = "a"
        for i in range(8):
            name = f"b{i}"
            lines.append(f"{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]")
            prev = name
        lines.append(f"cluster: {{name: *{prev}}}")
        doc = "\n".join(lines) + "\nnodes: []\n"
        return Case(
            "inventory",
            "YAML alias bomb (6^8 leaves)",
            ["plan", "-i", f"{self.inv_dir}/fuzz-bomb.yaml", "--to", TARGET],
            {"@lab/fuzz-bomb.yaml": doc.encode()},
            subprocess_only=True,
        )


def _is_yamlish(data: bytes) -> bool:
    try:
        yaml.safe_load(data)
        return True
    except Exception:
        return False


# --------------------------------------------------------------------------- running


def run_inprocess(args: list[str]) -> Outcome:
    from upgrader import cli as cli_mod

    out, err = io.StringIO(), io.StringIO()
    saved = sys.argv, sys.stdin
    root = logging.getLogger()
    root.handlers.clear()
    t0 = time.monotonic()
    tb = None
    code: int | None = 0
    sys.argv = ["upgrader", *args]
    sys.stdin = io.StringIO("")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli_mod.main()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:
                tb = traceback.format_exc()
                code = None
    finally:
        sys.argv, sys.stdin = saved
        root.handlers.clear()
    return Outcome(code, out.getvalue(), err.getvalue(), tb, time.monotonic() - t0, "in-process")


def run_subprocess(args: list[str], timeout: float = 60) -> Outcome:
    t0 = time.monotonic()
    try:
        p = subprocess.run(
            cli_argv(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env(),
            stdin=subprocess.DEVNULL,
            cwd=REPO,
        )
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else ""
        return Outcome(None, "", err, f"timed out after {timeout}s", time.monotonic() - t0, "sub")
    tb = p.stderr if "Traceback (most recent call last)" in p.stderr else None
    return Outcome(p.returncode, p.stdout, p.stderr, tb, time.monotonic() - t0, "subprocess")


def screen_inventory(path: Path) -> bool:
    """True when the product's loader accepts the file (the case would run for real)."""
    from upgrader.errors import UpgraderError
    from upgrader.inventory import load_inventory

    try:
        load_inventory(path)
    except UpgraderError:
        return False
    except Exception:
        return False  # a crash in the loader: the CLI run will show it
    return True


def screen_spec(path: Path) -> bool:
    from upgrader.errors import UpgraderError
    from upgrader_lab import spec as labspec

    try:
        labspec.load_spec(path)
    except UpgraderError:
        return False
    except Exception:
        return False
    return True


def screen_playbook(path: Path) -> bool:
    from upgrader.core.playbook import load_playbooks
    from upgrader.errors import UpgraderError

    try:
        load_playbooks(path.parent)
    except UpgraderError:
        return False
    except Exception:
        return False
    return True


SCREENS: dict[str, Callable[[Path], bool]] = {
    "inventory": screen_inventory,
    "spec": screen_spec,
    "playbook": screen_playbook,
}


class Campaign:
    def __init__(self, lab: Lab, work: Path, subprocess_every: int) -> None:
        self.lab = lab
        self.work = work
        self.every = subprocess_every
        self.n = 0
        self.tried = 0
        self.skipped_valid = 0
        self.failures: list[dict[str, Any]] = []
        self.by_category: dict[str, dict[str, int]] = {}
        self.modes = {"in-process": 0, "subprocess": 0}
        self.codes: dict[str, int] = {}
        self.accepted_samples: list[str] = []

    def _calls_sizes(self) -> dict[str, int]:
        out = {}
        for n in self.lab.node_names:
            p = self.lab.dir / "nodes" / n / "calls.jsonl"
            out[n] = p.stat().st_size if p.exists() else 0
        return out

    def _count(self, cat: str, key: str) -> None:
        c = self.by_category.setdefault(cat, {"tried": 0, "skipped-valid": 0, "failures": 0})
        c[key] = c.get(key, 0) + 1

    def _fail(self, case: Case, args: list[str], why: str, out: Outcome | None) -> None:
        self._count(case.category, "failures")
        self.failures.append(
            {
                "category": case.category,
                "case": case.what,
                "args": args,
                "why": why,
                "exit_code": None if out is None else out.code,
                "stderr": None if out is None else out.stderr[-800:],
                "traceback": None if out is None else (out.traceback or "")[-1500:],
                "mode": None if out is None else out.mode,
            }
        )

    def run(self, case: Case) -> None:
        self.n += 1
        d = self.work / f"case{self.n}"
        files = {k: v for k, v in case.files.items() if not k.startswith("@lab/")}
        lab_files = {k[5:]: v for k, v in case.files.items() if k.startswith("@lab/")}
        for name, data in lab_files.items():
            (self.lab.dir / name).write_bytes(data)
        try:
            c = Case(case.category, case.what, case.args, files)
            args = c.materialise(d)
            if case.screen is not None:
                target = (
                    self.lab.dir / next(iter(lab_files)) if lab_files else d / next(iter(files))
                )
                ok = SCREENS[case.screen](target)
                if ok:
                    if case.must_reject:
                        self.tried += 1
                        self._count(case.category, "tried")
                        self._fail(
                            case, args, "the loader accepted input that must be refused", None
                        )
                    else:
                        self.skipped_valid += 1
                        self._count(case.category, "skipped-valid")
                        if len(self.accepted_samples) < 40:
                            self.accepted_samples.append(f"{case.category}: {case.what}")
                    return
            self.tried += 1
            self._count(case.category, "tried")
            before = self._calls_sizes()
            sub = case.subprocess_only or (self.every > 0 and self.n % self.every == 0)
            out = run_subprocess(args) if sub else run_inprocess(args)
            self.modes["subprocess" if sub else "in-process"] += 1
            self.codes[str(out.code)] = self.codes.get(str(out.code), 0) + 1
            after = self._calls_sizes()
            touched = [n for n in after if after[n] != before[n]]
            lines = [x for x in out.stderr.splitlines() if x.strip()]
            if out.traceback:
                self._fail(case, args, "traceback", out)
            elif touched:
                self._fail(case, args, f"executed on {', '.join(touched)}", out)
                self._reset_calls()
            elif out.code not in case.allow_codes:
                if case.must_reject or out.code not in (0, 2, 3):
                    self._fail(case, args, f"exit code {out.code}", out)
            elif out.code == 2 and len(lines) != 1:
                self._fail(case, args, f"{len(lines)} lines on stderr (want 1)", out)
            elif out.code == 3 and len(lines) > 1:
                self._fail(case, args, f"{len(lines)} lines on stderr (want at most 1)", out)
            if case.category == "lab-spec" and (d / "lab" / "lab.json").exists():
                self._fail(case, args, "a lab was started from a bad spec", out)
                subprocess.run(cli_argv("lab", "down", "--dir", str(d / "lab")), check=False)
        finally:
            for name in lab_files:
                (self.lab.dir / name).unlink(missing_ok=True)
            shutil.rmtree(d, ignore_errors=True)

    def _reset_calls(self) -> None:
        self.lab.clear_calls()

    def report(self) -> dict[str, Any]:
        return {
            "tried": self.tried,
            "skipped_valid": self.skipped_valid,
            "failures": len(self.failures),
            "by_category": self.by_category,
            "modes": self.modes,
            "exit_codes": self.codes,
            "accepted_samples": self.accepted_samples,
            "failure_details": self.failures,
        }


def campaign(cases: int, seed_value: int, work: Path, every: int) -> dict[str, Any]:
    t0 = time.monotonic()
    with lab_session(work / "lab", None) as lab:
        lab.clear_calls()
        gen = Gen(lab, work)
        camp = Campaign(lab, work / "cases", every)
        strategies = {
            "inventory": gen.inventory(),
            "inventory-raw": gen.inventory_raw(),
            "facts": gen.facts_file(),
            "lab-spec": gen.lab_spec(),
            "state": gen.state_file(),
            "cli": gen.cli_args(),
            "playbook": gen.playbook(),
        }
        camp.run(gen.bomb())

        @seed(seed_value)
        @settings(
            max_examples=cases,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(st.sampled_from(sorted(strategies)).flatmap(lambda k: strategies[k]))
        def one(case: Case) -> None:
            camp.run(case)

        one()
        doc = camp.report()
    doc.update(
        cases_requested=cases,
        seed=seed_value,
        seconds=round(time.monotonic() - t0, 1),
        machine=machine(),
    )
    return doc


def summary(doc: dict[str, Any]) -> str:
    t = Table(["input", "cases tried", "skipped (valid)", "failures"])
    for cat, c in sorted(doc["by_category"].items()):
        t.add(cat, c.get("tried", 0), c.get("skipped-valid", 0), c.get("failures", 0))
    lines = [
        t.text(),
        f"{doc['tried']} cases tried ({doc['modes']['in-process']} in-process, "
        f"{doc['modes']['subprocess']} subprocess), {doc['skipped_valid']} skipped as valid, "
        f"{doc['failures']} failures",
    ]
    seen: set[tuple[str, str]] = set()
    for f in doc["failure_details"]:
        key = (f["category"], f["why"])
        if key in seen:
            continue
        seen.add(key)
        lines.append(f"failure [{f['category']}] {f['why']}: {f['case']}")
        lines.append(f"    upgrader {' '.join(f['args'])}")
        last = (f.get("stderr") or "").strip().splitlines()[-1:] or [""]
        lines.append(f"    stderr: {last[0][:200]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=600, help="generated cases (default 600)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--subprocess-every", type=int, default=10, help="run every Nth case as a subprocess"
    )
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    os.environ.pop("KUBECONFIG", None)
    doc = run_campaign(
        "fuzz", lambda work: campaign(a.cases, a.seed, work, a.subprocess_every), summary, a.out
    )
    return 0 if doc["failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
