"""Playbooks: the upgrade procedure as data, its validation, and step rendering.

Owns the playbook format (below), loading and validating it (every problem is one
``ConfigError`` line ``<file>: <field path>: <problem>``, raised before any host is
touched), the fixed set of template variables, and turning one step of a playbook into a
:class:`upgrader.core.model.Step` for one node at one hop with every substituted value
shell-quoted. Must not: decide which nodes or hops need work (``planner.py`` does), run
anything, or import paramiko, kubernetes, typer or rich.

Format (``version: 1``; ``playbooks/default.yaml`` carries the same text as a comment)::

    version: 1
    phases:
      <phase>:               # first-control-plane | control-plane | control-plane-kubelet | worker
                             # | prestage (optional: every node at once, before the first
                             #   visit; downloads only)
        description: text    # optional
        pre:   [step, ...]   # optional: operator steps, once at the start of the node's visit
        steps: [step, ...]   # the procedure; required for every phase in default.yaml
        post:  [step, ...]   # optional: operator steps, once at the end of the node's visit

    step:
      name:        [a-z0-9][a-z0-9-]*, unique within its phase; the last part of the step id
                   <hop>/<node>/<phase>/<name>
      kind:        shell | cordon | drain | uncordon | wait-ready | wait-control-plane |
                   etcd-snapshot (on a control-plane node: ``etcdctl snapshot save`` with
                   kubeadm's etcd certificates, ``snapshot status`` checked, copied to the
                   operator's machine over SFTP, sha256 compared; the planner keeps only the
                   first one of a run, none with ``--skip-etcd-snapshot``)
      description: template, one line, shown by ``upgrader plan``
      command:     shell only, required: a template, or a mapping {apt: .., dnf: .., yum: ..}
                   by package manager; yum nodes use the dnf template unless yum is given
                   (write {pm} where the tool name goes)
      check:       shell only, optional, same shape: the "already done?" command (exit 0 = done)
      retry_safe:  bool, default false: may be retried blindly
      timeout:     seconds, default 300 (drain: params.timeout + 60)
      sudo:        shell only, bool, default true
      when:        minor_changes | {minor_changes: bool, strategy: per-hop|drain-once,
                   checksums: bool, role: control-plane|worker, per_minor_repo: bool};
                   every key given must hold (checksums: the release checksums of the hop
                   are known, see {sha256_kubeadm}; role: the node's; per_minor_repo: the
                   repository is pkgs.k8s.io or custom, not legacy)
      params:      API kinds only. drain: timeout (600), grace_period (null = the pod's own),
                   delete_emptydir_data (false), allow_unmanaged (false), retry_interval (5);
                   wait-ready, wait-control-plane: poll_interval (5); cordon, uncordon: none

A *visit* is one node in one phase at one hop (one ``PlanEntry``): its ``pre``, ``steps``
and ``post``, in order, filtered by ``when``. (Under ``drain-once`` a worker gets one
visit, at the target: its kubeadm and kubelet go straight there, as the skew policy's n-3
kubelet rule allows; it never runs an older kubeadm against the upgraded cluster.)
``minor_changes`` holds when the package repository the node points at is not yet the
hop's minor (never for the ``legacy`` repository, which has no per-minor switch). Other
``*.yaml`` files in the playbook directory may add ``pre``/``post`` steps (nothing else);
they are applied after ``default.yaml`` in file-name order.

Hidden characters: no string of a playbook (keys included) may hold a control character
(C0 ``U+0000``-``U+001F`` including TAB and CR, DEL, C1 ``U+0080``-``U+009F``), a bidi
override, embedding, isolate or mark (``U+202A``-``U+202E``, ``U+2066``-``U+2069``,
``U+200E``, ``U+200F``, ``U+061C``) or a line/paragraph separator (``U+2028``, ``U+2029``):
each can make the text ``upgrader plan`` shows differ from the text a shell runs (``\r``
rewinds the line, ESC sequences erase or recolour it, U+202E reverses it). The one
exception is a newline at the very end of a string, which YAML's block scalars (``|``,
``>``) leave and which is stripped before use; a newline anywhere else is refused too
(long commands use the folded ``>-`` form, which joins lines with spaces). Checked on the
parsed document before anything else, one error line naming file, phase, step and field.

Templates: ``{name}`` is a placeholder from the fixed set :data:`VARIABLES`; ``{{`` is a
literal ``{``; any other brace is literal (so awk programs and ``${Version}`` need no
escaping). Every value is ``shlex.quote``-d when a command is rendered. The exceptions are
the fragments upgrader writes itself from validated values: ``{kubeadm_flags}`` (each of
:data:`KUBEADM_OVERRIDE_FLAGS` the plan passes to ``kubeadm upgrade apply``, then the
operator's kubeadm pass-through flags (``--patches``, ``--config``, ... quoted by
``core.kubeadm_passthrough``) for ``upgrade apply`` and ``upgrade node``, each with a
leading space; empty when none), ``{kubeadm_plan_flags}`` (the pass-through flags
``kubeadm upgrade plan`` takes), ``{pkg_resolve}`` (empty
when the exact package version is known from facts, else a command that looks it up on
the node, after ``apt-get update``, and fails with a clear message when it is missing) and
``{pkg_version}`` (the quoted exact version, or ``"$pkgver"`` set by ``{pkg_resolve}``).
A command using ``{pkg_version}`` must use ``{pkg_resolve}`` before it; ``{pkg_resolve}``
appears only in ``command``, ``{pkg_version}`` also in ``description``. The exact version
string is the same for kubeadm, kubelet and kubectl of one release in pkgs.k8s.io and the
legacy repositories, so it is looked up on ``kubeadm``.
"""

