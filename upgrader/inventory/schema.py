"""The native inventory document as pydantic models, and the value checks on its fields.

Owns the shape of ``inventory.yaml`` (see ``inventory.example.yaml`` and docs/CONTRACTS.md):
which keys exist, their types and defaults, and the per-field checks (node names, addresses,
user names, jump hosts, templates). Relative paths are resolved against the ``base_dir``
passed in the validation context; ``~`` is expanded.

Must not: read files, look at ``~/.ssh/config``, format error messages for the user (that is
``problems.py``), or check rules that span several fields or nodes (also ``problems.py``).
"""

from __future__ import annotations

import ipaddress
import re
import string
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
)

from upgrader.core import nodeenv

ROLE_CONTROL_PLANE = "control-plane"
ROLE_WORKER = "worker"

Role = Literal["control-plane", "worker"]
PackageManager = Literal["apt", "dnf", "yum", "dnf5"]
RepositoryFlavour = Literal["pkgs.k8s.io", "legacy", "custom"]
HostKeyPolicy = Literal["strict", "accept-new"]

# Kubernetes Node names are DNS-1123 subdomains (lowercase labels joined by dots).
_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
_DNS_SUBDOMAIN_RE = re.compile(rf"^{_DNS_LABEL}(?:\.{_DNS_LABEL})*$")
# Hostnames we dial: letters, digits, '-', '_' (ssh_config aliases use it), dot-separated.
_HOST_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME_RE = re.compile(rf"^{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?$")
_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CLUSTER_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9])?$")
_LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._/-]{0,251}[A-Za-z0-9])?$")
# Characters that must never reach a shell line or a repository file unquoted.
_URL_FORBIDDEN = set(" \t\r\n'\"`$;&|<>()\\*?!#")
_CHECKSUM_FIELDS = frozenset({"version", "minor", "arch", "binary"})
NODE_ENV_MAX = 64  # variables


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --------------------------------------------------------------------------- field checks


def check_node_name(value: str) -> str:
    if len(value) > 253 or not _DNS_SUBDOMAIN_RE.match(value):
        raise ValueError(
            f"{_short(value)} is not a DNS-1123 subdomain "
            "(a valid Kubernetes node name: lowercase letters, digits, '-' and '.')"
        )
    return value


def normalize_address(value: str) -> str:
    """An IPv4/IPv6 address (canonical form, brackets dropped) or a hostname (as given)."""
    candidate = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        pass
    last_label = value.rstrip(".").rsplit(".", 1)[-1]
    if len(value) > 253 or not _HOSTNAME_RE.match(value) or last_label.isdigit():
        raise ValueError(f"{_short(value)} is not an IPv4 address, IPv6 address or hostname")
    return value


def check_user(value: str) -> str:
    if not _USER_RE.match(value):
        raise ValueError(f"{_short(value)} is not a valid user name")
    return value


def check_env_name(value: str) -> str:
    # The value is never echoed: someone may have put the secret itself here.
    if not _ENV_NAME_RE.match(value):
        raise ValueError(
            "must name an environment variable (letters, digits, '_'), not hold the secret"
        )
    return value


def check_cluster_name(value: str) -> str:
    if not _CLUSTER_NAME_RE.match(value):
        raise ValueError(
            f"{_short(value)} is not a valid cluster name (letters, digits, '-', '_' and '.')"
        )
    return value


def check_context(value: str) -> str:
    if not value.strip() or not value.isprintable():
        raise ValueError(f"{_short(value)} is not a valid kubeconfig context name")
    return value


def parse_jump_host(value: str) -> tuple[str | None, str, int | None]:
    """``[user@]host[:port]`` (IPv6 in brackets) -> (user, host, port)."""
    user: str | None = None
    rest = value
    if "@" in rest:
        user, rest = rest.rsplit("@", 1)
        check_user(user)
    port: int | None = None
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise ValueError(f"{_short(value)} has an unclosed '[' (expected user@host:port)")
        host, tail = rest[1:end], rest[end + 1 :]
        if tail:
            if not tail.startswith(":"):
                raise ValueError(f"{_short(value)} is not of the form user@host:port")
            port = _parse_port(tail[1:], value)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{_short(value)}: {host!r} is not an IPv6 address") from None
    elif rest.count(":") == 1:
        host, port_text = rest.split(":")
        port = _parse_port(port_text, value)
    else:
        host = rest  # a bare IPv6 address has several ':' and no port
    if not host:
        raise ValueError(f"{_short(value)} has no host (expected user@host:port)")
    return user, normalize_address(host), port


