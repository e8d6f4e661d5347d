"""Cluster health gates: nodes, control-plane pods, etcd, a leftover lock, certificates.

Owns the findings a node's upgrade may not start under, and the "N consecutive passes"
rule (:class:`ConsecutivePasses`) behind ``--validate-count N``:

* ``NODE_NOT_READY`` (blocker) — a node whose Ready condition is not True;
* ``CONTROL_PLANE_POD_NOT_READY`` (blocker) — a kube-apiserver, kube-controller-manager,
  kube-scheduler or etcd mirror pod in kube-system that is not Ready;
* ``ETCD_UNHEALTHY`` (blocker) — ``etcdctl endpoint health`` in the etcd container of a
  control-plane node (``crictl exec``, :mod:`upgrader.core.etcd`) failed, or the etcd
  static pod has no running container; ``ETCD_HEALTH_UNKNOWN`` (warning) — it could not be
  run (no crictl, no etcd static pod, node unreachable);
* ``LOCK_HELD`` (blocker, passed by ``--break-lock``) — the ``kube-system/upgrader-lock``
  Lease is held by another run and not expired; ``LOCK_STALE`` (warning) — held, but
  expired: a run that crashed; ``apply`` takes it over;
* ``CERT_EXPIRED`` (blocker) / ``CERT_EXPIRING`` (warning, within 30 days) — certificates
  under ``/etc/kubernetes/pki`` (the gatherer's ``extra["certs"]``: ``openssl x509
  -enddate`` per file); ``CERT_EXPIRY_UNKNOWN`` (info) — none could be read on a
  control-plane node.

Node and pod inputs are API JSON (dicts); etcd results are :class:`CommandOutcome` values.

Must not: do I/O, or import paramiko, kubernetes, typer or rich.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from upgrader.core import etcd
from upgrader.core.checks import overridable
from upgrader.core.model import Facts, Finding, Severity
from upgrader.core.timestamps import parse_rfc3339
from upgrader.core.vocab import Override

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")
CERT_WARN_DAYS = 30

#: ``etcdctl endpoint health`` against the node's local member with kubeadm's
#: health-check client certificate, inside the etcd static pod's container (``crictl
#: exec``: kubeadm nodes have no etcdctl on the host). Run as root.
ETCD_HEALTH_COMMAND = etcd.HEALTH_COMMAND


# crictl's logrus warnings about its default endpoints (not about etcd)
_CRICTL_NOISE = re.compile(
    r'^time="[^"]*" level=(warning|error) msg="(runtime|image) connect|'
    r'^time="[^"]*" level=error msg="validate service connection'
)


def _one_line(text: str, limit: int = 240) -> str:
    s = " ".join(text.split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _condition(obj: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or ():
        if isinstance(c, Mapping) and c.get("type") == ctype:
            return c
    return None


# --------------------------------------------------------------------------- nodes, pods


def check_nodes_ready(nodes: Sequence[Mapping[str, Any]]) -> list[Finding]:
    """``NODE_NOT_READY`` for every Node object whose Ready condition is not True."""
    out: list[Finding] = []
    for n in nodes:
        name = str((n.get("metadata") or {}).get("name") or "?")
        c = _condition(n, "Ready")
        if c is not None and c.get("status") == "True":
            continue
        if c is None:
            why = "no Ready condition"
        else:
            why = f"Ready={c.get('status')}"
            if c.get("reason"):
                why += f" ({c['reason']})"
            if c.get("message"):
                why += f": {_one_line(str(c['message']), 160)}"
            if c.get("lastTransitionTime"):
                why += f", since {c['lastTransitionTime']}"
        out.append(
            Finding(
                "NODE_NOT_READY",
                Severity.BLOCKER,
                f"node {name} is not Ready: {why}",
                name,
                "bring the node back (kubelet, runtime, network) or remove it from the "
                "cluster (kubectl delete node) before upgrading",
            )
        )
    return out


def check_control_plane_pods(pods: Sequence[Mapping[str, Any]]) -> list[Finding]:
    """``CONTROL_PLANE_POD_NOT_READY`` for control-plane mirror pods (kube-system) that are
    not Ready."""
    out: list[Finding] = []
    for p in pods:
        md = p.get("metadata") or {}
        if md.get("namespace") != "kube-system":
            continue
        if MIRROR_ANNOTATION not in (md.get("annotations") or {}):
            continue
        component = (md.get("labels") or {}).get("component")
        if component not in COMPONENTS:
            continue
        node = (p.get("spec") or {}).get("nodeName")
        c = _condition(p, "Ready")
        if c is not None and c.get("status") == "True":
            continue
        phase = (p.get("status") or {}).get("phase") or "unknown phase"
        why = f"phase {phase}" + (f", Ready={c.get('status')}" if c is not None else "")
        if c is not None and c.get("reason"):
            why += f" ({c['reason']})"
        out.append(
            Finding(
                "CONTROL_PLANE_POD_NOT_READY",
                Severity.BLOCKER,
                f"{component} on {node} (pod kube-system/{md.get('name')}) is not Ready: {why}",
                str(node) if node else None,
                f"look at the static pod on {node}: crictl ps -a --name {component}; "
                f"crictl logs; /etc/kubernetes/manifests/{component}.yaml",
            )
        )
    return out


# --------------------------------------------------------------------------- etcd


@dataclass(frozen=True)
class CommandOutcome:
    """A command's result on a node, or why it could not run (``error``)."""

    exit_code: int | None
    output: str = ""
    error: str | None = None