from __future__ import annotations

import functools
import hashlib
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal, NoReturn

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails

from upgrader.core import vocab
from upgrader.core.fields import built_from
from upgrader.core.model import Step
from upgrader.core.problems import FileModel, Loc, Problem, fail_at, short, validate
from upgrader.core.sanitize import HIDDEN
from upgrader.core.versions import KubeVersion
from upgrader.errors import ConfigError

# --------------------------------------------------------------------------- vocabulary

PHASES = tuple(p.value for p in vocab.Phase)  # plain strings: data, not members
#: Phases a playbook may leave out (no steps: nothing pre-staged).
OPTIONAL_PHASES = frozenset({vocab.Phase.PRESTAGE})

PACKAGE_MANAGERS = tuple(m.value for m in vocab.PackageManager)
# The program a package manager runs as: dnf5 is `dnf` on Fedora 41+ (a symlink to dnf5).
PROGRAM = {m.value: m.program for m in vocab.PackageManager}
STRATEGIES = (vocab.Strategy.PER_HOP.value, vocab.Strategy.DRAIN_ONCE.value)
REPO_FLAVOURS = ("pkgs.k8s.io", "legacy", "custom")
PKGS_K8S_IO = "https://pkgs.k8s.io"

DEFAULT_FILE = "default.yaml"
FORMAT_VERSION = 1

#: Template variables and what they hold (the fixed set; anything else fails at load).
VARIABLES: Mapping[str, str] = {
    "version": "the hop's version without the v: 1.28.4",
    "kversion": "the hop's version: v1.28.4",
    "minor": "the hop's minor: 1.28",
    "node": "the node's name",
    "role": "control-plane | worker",
    "cluster": "the cluster's name",
    "pm": "the program of the node's package manager: apt | dnf | yum (dnf5 runs as dnf)",
    "repo_url": "the hop's package repository URL (empty for legacy)",
    "repo_key_url": "the signing key URL of that repository (empty for legacy)",
    "pkg_version": 'the exact package version (1.28.4-1.1), or "$pkgver" set by {pkg_resolve}',
    "pkg_resolve": "empty, or a command fragment that sets $pkgver on the node (ends in &&)",
    "versionlock_release": "dnf/yum: `<pm> versionlock delete <the node's versionlocked kube "
    "packages> && `, empty when none are locked",
    "versionlock_restore": "dnf/yum: `; rc=$?; <pm> versionlock add <the same>; exit $rc` "
    "(locks them again, even after a failure), empty when none are locked",
    "held_deps": (
        "the node's held cri-tools / kubernetes-cni (the facts' apt-mark showhold), each "
        "preceded by a space, or empty: released for a kube package install, held again after"
    ),
    "sha256_kubeadm": "the release checksum of the hop's kubeadm (empty when unknown)",
    "sha256_kubelet": "the release checksum of the hop's kubelet (empty when unknown)",
    "sha256_kubectl": "the release checksum of the hop's kubectl (empty when unknown)",
    "kubeadm_flags": "the override flags the operator gave that this hop's kubeadm upgrade "
    "apply needs (' --force', ' --allow-release-candidate-upgrades'; empty when none)",
    "kubeadm_plan_flags": "the pass-through flags `kubeadm upgrade plan` takes (' --config "
    "<file> --ignore-preflight-errors <list>'; empty when none)",
    "image_repository": "the cluster's imageRepository (kubeadm-config; registry.k8s.io "
    "when unset)",
}
_COMMAND_ONLY = frozenset(
    {
        "pkg_version",
        "pkg_resolve",
        "versionlock_release",
        "versionlock_restore",
        "kubeadm_flags",
        "kubeadm_plan_flags",
        "held_deps",
    }
)
#: The kubeadm flags ``{kubeadm_flags}`` may hold (upgrader's own override flags of the
#: same name; nothing else is ever inserted unquoted).
KUBEADM_OVERRIDE_FLAGS = (
    "--force",
    "--allow-experimental-upgrades",
    "--allow-release-candidate-upgrades",
)
DEFAULT_IMAGE_REPOSITORY = "registry.k8s.io"
#: Packages the kube packages depend on (kubernetes/release cmd/krel/templates/latest/
#: metadata.yaml: kubeadm on cri-tools, kubelet on kubernetes-cni).
DEPENDENCY_PACKAGES = ("cri-tools", "kubernetes-cni")

_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_PLACEHOLDER_RE = re.compile(r"\{\{|\{([a-z][a-z0-9_]*)\}")
_URL_FORBIDDEN = frozenset(" \t\r\n'\"`$;&|<>()\\*?!#{}")

DEFAULT_TIMEOUT = 300.0
_DESCRIPTION_VARIABLES = frozenset(VARIABLES) - _COMMAND_ONLY | {
    "pkg_version",
    "kubeadm_flags",
    "kubeadm_plan_flags",
}


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class When:
    """When a step is emitted; ``None`` fields do not constrain."""

    minor_changes: bool | None = None
    strategy: str | None = None  # "per-hop" | "drain-once"
    checksums: bool | None = None  # the hop's release checksums are known
    role: str | None = None  # "control-plane" | "worker"
    per_minor_repo: bool | None = None  # pkgs.k8s.io or custom (one repository per minor)

    def holds(
        self,
        *,
        minor_changes: bool,
        strategy: str,
        checksums: bool = False,
        role: str = "",
        per_minor_repo: bool = True,
    ) -> bool:
        if self.minor_changes is not None and self.minor_changes != minor_changes:
            return False
        if self.per_minor_repo is not None and self.per_minor_repo != per_minor_repo:
            return False
        if self.checksums is not None and self.checksums != checksums:
            return False
        if self.role is not None and self.role != role:
            return False
        return self.strategy is None or self.strategy == strategy


