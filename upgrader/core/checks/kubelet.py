"""Kubelet hardening: anonymous authentication, authorization mode, read-only port.

Owns reading a KubeletConfiguration (``/var/lib/kubelet/config.yaml``, the gatherer's
``NodeFacts.extra["kubelet_config"]``) and the kubelet flags that override it
(``/var/lib/kubelet/kubeadm-flags.env`` and ``/etc/default/kubelet`` or
``/etc/sysconfig/kubelet``: ``extra["kubelet_flags"]``), and the findings:

* ``KUBELET_ANONYMOUS_AUTH`` — ``authentication.anonymous.enabled: true``;
* ``KUBELET_AUTHORIZATION_MODE`` — ``authorization.mode`` other than ``Webhook``;
* ``KUBELET_READ_ONLY_PORT`` — ``readOnlyPort`` other than 0 (an unauthenticated port);
* ``KUBELET_CONFIG_UNREADABLE`` — the file could not be read or parsed;
* ``KUBELET_CONFIGMAP_INSECURE`` — the ``kube-system/kubelet-config`` ConfigMap, which
  ``kubeadm upgrade node`` writes to every node's config.yaml, has one of the above: a node
  hardened by hand loses it on upgrade.

Absent keys take the KubeletConfiguration v1beta1 file defaults (anonymous off, Webhook,
read-only port 0); command-line flags win over the file, as in the kubelet. Warnings by
default, blockers with ``--strict``; with ``--harden-kubelet`` they are information (the
run fixes them, see :data:`HARDEN_FLAG`).

Must not: do I/O, or import paramiko, kubernetes, typer or rich.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from upgrader.core.checks import strict_warning
from upgrader.core.model import Facts, Finding, Severity

CONFIG_PATH = "/var/lib/kubelet/config.yaml"
HARDEN_FLAG = "--harden-kubelet"

# KubeletConfiguration v1beta1 defaults for a config file (the flag defaults differ).
DEFAULT_ANONYMOUS = False
DEFAULT_AUTHZ = "Webhook"
DEFAULT_READ_ONLY_PORT = 0


class KubeletConfigError(ValueError):
    """A kubelet config that is not a YAML mapping."""


@dataclass(frozen=True)
class KubeletPosture:
    """The three settings, and where each came from (``file``, ``default``, ``flag``)."""

    anonymous_auth: bool
    authorization_mode: str
    read_only_port: int
    sources: Mapping[str, str]

    @property
    def problems(self) -> tuple[str, ...]:
        out = []
        if self.anonymous_auth:
            out.append("anonymous_auth")
        if self.authorization_mode != "Webhook":
            out.append("authorization_mode")
        if self.read_only_port != 0:
            out.append("read_only_port")
        return tuple(out)


def _get(doc: Mapping[str, Any], *path: str) -> Any:
    cur: Any = doc
    for p in path:
        if not isinstance(cur, Mapping) or p not in cur:
            return None
        cur = cur[p]
    return cur


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def parse_kubelet_flags(text: str | None) -> dict[str, str]:
    """``--name=value`` / ``--name value`` flags from env files such as
    ``KUBELET_KUBEADM_ARGS="--a=b --c=d"`` and ``KUBELET_EXTRA_ARGS=--x=y``; later ones win."""
    flags: dict[str, str] = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^(?:export\s+)?[A-Za-z_][A-Za-z0-9_]*=(.*)$", line)
        value = m.group(1) if m else line
        try:
            words = shlex.split(value)
        except ValueError:
            continue
        if len(words) == 1 and " " in words[0]:
            try:
                words = shlex.split(words[0])
            except ValueError:
                continue
        i = 0
        while i < len(words):
            w = words[i]
            if w.startswith("--"):
                name, eq, val = w[2:].partition("=")
                if not eq and i + 1 < len(words) and not words[i + 1].startswith("--"):
                    val = words[i + 1]
                    i += 1
                elif not eq:
                    val = "true"
                flags[name] = val
            i += 1
    return flags


def kubelet_posture(config_text: str, flags_text: str | None = None) -> KubeletPosture:
    """The effective settings. Raises :class:`KubeletConfigError` when the file is not a
    YAML mapping."""
    try:
        doc = yaml.safe_load(config_text) if config_text.strip() else {}
    except yaml.YAMLError as e:
        raise KubeletConfigError(f"not valid YAML: {' '.join(str(e).split())[:200]}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise KubeletConfigError("not a KubeletConfiguration mapping")
    sources: dict[str, str] = {}

    anon = _bool(_get(doc, "authentication", "anonymous", "enabled"))
    sources["anonymous_auth"] = "file" if anon is not None else "default"
    mode_raw = _get(doc, "authorization", "mode")
    mode = str(mode_raw) if isinstance(mode_raw, str) and mode_raw else None
    sources["authorization_mode"] = "file" if mode is not None else "default"
    port_raw = _get(doc, "readOnlyPort")
    port = port_raw if isinstance(port_raw, int) and not isinstance(port_raw, bool) else None
    sources["read_only_port"] = "file" if port is not None else "default"

    flags = parse_kubelet_flags(flags_text)
    if "anonymous-auth" in flags and _bool(flags["anonymous-auth"]) is not None:
        anon = _bool(flags["anonymous-auth"])
        sources["anonymous_auth"] = "flag --anonymous-auth"
    if flags.get("authorization-mode"):
        mode = flags["authorization-mode"]
        sources["authorization_mode"] = "flag --authorization-mode"
    if flags.get("read-only-port", "").isdigit():
        port = int(flags["read-only-port"])
        sources["read_only_port"] = "flag --read-only-port"
    return KubeletPosture(
        anonymous_auth=DEFAULT_ANONYMOUS if anon is None else anon,
        authorization_mode=DEFAULT_AUTHZ if mode is None else mode,
        read_only_port=DEFAULT_READ_ONLY_PORT if port is None else port,
        sources=sources,
    )


_CODES = {
    "anonymous_auth": "KUBELET_ANONYMOUS_AUTH",
    "authorization_mode": "KUBELET_AUTHORIZATION_MODE",
    "read_only_port": "KUBELET_READ_ONLY_PORT",
}


def _what(problem: str, p: KubeletPosture) -> str:
    if problem == "anonymous_auth":
        return "authentication.anonymous.enabled is true (anyone reaching port 10250 is served)"
    if problem == "authorization_mode":
        return (
            f"authorization.mode is {p.authorization_mode} (every authenticated request is "
            "allowed; Webhook asks the API server)"
        )
    return (
        f"readOnlyPort is {p.read_only_port} (an unauthenticated port exposing pods and "
        "metrics; 0 disables it)"
    )


def _fix(problem: str, source: str) -> str:
    setting = {
        "anonymous_auth": "authentication.anonymous.enabled: false",
        "authorization_mode": "authorization.mode: Webhook",
        "read_only_port": "readOnlyPort: 0",
    }[problem]
    where = f"{CONFIG_PATH} and the kube-system/kubelet-config ConfigMap"
    if source.startswith("flag"):
        where = f"the kubelet flags ({source.removeprefix('flag ')}) and {where}"
    return f"set {setting} in {where}, or pass {HARDEN_FLAG}"


def _severity_finding(
    code: str, message: str, node: str | None, fix: str, *, strict: bool, harden: bool
) -> Finding:
    if harden:
        return Finding(code, Severity.INFO, f"{message}; {HARDEN_FLAG} fixes it", node, fix)
    return strict_warning(code, message, node=node, fix=fix, strict=strict)


def check_kubelet(
    facts: Facts,
    *,
    nodes: Iterable[str] | None = None,
    strict: bool = False,
    harden: bool = False,
) -> list[Finding]:
    """Findings for the kubelet config of ``nodes`` (default: every node). Nodes whose facts
    carry no ``kubelet_config`` key at all (a hand-written facts file) are skipped."""
    wanted = set(nodes) if nodes is not None else None
    out: list[Finding] = []
    for n in facts.nodes:
        if (wanted is not None and n.name not in wanted) or not n.reachable:
            continue
        if "kubelet_config" not in n.extra:
            continue
        text = n.extra.get("kubelet_config")
        if not isinstance(text, str):
            out.append(
                Finding(
                    "KUBELET_CONFIG_UNREADABLE",
                    Severity.WARNING,
                    f"cannot read {CONFIG_PATH} on {n.name}: kubelet hardening not checked",
                    n.name,
                    "make the file readable by the SSH user",
                )
            )
            continue
        flags = n.extra.get("kubelet_flags")
        try:
            posture = kubelet_posture(text, flags if isinstance(flags, str) else None)
        except KubeletConfigError as e:
            out.append(
                Finding(
                    "KUBELET_CONFIG_UNREADABLE",
                    Severity.WARNING,
                    f"{CONFIG_PATH} on {n.name}: {e}",
                    n.name,
                    "fix the file (the kubelet would not start with it)",
                )
            )
            continue
        for problem in posture.problems:
            src = posture.sources.get(problem, "file")
            out.append(
                _severity_finding(
                    _CODES[problem],
                    f"kubelet on {n.name}: {_what(problem, posture)}",
                    n.name,
                    _fix(problem, src),
                    strict=strict,
                    harden=harden,
                )
            )
    return out


def check_kubelet_configmap(
    text: str | None, *, strict: bool = False, harden: bool = False
) -> list[Finding]:
    """The ``kubelet`` key of ``kube-system/kubelet-config`` (None: not read): what
    ``kubeadm upgrade node`` writes to each node."""
    if text is None:
        return []
    try:
        posture = kubelet_posture(text)
    except KubeletConfigError:
        return []
    if not posture.problems:
        return []
    what = "; ".join(_what(p, posture) for p in posture.problems)
    return [
        _severity_finding(
            "KUBELET_CONFIGMAP_INSECURE",
            "the kube-system/kubelet-config ConfigMap, which kubeadm upgrade writes to every "
            f"node's {CONFIG_PATH}: {what}",
            None,
            "fix the ConfigMap (kubectl -n kube-system edit configmap kubelet-config) so the "
            f"upgrade does not write it back, or pass {HARDEN_FLAG}",
            strict=strict,
            harden=harden,
        )
    ]