def check_etcd(outcomes: Mapping[str, CommandOutcome]) -> list[Finding]:
    """Per control-plane node, the result of :data:`ETCD_HEALTH_COMMAND`."""
    out: list[Finding] = []
    for node, r in outcomes.items():
        if r.error is not None or r.exit_code is None:
            why = r.error or "the command did not finish"
            out.append(
                Finding(
                    "ETCD_HEALTH_UNKNOWN",
                    Severity.WARNING,
                    f"cannot check etcd on {node}: {_one_line(why)}",
                    node,
                    "check etcd by hand: etcdctl endpoint health (kubeadm's healthcheck-client "
                    "certificate)",
                )
            )
            continue
        text = "\n".join(line for line in r.output.splitlines() if not _CRICTL_NOISE.search(line))
        if r.exit_code in (etcd.RC_NO_CRICTL, etcd.RC_NO_STATIC_POD):
            why = (
                "crictl (cri-tools) is not installed there"
                if r.exit_code == etcd.RC_NO_CRICTL
                else "etcd is not a kubeadm static pod there (external etcd?)"
            )
            out.append(
                Finding(
                    "ETCD_HEALTH_UNKNOWN",
                    Severity.WARNING,
                    f"cannot check etcd on {node}: {why}",
                    node,
                    "check etcd by hand: etcdctl endpoint health in the etcd container "
                    "(crictl exec) or against the external etcd endpoints",
                )
            )
            continue
        healthy = r.exit_code == 0 and " is healthy" in text and " is unhealthy" not in text
        if healthy:
            continue
        detail = _one_line(text) or f"exit {r.exit_code}"
        out.append(
            Finding(
                "ETCD_UNHEALTHY",
                Severity.BLOCKER,
                f"etcd on {node} is not healthy (etcdctl endpoint health, exit {r.exit_code}): "
                f"{detail}",
                node,
                "restore etcd health first (member list, disk, certificates); never upgrade a "
                "control plane on an unhealthy etcd",
            )
        )
    return out


# --------------------------------------------------------------------------- lease


def check_lease(
    lease: Mapping[str, Any] | None,
    now: datetime,
    *,
    own_run_id: str | None = None,
    break_lock: bool = False,
) -> list[Finding]:
    """The ``upgrader-lock`` Lease as read (None: there is none)."""
    if not lease:
        return []
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity")
    if not holder:
        return []
    holder = str(holder)
    if own_run_id and holder.endswith("/" + own_run_id):
        return []
    renew = parse_rfc3339(spec.get("renewTime")) or parse_rfc3339(spec.get("acquireTime"))
    duration = spec.get("leaseDurationSeconds")
    dur = duration if isinstance(duration, int) and not isinstance(duration, bool) else 0
    expires = renew + timedelta(seconds=dur) if renew is not None else None
    when = f"last renewed {renew.isoformat()}" if renew is not None else "never renewed"
    if expires is None or expires <= now:
        return [
            Finding(
                "LOCK_STALE",
                Severity.WARNING,
                f"the kube-system/upgrader-lock Lease is still held by {holder} ({when}, "
                "expired): a run that stopped without releasing it",
                None,
                "apply takes an expired lock over; see `upgrader status` on that run's machine "
                "for nodes it may have left cordoned",
            )
        ]
    left = int((expires - now).total_seconds())
    return [
        overridable(
            "LOCK_HELD",
            f"another run holds the kube-system/upgrader-lock Lease: {holder} ({when}, "
            f"expires in {left}s unless renewed)",
            node=None,
            fix="wait for that run to finish; if its machine is gone, pass "
            f"{Override.BREAK_LOCK} to apply",
            flag=Override.BREAK_LOCK,
            given=break_lock,
        )
    ]