@dataclass(frozen=True)
class StepSpec:
    """One step of a phase as the playbook states it (templates not yet rendered)."""

    name: str
    kind: str
    description: str
    command: Mapping[str, str] = field(default_factory=dict)  # pm -> template; "*" = any
    check: Mapping[str, str] = field(default_factory=dict)
    retry_safe: bool = False
    timeout: float = DEFAULT_TIMEOUT
    sudo: bool = True
    when: When = When()
    params: Mapping[str, Any] = field(default_factory=dict)
    origin: str = ""  # "<file>: phases.worker.steps[3]" for messages

    def template_for(self, templates: Mapping[str, str], pm: str | None) -> str | None:
        if "*" in templates:
            return templates["*"]
        if pm is None:
            return None
        if pm in templates:
            return templates[pm]
        if pm == "yum":
            return templates.get("dnf")
        # dnf5 rejects dnf4's --disableexcludes: its template is never dnf4's
        return None


@dataclass(frozen=True)
class Phase:
    name: str
    steps: tuple[StepSpec, ...]
    pre: tuple[StepSpec, ...] = ()
    post: tuple[StepSpec, ...] = ()
    description: str | None = None

    @property
    def all_steps(self) -> tuple[StepSpec, ...]:
        """``pre`` + ``steps`` + ``post``, in order."""
        return self.pre + self.steps + self.post


@dataclass(frozen=True)
class Playbook:
    phases: Mapping[str, Phase]
    sources: tuple[str, ...] = ()
    digest: str = ""  # sha256 over the files' base names and contents (state fingerprint)

    def phase(self, name: str) -> Phase:
        return self.phases[name]


@dataclass(frozen=True)
class RepoConfig:
    """Where the Kubernetes packages come from (the inventory's ``packages`` section).

    ``pkgs.k8s.io``: one repository per minor; ``legacy``: the old single repository (no
    per-minor switch); ``custom``: ``url_template`` with ``{minor}``, laid out like
    pkgs.k8s.io (``Release.key`` / ``repodata/repomd.xml.key`` next to the packages).
    """

    flavour: str = "pkgs.k8s.io"
    url_template: str | None = None
    # packages.mirror: the https base URL that stands for https://pkgs.k8s.io (same layout)
    mirror: str | None = None

    def __post_init__(self) -> None:
        if self.mirror is not None:
            m = self.mirror
            if self.flavour != "pkgs.k8s.io":
                raise ConfigError(
                    f"packages.mirror: only used with repository: pkgs.k8s.io "
                    f"(repository is {self.flavour})"
                )
            host = m.removeprefix("https://").split("/", 1)[0] if m.startswith("https://") else ""
            if not host or "@" in host:
                raise ConfigError("packages.mirror: must be an https:// URL without user:password@")
            bad = sorted(set(m) & _URL_FORBIDDEN)
            if bad:
                raise ConfigError(
                    f"packages.mirror: {m!r} contains forbidden characters {''.join(bad)!r}"
                )
        if self.flavour not in REPO_FLAVOURS:
            raise ConfigError(
                f"packages.repository: {self.flavour!r} is not one of {', '.join(REPO_FLAVOURS)}"
            )
        if self.flavour == "custom":
            t = self.url_template
            if not t:
                raise ConfigError("packages.url_template: required when repository is custom")
            if not t.startswith(("https://", "http://")):
                raise ConfigError(f"packages.url_template: {t!r} must start with https://")
            bad = sorted(set(t.replace("{minor}", "")) & _URL_FORBIDDEN)
            if bad:
                raise ConfigError(
                    f"packages.url_template: {t!r} contains forbidden characters {''.join(bad)!r}"
                )
        elif self.url_template is not None:
            raise ConfigError(
                f"packages.url_template: only used with repository: custom "
                f"(repository is {self.flavour})"
            )

    @property
    def per_minor(self) -> bool:
        return self.flavour != "legacy"

    def url(self, version: KubeVersion, pm: str | None) -> str:
        """The package repository URL for ``version``'s minor (``""`` for legacy)."""
        family = "deb" if pm == "apt" else "rpm"
        if self.flavour == "legacy":
            return ""
        if self.flavour == "custom":
            assert self.url_template is not None
            u = self.url_template.replace("{minor}", version.minor_str)
            return u if u.endswith("/") else u + "/"
        channel = "prerelease" if version.is_prerelease else "stable"
        base = (self.mirror or PKGS_K8S_IO).rstrip("/")
        return f"{base}/core:/{channel}:/v{version.minor_str}/{family}/"

    def key_url(self, version: KubeVersion, pm: str | None) -> str:
        base = self.url(version, pm)
        if not base:
            return ""
        return base + ("Release.key" if pm == "apt" else "repodata/repomd.xml.key")


@dataclass(frozen=True)
class Fragment:
    """Shell text upgrader generated itself from validated values: inserted unquoted."""

    text: str
    display: str


TemplateValue = str | Fragment