def _parse_port(text: str, whole: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{_short(whole)}: port {text!r} is not a number from 1 to 65535")
    return int(text)


def check_jump_host(value: str) -> str:
    """One hop or a comma-separated chain (like OpenSSH's ProxyJump); ``none`` disables."""
    if value.lower() == "none":
        return "none"
    for hop in value.split(","):
        parse_jump_host(hop)
    return value


def _template_fields(value: str) -> set[str]:
    try:
        parsed = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise ValueError(f"{_short(value)} is not a valid template: {exc}") from None
    fields: set[str] = set()
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if spec or conversion:
            raise ValueError(f"{_short(value)}: write placeholders as plain {{{field}}}")
        fields.add(field)
    return fields


def _check_url_chars(value: str) -> None:
    bad = sorted(set(value) & _URL_FORBIDDEN)
    if bad:
        raise ValueError(f"{_short(value)} contains forbidden characters {''.join(bad)!r}")


def check_url_template(value: str) -> str:
    if not value.startswith(("https://", "http://")):
        raise ValueError(f"{_short(value)} must start with https:// or http://")
    _check_url_chars(value)
    fields = _template_fields(value)
    if fields != {"minor"}:
        raise ValueError(f"{_short(value)} must contain {{minor}} and no other placeholder")
    return value


def check_node_env_name(value: str) -> str:
    problem = nodeenv.name_problem(value)
    if problem:
        raise ValueError(f"{_short(value)} {problem}")
    return value


def check_node_env_value(value: str) -> str:
    problem = nodeenv.value_problem(value)  # never quotes the value: it may hold a password
    if problem:
        raise ValueError(f"a value {problem}")
    return value


def check_node_env(value: dict[str, str]) -> dict[str, str]:
    if len(value) > NODE_ENV_MAX:
        raise ValueError(f"at most {NODE_ENV_MAX} variables")
    return value


def check_mirror(value: str) -> str:
    """The base URL that stands for ``https://pkgs.k8s.io``: https only, no credentials,
    no query or fragment, no placeholder; the trailing ``/`` dropped."""
    if not value.startswith("https://"):
        raise ValueError(
            f"{_short(value)} must start with https:// (the repository key is fetched from "
            "it; plain http would let anyone on the path swap the key)"
        )
    _check_url_chars(value)
    rest = value[len("https://") :]
    host = rest.split("/", 1)[0]
    if "@" in host:
        raise ValueError(
            "must not carry credentials (user:password@): they would be written into the "
            "node's repository file; use apt's auth.conf or dnf's username/password instead"
        )
    if not host or any(c in value for c in "{}%") or "?" in rest or "#" in rest:
        raise ValueError(f"{_short(value)} is not a plain https://host[:port][/path] base URL")
    return value.rstrip("/")


_IMAGE_REPO_RE = re.compile(
    r"^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::[0-9]{1,5})?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)


def check_image_repository(value: str) -> str:
    """A registry with an optional path, as kubeadm's ``imageRepository`` takes it
    (``registry.example:5000/k8s``): no scheme, no tag, no trailing ``/``."""
    if len(value) > 255 or not _IMAGE_REPO_RE.match(value):
        raise ValueError(
            f"{_short(value)} is not an image repository (registry[:port][/path], lowercase, "
            "no https:// and no tag)"
        )
    return value


def resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    path = value.expanduser()
    if not path.is_absolute():
        path = Path(base or Path.cwd()) / path
    return Path(str(path))


def check_release_checksums(value: str, info: ValidationInfo) -> str:
    """An ``https://`` URL template ({version}, {minor}, {arch}, {binary}) or a directory."""
    if value.startswith("http://"):
        raise ValueError(f"{_short(value)}: checksums must come over https://")
    if value.startswith("https://"):
        _check_url_chars(value)
        unknown = _template_fields(value) - _CHECKSUM_FIELDS
        if unknown:
            raise ValueError(
                f"{_short(value)}: unknown placeholder {{{sorted(unknown)[0]}}} "
                "(allowed: {version}, {minor}, {arch}, {binary})"
            )
        return value
    if "\n" in value or "\x00" in value:
        raise ValueError(f"{_short(value)} is not a directory path")
    return str(resolve_path(Path(value), info))


def check_label_key(value: str) -> str:
    if not _LABEL_KEY_RE.match(value):
        raise ValueError(f"label key {_short(value)} is not valid (letters, digits, '-._/')")
    return value


def check_nonempty_path(value: object) -> object:
    if isinstance(value, str) and (not value.strip() or "\x00" in value or "\n" in value):
        raise ValueError(f"{_short(value)} is not a file path")
    return value


# --------------------------------------------------------------------------- types

Port = Annotated[int, Field(strict=True, ge=1, le=65535)]
StrictBool = Annotated[bool, Field(strict=True)]
NodeName = Annotated[str, AfterValidator(check_node_name)]
Address = Annotated[str, AfterValidator(normalize_address)]
UserName = Annotated[str, AfterValidator(check_user)]
JumpHost = Annotated[str, AfterValidator(check_jump_host)]
LabelKey = Annotated[str, AfterValidator(check_label_key)]
ResolvedPath = Annotated[Path, BeforeValidator(check_nonempty_path), AfterValidator(resolve_path)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClusterSpec(_Strict):
    name: Annotated[str, AfterValidator(check_cluster_name)]


class KubeconfigSpec(_Strict):
    path: ResolvedPath | None = None
    context: Annotated[str, AfterValidator(check_context)] | None = None


class SSHDefaults(_Strict):
    user: UserName | None = None
    port: Port = 22
    identity_file: ResolvedPath | None = None
    known_hosts: ResolvedPath | None = None  # None: ~/.ssh/known_hosts
    host_key_policy: HostKeyPolicy = "strict"
    sudo: StrictBool = True
    sudo_password_env: Annotated[str, AfterValidator(check_env_name)] | None = None
    connect_timeout: Annotated[float, Field(strict=True, gt=0, le=3600)] = 10.0
    keepalive: Annotated[int, Field(strict=True, ge=0, le=3600)] = 15
    jump_host: JumpHost | None = None
    use_ssh_config: StrictBool = True


class PackagesSpec(_Strict):
    manager: PackageManager = "apt"
    repository: RepositoryFlavour = "pkgs.k8s.io"
    url_template: Annotated[str, AfterValidator(check_url_template)] | None = None
    release_checksums: Annotated[str, AfterValidator(check_release_checksums)] | None = None
    # stands for https://pkgs.k8s.io in the per-minor repository lines (repository: pkgs.k8s.io)
    mirror: Annotated[str, AfterValidator(check_mirror)] | None = None


def _comma_list(value: Any) -> Any:
    """``"Swap,all"`` (a Kubespray variable is one string) -> ``("Swap", "all")``."""
    if isinstance(value, str):
        return tuple(x.strip() for x in value.split(",") if x.strip())
    return value


NodeEnvName = Annotated[str, AfterValidator(check_node_env_name)]
NodeEnvValue = Annotated[str, Field(strict=True), AfterValidator(check_node_env_value)]
NodeEnv = Annotated[dict[NodeEnvName, NodeEnvValue], AfterValidator(check_node_env)]

PreflightCheck = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")]


class KubeadmSpec(_Strict):
    """kubeadm pass-through (``--patches``, ``--kubeadm-config``, ...; a flag wins).
    The files are read and checked by ``upgrader.kubeadm_files`` when a plan is made."""

    patches: ResolvedPath | None = None
    config: ResolvedPath | None = None
    ignore_preflight_errors: Annotated[
        tuple[PreflightCheck, ...], BeforeValidator(_comma_list)
    ] = ()
    etcd_upgrade: StrictBool = True
    certificate_renewal: StrictBool = True


def check_drain_fallback(value: str) -> str:
    from upgrader.core.drain import check_fallback

    return check_fallback(value)


def check_pod_selector(value: str) -> str:
    """A Kubernetes label selector (``app=web,tier!=cache``); kept in its canonical form."""
    from upgrader.core.podselector import SelectorError, canonical

    try:
        return canonical(value)
    except SelectorError as e:
        raise ValueError(f"not a label selector: {e}") from None


class DrainSpec(_Strict):
    """How a node is drained beyond kubectl's flags: ``fallback`` (none | delete: delete the
    pods a PodDisruptionBudget still refuses once the drain timeout ran out) and
    ``pod_selector`` (only the pods this label selector matches are drained). Unset: the
    command line's ``--drain-fallback`` / ``--pod-selector``, else the inventory-wide
    ``drain:``, else none / every pod."""

    fallback: Annotated[str, Field(strict=True), AfterValidator(check_drain_fallback)] | None = None
    pod_selector: Annotated[str, Field(strict=True), AfterValidator(check_pod_selector)] | None = (
        None
    )


def _check_selector(value: str) -> str:
    from upgrader.core.labelselector import parse
    from upgrader.errors import ConfigError

    try:
        parse(value, "")
    except ConfigError as e:  # the loader names the field
        raise ValueError(str(e).removeprefix(": ")) from None
    return value


def _check_node_label_key(value: str) -> str:
    from upgrader.core.labelselector import check_key
    from upgrader.errors import ConfigError

    try:
        return check_key(value, "")
    except ConfigError as e:
        raise ValueError(str(e).removeprefix(": ")) from None


class WorkersSpec(_Strict):
    """Which workers a run upgrades and how they are grouped (``--selector``,
    ``--group-by``, ``--order-by``, ``--max-unavailable-per-group``; a flag wins)."""

    selector: Annotated[str, AfterValidator(_check_selector)] | None = None
    group_by: Annotated[str, AfterValidator(_check_node_label_key)] | None = None
    order_by: Annotated[str, AfterValidator(_check_node_label_key)] | None = None
    max_unavailable_per_group: Annotated[int, Field(strict=True, ge=1, le=100)] = 1


class ImagesSpec(_Strict):
    """Where the cluster's control-plane images come from (air-gapped sites): compared
    with the kubeadm-config ConfigMap's ``imageRepository``, which kubeadm uses."""

    repository: Annotated[str, AfterValidator(check_image_repository)] | None = None


class NodeSpec(_Strict):
    name: NodeName
    address: Address
    role: Role
    port: Port | None = None
    user: UserName | None = None
    identity_file: ResolvedPath | None = None
    package_manager: PackageManager | None = None
    sudo: StrictBool | None = None
    jump_host: JumpHost | None = None
    labels: dict[LabelKey, str] = Field(default_factory=dict)
    drain: DrainSpec | None = None
    # added to (and, name by name, over) the inventory's node_env for this node's commands
    node_env: NodeEnv = Field(default_factory=dict)

    @property
    def is_control_plane(self) -> bool:
        return self.role == ROLE_CONTROL_PLANE

    def __hash__(self) -> int:  # labels is a dict: hash what identifies the node
        return hash((self.name, self.address, self.role))


class InventoryDocument(_Strict):
    cluster: ClusterSpec
    kubeconfig: KubeconfigSpec = Field(default_factory=KubeconfigSpec)
    ssh: SSHDefaults = Field(default_factory=SSHDefaults)
    packages: PackagesSpec = Field(default_factory=PackagesSpec)
    kubeadm: KubeadmSpec = Field(default_factory=KubeadmSpec)
    drain: DrainSpec = Field(default_factory=DrainSpec)
    workers: WorkersSpec = Field(default_factory=WorkersSpec)
    images: ImagesSpec = Field(default_factory=ImagesSpec)
    # environment of every command upgrader runs on a node (proxies): see the README
    node_env: NodeEnv = Field(default_factory=dict)
    nodes: Annotated[tuple[NodeSpec, ...], Field(min_length=1)]
    # how the run reports and when it may run (apply's --notify / --window / --window-tz
    # add to these); not part of the run's fingerprint: changing them never blocks a resume
    notify: tuple[str, ...] = ()
    window: tuple[str, ...] = ()
    window_tz: str | None = None
