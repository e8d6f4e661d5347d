"""The project's vocabulary, each word defined once: phases, step kinds, worker strategies,
override flags and package managers, as ``StrEnum``s.

Owns the names and their spellings. Each member *is* its string (``Phase.WORKER ==
"worker"``), so the JSON of plans, facts and state files is unchanged, data loaded from
them compares equal, and a typo in code is an ``AttributeError`` instead of a silent
mismatch. Overrides are spelled as the operator types them (kubeadm's spelling for
kubeadm's).

Must not: hold behaviour (what a phase or kind does lives with the planner, the playbook
loader and the engine).
"""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    """A playbook phase, in the order a plan runs them (prestage first when present)."""

    FIRST_CONTROL_PLANE = "first-control-plane"
    CONTROL_PLANE = "control-plane"
    CONTROL_PLANE_KUBELET = "control-plane-kubelet"
    WORKER = "worker"
    PRESTAGE = "prestage"


class StepKind(StrEnum):
    """What a step is. ``shell`` runs its command over the node's transport;
    ``etcd-snapshot`` saves a snapshot on the node and copies it here (sha256 checked); the
    others are Kubernetes operations done through the API."""

    SHELL = "shell"
    CORDON = "cordon"
    DRAIN = "drain"
    UNCORDON = "uncordon"
    WAIT_READY = "wait-ready"
    WAIT_CONTROL_PLANE = "wait-control-plane"
    ETCD_SNAPSHOT = "etcd-snapshot"


#: The kinds the engine does through the Kubernetes API.
API_KINDS = frozenset(
    {
        StepKind.CORDON,
        StepKind.DRAIN,
        StepKind.UNCORDON,
        StepKind.WAIT_READY,
        StepKind.WAIT_CONTROL_PLANE,
    }
)


class Strategy(StrEnum):
    """How workers cross several hops: ``auto`` lets the planner choose ``drain-once`` (one
    drain for all hops) where the skew rules allow it, else ``per-hop``."""

    AUTO = "auto"
    PER_HOP = "per-hop"
    DRAIN_ONCE = "drain-once"


class Override(StrEnum):
    """A flag that lets a run past a finding that would otherwise block it."""

    FORCE = "--force"
    ALLOW_EXPERIMENTAL = "--allow-experimental-upgrades"
    ALLOW_RC = "--allow-release-candidate-upgrades"
    ALLOW_UNSUPPORTED = "--allow-unsupported"
    DELETE_EMPTYDIR = "--delete-emptydir-data"
    DISABLE_EVICTION = "--disable-eviction"
    DRAIN_FALLBACK_DELETE = "--drain-fallback delete"
    BREAK_LOCK = "--break-lock"


class PackageManager(StrEnum):
    """A node's package manager as facts report it; dnf5 runs as ``dnf`` (Fedora 41+)."""

    APT = "apt"
    DNF = "dnf"
    YUM = "yum"
    DNF5 = "dnf5"

    @property
    def program(self) -> str:
        return "dnf" if self is PackageManager.DNF5 else self.value

    @property
    def os_family(self) -> str:
        """The OS family whose packages it manages (the facts' ``os_family``)."""
        return "debian" if self is PackageManager.APT else "rhel"