@dataclass(frozen=True)
class StepContext:
    """Everything a step's templates may refer to, for one node at one hop."""

    hop: KubeVersion
    node: str
    role: str
    cluster: str
    package_manager: str | None
    repo: RepoConfig = RepoConfig()
    pkg_version: str | None = None  # exact package version string, when facts know it
    checksums: Mapping[str, str] = field(default_factory=dict)  # binary -> sha256 hex
    versionlocked: tuple[str, ...] = ()  # kube packages `dnf versionlock list` names
    kubeadm_flags: tuple[str, ...] = ()  # of KUBEADM_OVERRIDE_FLAGS, for upgrade apply
    image_repository: str | None = None  # the cluster's imageRepository (None: default)
    held_deps: tuple[str, ...] = ()  # held DEPENDENCY_PACKAGES on the node (facts)
    # kubeadm pass-through (core.kubeadm_passthrough): quoted there, appended after the
    # override flags in {kubeadm_flags} (upgrade apply/node) and in {kubeadm_plan_flags}
    kubeadm_passthrough: tuple[str, ...] = ()
    kubeadm_plan_passthrough: tuple[str, ...] = ()


# --------------------------------------------------------------------------- templates


def _check_template(template: str, *, allow: frozenset[str], in_command: bool) -> str | None:
    """The first problem with ``template``, or ``None``."""
    resolve_seen = False
    for m in _PLACEHOLDER_RE.finditer(template):
        name = m.group(1)
        if name is None:
            continue
        if name not in VARIABLES:
            return (
                f"unknown template variable {{{name}}} "
                f"(known: {', '.join(sorted(VARIABLES))}; write {{{{ for a literal brace)"
            )
        if name not in allow:
            return f"{{{name}}} may only be used in command templates"
        if m.start() > 0 and template[m.start() - 1] == "$":
            return (
                f"'${{{name}}}' is ambiguous next to '$': write '${{{{{name}}}' for a literal "
                "shell variable"
            )
        if name == "pkg_resolve":
            resolve_seen = True
        if name == "pkg_version" and in_command and not resolve_seen:
            return "{pkg_version} must come after {pkg_resolve} (which sets it on the node)"
    return None


# Rendered texts of templates that do not name the node, by template, quoting and the
# values they use: a plan renders the same command for every node of one package manager
# and version (and keeps one copy of it, not one per step).
_RENDERED: dict[tuple[Any, ...], str] = {}
_RENDERED_MAX = 4096