# --------------------------------------------------------------------------- certificates

_NOT_AFTER = re.compile(r"notAfter=(?P<date>.+?)\s*$")


@dataclass(frozen=True)
class CertDate:
    path: str
    not_after: datetime | None
    raw: str


def parse_cert_dates(text: str) -> list[CertDate]:
    """Lines ``<path> notAfter=Jan  2 03:04:05 2027 GMT`` (the fact script's ``certs``
    probe: ``openssl x509 -noout -enddate`` per file). Lines without a parsable date keep
    ``not_after`` None."""
    out: list[CertDate] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or " " not in line:
            continue
        path, rest = line.split(" ", 1)
        m = _NOT_AFTER.search(rest)
        when: datetime | None = None
        if m:
            raw = " ".join(m.group("date").split())
            for fmt in ("%b %d %H:%M:%S %Y %Z", "%b %d %H:%M:%S %Y"):
                try:
                    when = datetime.strptime(raw, fmt).replace(tzinfo=UTC)
                    break
                except ValueError:
                    continue
        out.append(CertDate(path, when, rest.strip()))
    return out


def check_certs(
    facts: Facts,
    now: datetime,
    *,
    days: int = CERT_WARN_DAYS,
    nodes: Iterable[str] | None = None,
) -> list[Finding]:
    """Certificates that expired or expire within ``days``, per node. Nodes whose facts
    have no ``certs`` key are skipped."""
    wanted = set(nodes) if nodes is not None else None
    out: list[Finding] = []
    for n in facts.nodes:
        if (wanted is not None and n.name not in wanted) or "certs" not in n.extra:
            continue
        text = n.extra.get("certs")
        dates = parse_cert_dates(text) if isinstance(text, str) else []
        known = [d for d in dates if d.not_after is not None]
        if not known:
            if n.is_control_plane and n.reachable:
                out.append(
                    Finding(
                        "CERT_EXPIRY_UNKNOWN",
                        Severity.INFO,
                        f"no certificate under /etc/kubernetes/pki could be read on {n.name} "
                        "(openssl missing, or no files)",
                        n.name,
                        "check by hand: kubeadm certs check-expiration",
                    )
                )
            continue
        expired = [d for d in known if d.not_after is not None and d.not_after <= now]
        soon = [
            d
            for d in known
            if d.not_after is not None and now < d.not_after <= now + timedelta(days=days)
        ]
        if expired:
            out.append(
                Finding(
                    "CERT_EXPIRED",
                    Severity.BLOCKER,
                    f"certificates on {n.name} have expired: "
                    + ", ".join(f"{d.path} ({d.not_after:%Y-%m-%d})" for d in expired),
                    n.name,
                    "renew them first: kubeadm certs renew all (on each control-plane node), "
                    "then restart the control-plane static pods",
                )
            )
        if soon:
            out.append(
                Finding(
                    "CERT_EXPIRING",
                    Severity.WARNING,
                    f"certificates on {n.name} expire within {days} days: "
                    + ", ".join(f"{d.path} ({d.not_after:%Y-%m-%d})" for d in soon),
                    n.name,
                    "kubeadm upgrade renews the control-plane certificates it manages unless "
                    "--certificate-renewal=false; renew the others (kubeadm certs renew) or "
                    "check after the run with kubeadm certs check-expiration",
                )
            )
    return out


# --------------------------------------------------------------------------- gate


def passed(findings: Iterable[Finding]) -> bool:
    """A gate passes when no finding is a blocker."""
    return not any(f.severity == Severity.BLOCKER for f in findings)


@dataclass
class ConsecutivePasses:
    """``--validate-count N``: the gate must pass ``required`` times in a row; any failure
    starts the count again."""

    required: int = 1
    streak: int = 0

    def __post_init__(self) -> None:
        if self.required < 1:
            raise ValueError("validate count must be at least 1")

    def record(self, findings: Iterable[Finding]) -> bool:
        """Count one evaluation; True once the streak reaches ``required``."""
        if passed(findings):
            self.streak += 1
        else:
            self.streak = 0
        return self.streak >= self.required