@functools.lru_cache(maxsize=1024)
def _template_pieces(template: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``template`` split once at its placeholders: the literal texts (``{{`` already
    ``{``) and, between each two of them, the variable's name (one more literal than
    names). A plan renders the same few templates for every node."""
    literals: list[str] = []
    names: list[str] = []
    current: list[str] = []
    pos = 0
    for m in _PLACEHOLDER_RE.finditer(template):
        current.append(template[pos : m.start()])
        pos = m.end()
        if m.group(1) is None:
            current.append("{")
            continue
        literals.append("".join(current))
        current = []
        names.append(m.group(1))
    current.append(template[pos:])
    literals.append("".join(current))
    return tuple(literals), tuple(names)


def render_template(template: str, values: Mapping[str, TemplateValue], *, quote: bool) -> str:
    """Substitute ``values`` into ``template``. With ``quote`` every ``str`` value is
    ``shlex.quote``-d and a :class:`Fragment` goes in as its text; without, values go in as
    they are (descriptions) and a fragment as its display text."""
    literals, names = _template_pieces(template)
    key = None
    if "node" not in names:  # the same text on every node with these values: render once
        key = (template, quote, *(values[name] for name in names))
        done = _RENDERED.get(key)
        if done is not None:
            return done
    out = [literals[0]]
    for name, literal in zip(names, literals[1:], strict=True):
        value = values[name]
        if isinstance(value, Fragment):
            out.append(value.text if quote else value.display)
        else:
            out.append(shlex.quote(value) if quote else value)
        out.append(literal)
    text = "".join(out)
    if key is not None:
        if len(_RENDERED) >= _RENDERED_MAX:
            _RENDERED.clear()
        _RENDERED[key] = text
    return text


def _pkg_prefixes(version: KubeVersion) -> tuple[str, ...]:
    """How package versions of ``version`` begin: ``1.28.4-`` (pre-releases also with ``~``)."""
    if version.is_prerelease:
        base = f"{version.major}.{version.minor}.{version.patch}"
        return (f"{version.plain}-", f"{base}~{version.pre}.{version.pre_num}-")
    return (f"{version.plain}-",)


def known_package_version(candidates: Sequence[str], version: KubeVersion) -> str | None:
    """The one exact package version of ``version`` among ``candidates`` (what the
    repository or the node reported), or ``None`` when absent or ambiguous."""
    prefixes = _pkg_prefixes(version)
    found = sorted({c for c in candidates if c.startswith(prefixes)})
    return found[0] if len(found) == 1 else None


def resolve_fragment(pm: str, version: KubeVersion) -> str:
    """Shell text that sets ``$pkgver`` to the repository's exact kubeadm version string for
    ``version`` (after the package lists are fresh), or fails with a clear message."""
    prefixes = _pkg_prefixes(version)
    awk_match = " || ".join(f'index(v, "{p}") == 1' for p in prefixes)
    if pm == "apt":
        lister = "apt-cache madison kubeadm"
        prog = f'{{v = $2; gsub(/ /, "", v)}} {awk_match} {{print v; exit}}'
        finder = f"{lister} | awk -F'|' {shlex.quote(prog)}"
    else:
        # dnf refreshes expired metadata with --refresh; yum 3 has no such flag, so its
        # cache is expired first. The listing is oldest first: the last match wins. dnf5
        # has no --disableexcludes (kubernetes/website#52027: --setopt=disable_excludes).
        lister = f"{pm} list --showduplicates --disableexcludes=kubernetes kubeadm"
        if pm == "dnf5":
            lister = "dnf list --showduplicates --setopt=disable_excludes=kubernetes kubeadm"
        prog = f"{{v = $2}} {awk_match} {{found = v}} END {{print found}}"
        if pm in ("dnf", "dnf5"):
            lister = lister.replace(" list ", " list --refresh ")
            finder = f"{lister} 2>/dev/null | awk {shlex.quote(prog)}"
        else:
            finder = (
                f"{{ yum clean expire-cache >/dev/null 2>&1; {lister} 2>/dev/null; }} "
                f"| awk {shlex.quote(prog)}"
            )
    msg = (
        f"upgrader: kubeadm {version.plain} is not offered by the configured package "
        f"repository ({lister})"
    )
    return (
        f'pkgver=$({finder}) && {{ test -n "$pkgver" || {{ echo {shlex.quote(msg)} >&2; '
        "false; }; } && "
    )


def step_values(ctx: StepContext) -> dict[str, TemplateValue]:
    """The template variables for ``ctx`` (keys: exactly :data:`VARIABLES`)."""
    v = ctx.hop
    pm = ctx.package_manager
    values: dict[str, TemplateValue] = {
        "version": v.plain,
        "kversion": str(v),
        "minor": v.minor_str,
        "node": ctx.node,
        "role": ctx.role,
        "cluster": ctx.cluster,
        "pm": PROGRAM.get(pm or "", pm or ""),
        "repo_url": ctx.repo.url(v, pm),
        "repo_key_url": ctx.repo.key_url(v, pm),
    }
    for binary in ("kubeadm", "kubelet", "kubectl"):
        digest = ctx.checksums.get(binary, "")
        if digest and not _HEX64_RE.match(digest):
            raise ConfigError(f"release checksum of {binary} {v}: {digest!r} is not sha256 hex")
        values[f"sha256_{binary}"] = digest
    if ctx.pkg_version is not None:
        values["pkg_version"] = ctx.pkg_version
        values["pkg_resolve"] = Fragment("", "")
    else:
        values["pkg_version"] = Fragment(
            '"$pkgver"', f"{v.plain}-* (exact version from the repository)"
        )
        resolve = resolve_fragment(pm, v) if pm in PACKAGE_MANAGERS else "false && "
        values["pkg_resolve"] = Fragment(resolve, "")
    locked = " ".join(ctx.versionlocked) if pm in ("dnf", "yum", "dnf5") else ""
    program = PROGRAM.get(pm or "", "")
    values["versionlock_release"] = Fragment(
        f"{program} versionlock delete {locked} && " if locked else "",
        f"{program} versionlock delete {locked} && " if locked else "",
    )
    values["versionlock_restore"] = Fragment(
        f"; rc=$?; {program} versionlock add {locked}; exit $rc" if locked else "",
        f"; rc=$?; {program} versionlock add {locked}; exit $rc" if locked else "",
    )
    unknown = [f for f in ctx.kubeadm_flags if f not in KUBEADM_OVERRIDE_FLAGS]
    if unknown:
        raise ConfigError(f"not a kubeadm override flag: {unknown[0]!r}")
    flags = "".join(f" {f}" for f in (*ctx.kubeadm_flags, *ctx.kubeadm_passthrough))
    values["kubeadm_flags"] = Fragment(flags, flags)
    plan_flags = "".join(f" {f}" for f in ctx.kubeadm_plan_passthrough)
    values["kubeadm_plan_flags"] = Fragment(plan_flags, plan_flags)
    values["image_repository"] = ctx.image_repository or DEFAULT_IMAGE_REPOSITORY
    deps = [d for d in DEPENDENCY_PACKAGES if d in ctx.held_deps]
    values["held_deps"] = Fragment("".join(f" {d}" for d in deps), "".join(f" {d}" for d in deps))
    assert set(values) == set(VARIABLES)
    return values


def step_id(hop: KubeVersion, node: str, phase: str, name: str) -> str:
    return f"{hop}/{node}/{phase}/{name}"


def expand_step(
    spec: StepSpec,
    phase: str,
    ctx: StepContext,
    values: Mapping[str, TemplateValue] | None = None,
) -> Step:
    """``spec`` rendered for one node at one hop. A shell step without a template for the
    node's package manager gets ``command=None`` (the planner reports it as a blocker).
    ``values``: :func:`step_values` of ``ctx``, when the caller expands several steps of
    one context (they are the same for every step of a node's visit)."""
    if values is None:
        values = step_values(ctx)
    hop = str(ctx.hop)
    command = check = None
    if spec.kind == vocab.StepKind.SHELL:
        t = spec.template_for(spec.command, ctx.package_manager)
        command = render_template(t, values, quote=True) if t is not None else None
        c = spec.template_for(spec.check, ctx.package_manager)
        check = render_template(c, values, quote=True) if c is not None else None
    params: dict[str, Any] = dict(spec.params)
    if spec.kind == vocab.StepKind.WAIT_READY:
        params["kubelet_version"] = hop
    elif spec.kind == vocab.StepKind.WAIT_CONTROL_PLANE:
        params["version"] = hop
        params["components"] = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"]
    return Step(
        id=f"{hop}/{ctx.node}/{phase}/{spec.name}",  # step_id()
        kind=spec.kind,
        node=ctx.node,
        hop=hop,
        phase=phase,
        name=spec.name,
        description=render_template(spec.description, values, quote=False),
        command=command,
        check=check,
        params=params,
        retry_safe=spec.retry_safe,
        timeout=spec.timeout,
        sudo=spec.sudo,
    )


# --------------------------------------------------------------------------- loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate mapping keys (PyYAML keeps the last silently)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    # Checked on the mapping's own keys, before merge keys (``<<: *anchor``) are flattened:
    # a key given next to a merge overrides the merged one, as YAML intends.
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    loader.flatten_mapping(node)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


# Characters that can make a text render differently from what it is (see the module doc);
# the same class the output sanitiser escapes.
_HIDDEN = HIDDEN
_HIDDEN_NAMES = {
    0x00: "NUL",
    0x07: "BEL",
    0x08: "backspace",
    0x09: "tab",
    0x0A: "newline",
    0x0D: "carriage return",
    0x1B: "ESC",
    0x7F: "DEL",
    0x061C: "arabic letter mark",
    0x200E: "left-to-right mark",
    0x200F: "right-to-left mark",
    0x2028: "line separator",
    0x2029: "paragraph separator",
    0x202A: "left-to-right embedding",
    0x202B: "right-to-left embedding",
    0x202C: "pop directional formatting",
    0x202D: "left-to-right override",
    0x202E: "right-to-left override",
    0x2066: "left-to-right isolate",
    0x2067: "right-to-left isolate",
    0x2068: "first strong isolate",
    0x2069: "pop directional isolate",
}


def hidden_character(text: str) -> str | None:
    """A description of the first character of ``text`` that may hide what the text
    says (``U+000D (carriage return) at character 5``), or None. A newline run at the very
    end (a YAML block scalar's) is allowed."""
    m = _HIDDEN.search(text.rstrip("\n"))
    if m is None:
        return None
    cp = ord(m.group())
    name = _HIDDEN_NAMES.get(cp, "control character")
    return f"U+{cp:04X} ({name}) at character {m.start() + 1}"


def _scan_hidden(c: _Ctx, value: Any, path: str, step: str | None = None) -> None:
    """Refuse a hidden character anywhere in the parsed document (keys and values)."""

    def where(p: str) -> str:
        phase = p.split(".")[1] if p.startswith("phases.") and p.count(".") >= 1 else None
        ctx = ", ".join(
            x for x in (f"phase {phase}" if phase else "", f"step {step}" if step else "") if x
        )
        return f"{p} ({ctx})" if ctx else p

    if isinstance(value, str):
        found = hidden_character(value)
        if found:
            hint = (
                " (one line: a folded block scalar '>-' joins long ones)"
                if "U+000A" in found
                else ""
            )
            c.fail(
                where(path),
                f"{found} is not allowed: it can make the text shown differ from the text "
                f"run; remove it{hint}",
            )
    elif isinstance(value, dict):
        name = value.get("name")
        if isinstance(name, str) and hidden_character(name) is None and "kind" in value:
            step = name
        for k, v in value.items():
            kp = f"{path}.{k}" if path else str(k)
            bad_key = hidden_character(k) if isinstance(k, str) else None
            if bad_key:
                c.fail(where(path or "(top level)"), f"a key holds {bad_key}; remove it")
            _scan_hidden(c, v, kp, step)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _scan_hidden(c, v, f"{path}[{i}]", step)


class _Ctx:
    """Error location helper: ``<file>: <path>: <problem>``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, problem: str) -> NoReturn:
        where = f"{self.source}: {path}: " if path else f"{self.source}: "
        raise ConfigError((where + problem).replace("\n", " "))


def _short(value: Any) -> str:
    return short(value, 60)


def _type_name(value: Any) -> str:
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------- the file's schema
#
# pydantic models of one playbook file. Validators that need a step's kind read it from
# ``info.data`` (the fields above them, already valid); ``fail_at`` names a key below the
# field. :func:`_problem` words pydantic's own errors the playbook's way.

_SECONDS = "a whole number of seconds > 0"
PositiveSeconds = Annotated[int, Field(strict=True, gt=0, description=_SECONDS)]
Flag = Annotated[bool, Field(strict=True, description="true or false")]


class _NoParams(FileModel):
    pass


class _DrainParams(FileModel):
    timeout: PositiveSeconds = 600
    grace_period: Annotated[
        int | None,
        Field(strict=True, ge=0, description="a whole number of seconds >= 0, or null"),
    ] = None  # null: the pod's own
    delete_emptydir_data: Flag = False
    allow_unmanaged: Flag = False
    retry_interval: PositiveSeconds = 5


class _PollParams(FileModel):
    poll_interval: PositiveSeconds = 5


# Operator-settable parameters of the API kinds, with defaults. The planner adds the
# derived ones (wait-ready: kubelet_version; wait-control-plane: version, components).
PARAMS: Mapping[str, type[FileModel]] = {
    **{k.value: _NoParams for k in vocab.StepKind},
    vocab.StepKind.DRAIN: _DrainParams,
    vocab.StepKind.WAIT_READY: _PollParams,
    vocab.StepKind.WAIT_CONTROL_PLANE: _PollParams,
}


def _step_name(value: object) -> object:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError(f"{_short(value)} must be lowercase letters, digits and '-' (at most 63)")
    return value


def _description(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or "\n" in value.strip():
        raise ValueError("must be a non-empty one-line string")
    problem = _check_template(value, allow=_DESCRIPTION_VARIABLES, in_command=False)
    if problem:
        raise ValueError(problem)
    return value.strip()


def _templates(raw: object, *, in_command: bool) -> dict[str, str]:
    """A template, or one per package manager (``{apt: .., dnf: ..}``), checked."""
    if isinstance(raw, str):
        templates = {"*": raw}
    elif isinstance(raw, dict):
        if not raw:
            raise ValueError(f"empty mapping; give a template for {', '.join(PACKAGE_MANAGERS)}")
        for k, t in raw.items():
            if k not in PACKAGE_MANAGERS:
                known = ", ".join(PACKAGE_MANAGERS)
                raise fail_at(f"unknown package manager {_short(k)} (known: {known})", k)
            if not isinstance(t, str):
                raise fail_at(f"must be a string, not {_type_name(t)}", k)
        templates = dict(raw)
    else:
        raise ValueError(f"must be a string or a mapping by package manager, not {_type_name(raw)}")
    allow = frozenset(VARIABLES) if in_command else frozenset(VARIABLES) - _COMMAND_ONLY
    for k, t in templates.items():
        at = () if k == "*" else (k,)
        if not t.strip():
            raise fail_at("empty template", *at)
        if "\n" in t.strip():
            raise fail_at(
                "must be one line (use a folded block scalar '>-' for long commands)", *at
            )
        problem = _check_template(t, allow=allow, in_command=in_command)
        if problem:
            raise fail_at(problem, *at)
    return templates


def _when(value: object) -> object:
    if value is None or isinstance(value, dict):
        return value
    known = ", ".join(_WhenDoc.model_fields)
    if value != "minor_changes":
        raise ValueError(
            f"unknown condition {_short(value)} (a string may only be 'minor_changes'; "
            f"or a mapping with {known})"
            if isinstance(value, str)
            else f"must be 'minor_changes' or a mapping, not {_type_name(value)}"
        )
    return {"minor_changes": True}


class _WhenDoc(FileModel):
    checksums: Flag | None = None
    minor_changes: Flag | None = None
    per_minor_repo: Flag | None = None
    role: Literal["control-plane", "worker"] | None = None
    strategy: Literal["per-hop", "drain-once"] | None = None


class _StepDoc(FileModel):
    name: Annotated[str, BeforeValidator(_step_name)]
    kind: vocab.StepKind
    description: Annotated[str, BeforeValidator(_description)]
    command: dict[str, str] = Field(None, validate_default=True)
    check: dict[str, str] = Field(None, validate_default=True)
    sudo: StrictBool = Field(None, validate_default=True)
    params: dict[str, Any] = Field(None, validate_default=True)
    retry_safe: Flag = False
    timeout: float = Field(None, validate_default=True)
    when: Annotated[_WhenDoc | None, BeforeValidator(_when)] = None

    @field_validator("command", "check", "sudo", mode="before")
    @classmethod
    def _shell_only(cls, value: object, info: ValidationInfo) -> object:
        kind = info.data.get("kind")
        field = info.field_name
        if kind is None:
            return {} if field != "sudo" else True  # the kind's own error comes first
        if kind != vocab.StepKind.SHELL:
            if value is not None:
                how = (
                    "upgrader runs it itself"
                    if kind == vocab.StepKind.ETCD_SNAPSHOT
                    else "through the API"
                )
                raise ValueError(f"only for kind shell ({kind.value}: {how})")
            return {} if field != "sudo" else True
        if field == "sudo":
            return True if value is None else value
        if value is None:
            if field == "command":
                raise ValueError("missing (required for kind shell)")
            return {}
        return _templates(value, in_command=field == "command")

    @field_validator("params", mode="before")
    @classmethod
    def _params(cls, value: object, info: ValidationInfo) -> dict[str, Any]:
        kind = info.data.get("kind")
        if kind is None:
            return {}
        model = PARAMS[kind]
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ValueError(f"must be a mapping, not {_type_name(value)}")
        if value and model is _NoParams:
            if kind == vocab.StepKind.SHELL:
                raise ValueError("shell steps take no params (put values in the command template)")
            raise ValueError(f"kind {kind.value} takes no params")
        try:
            checked = model.model_validate(value).model_dump()
        except ValidationError as e:
            err = e.errors(include_url=False)[0]
            key = err["loc"][0]
            if err["type"] == "extra_forbidden":
                known = ", ".join(sorted(model.model_fields))
                raise fail_at(
                    f"unknown parameter {_short(key)} for kind {kind.value} (known: {known})", key
                ) from None
            want = model.model_fields[str(key)].description
            raise fail_at(f"must be {want}, not {_short(err['input'])}", key) from None
        return {**dict.fromkeys(value), **checked}  # the keys given first, as written

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: object, info: ValidationInfo) -> object:
        drain = info.data.get("kind") == vocab.StepKind.DRAIN and "params" in info.data
        limit = info.data["params"]["timeout"] if drain else None
        if value is None:
            return float(limit + 60) if limit is not None else DEFAULT_TIMEOUT
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"must be a number of seconds > 0, not {_short(value)}")
        if limit is not None and value < limit:
            raise ValueError(f"{value}s is shorter than the drain's params.timeout ({limit}s)")
        return value

    def spec(self, origin: str) -> StepSpec:
        w = self.when or _WhenDoc()
        return built_from(
            StepSpec,
            self,
            kind=self.kind.value,
            timeout=float(self.timeout),
            when=built_from(When, w),
            origin=origin,
        )


_Steps = list[_StepDoc] | None
_STEP_LISTS = ("steps", "pre", "post")  # the order their names are registered in


class _PhaseDoc(FileModel):
    description: StrictStr | None = None
    post: _Steps = None
    pre: _Steps = None
    steps: _Steps = None


def _phase_name(name: str) -> str:
    if name not in PHASES:
        raise ValueError(f"unknown phase (known: {', '.join(PHASES)})")
    return name


def _format_version(value: object) -> object:
    if value != FORMAT_VERSION or isinstance(value, bool):
        raise ValueError(f"unsupported playbook format {_short(value)} (this upgrader reads 1)")
    return value


class _PlaybookDoc(FileModel):
    """One playbook file (the module doc has the format)."""

    description: StrictStr | None = None
    phases: dict[Annotated[str, AfterValidator(_phase_name)], _PhaseDoc]
    version: Annotated[int, BeforeValidator(_format_version)] = FORMAT_VERSION


def _problem(err: ErrorDetails) -> Problem | None:
    """A pydantic error in the playbook's words (None: the shared wording)."""
    loc: Loc = tuple(err["loc"])
    kind, value = err["type"], err.get("input")
    if kind == "extra_forbidden":
        # the key's depth says which mapping it is in: version | phases.P.k |
        # phases.P.steps[i].k | phases.P.steps[i].when.k
        depths: dict[int, type[FileModel]] = {3: _PhaseDoc, 5: _StepDoc, 6: _WhenDoc}
        model = depths.get(len(loc), _PlaybookDoc)
        known = ", ".join(sorted(model.model_fields))
        if model is _WhenDoc:
            return Problem(loc, f"unknown condition {_short(loc[-1])} (known: {known})")
        return Problem(loc, f"unknown field (known: {known})")
    if kind == "missing":
        return Problem(loc, "missing")
    if kind in ("literal_error", "enum"):
        choices = ", ".join(re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected"))))
        return Problem(loc, f"unknown {loc[-1]} {_short(value)} (known: {choices})")
    if kind == "bool_type":
        return Problem(loc, f"must be true or false, not {_short(value)}")
    if kind == "string_type":
        return Problem(loc, f"must be a string, not {_type_name(value)}")
    if kind == "list_type":
        return Problem(loc, f"must be a list of steps, not {_type_name(value)}")
    if kind in ("dict_type", "model_type"):
        what = (
            "a step must be a mapping" if loc and isinstance(loc[-1], int) else "must be a mapping"
        )
        return Problem(loc, f"{what}, not {_type_name(value)}")
    return None


def _read_document(c: _Ctx, text: str) -> _PlaybookDoc:
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        c.fail("", f"invalid YAML: {where}{e.problem or e}")
    except yaml.YAMLError as e:
        c.fail("", f"invalid YAML: {e}")
    if not isinstance(data, dict):
        c.fail("", f"top level must be a mapping with 'phases', not {_type_name(data)}")
    _scan_hidden(c, data, "")
    return validate(_PlaybookDoc, data, c.source, problems=(_problem,))


def parse_playbook(texts: Sequence[tuple[str, str]]) -> Playbook:
    """Build a Playbook from ``(source, text)`` pairs: the first is the base (it defines
    ``steps`` for every phase), the others may only add ``pre``/``post`` steps."""
    if not texts:
        raise ConfigError(f"playbooks: no {DEFAULT_FILE}")
    names: dict[str, dict[str, str]] = {p: {} for p in PHASES}
    lists: dict[str, dict[str, tuple[StepSpec, ...]]] = {
        p: dict.fromkeys(_STEP_LISTS, ()) for p in PHASES
    }
    descriptions: dict[str, str | None] = dict.fromkeys(PHASES)
    digest = hashlib.sha256()
    for index, (source, text) in enumerate(texts):
        name = PurePath(source).name  # not the directory: same content, same digest
        digest.update(f"{len(name)}:{name}:{len(text)}:".encode())
        digest.update(text.encode())
        c = _Ctx(source)
        doc = _read_document(c, text)
        for pname in PHASES:
            body = doc.phases.get(pname)
            base = f"phases.{pname}"
            if body is None:
                if index == 0 and pname not in OPTIONAL_PHASES:
                    c.fail(base, "missing (every phase needs its steps)")
                continue
            if index == 0:
                if not body.steps:
                    c.fail(f"{base}.steps", "missing or empty")
                descriptions[pname] = body.description
            else:
                for k in ("steps", "description"):
                    if k in body.model_fields_set:
                        c.fail(
                            f"{base}.{k}",
                            f"only {DEFAULT_FILE} defines a phase's {k}; "
                            "other files may add pre/post steps",
                        )
            for lname in _STEP_LISTS:
                for i, step in enumerate(getattr(body, lname) or ()):
                    spec = step.spec(f"{source}: {base}.{lname}[{i}]")
                    seen = names[pname]
                    if spec.name in seen:
                        c.fail(
                            f"{base}.{lname}[{i}].name",
                            f"duplicate step name {spec.name!r} (also {seen[spec.name]})",
                        )
                    seen[spec.name] = spec.origin
                    lists[pname][lname] += (spec,)
    return Playbook(
        phases={
            p: Phase(p, ls["steps"], pre=ls["pre"], post=ls["post"], description=descriptions[p])
            for p, ls in lists.items()
        },
        sources=tuple(s for s, _ in texts),
        digest=digest.hexdigest(),
    )


def default_playbook_dir() -> Path:
    """The packaged playbooks (``upgrader/playbooks``, a link to the repo's ``playbooks``)."""
    return Path(__file__).resolve().parent.parent / "playbooks"


def load_playbooks(directory: Path | None = None) -> Playbook:
    """Load and validate ``default.yaml`` and any other ``*.yaml`` of ``directory``
    (default: the packaged playbooks). Raises ConfigError naming the file and field."""
    d = directory if directory is not None else default_playbook_dir()
    if not d.is_dir():
        raise ConfigError(f"{d}: playbook directory not found")
    base = d / DEFAULT_FILE
    if not base.is_file():
        raise ConfigError(f"{base}: missing (a playbook directory needs {DEFAULT_FILE})")
    extra = sorted(
        p for p in d.iterdir() if p.suffix == ".yaml" and p.name != DEFAULT_FILE and p.is_file()
    )
    files = [base, *extra]
    texts: list[tuple[str, str]] = []
    for p in files:
        try:
            texts.append((str(p), p.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: cannot read: {e}") from None
    return parse_playbook(texts)
