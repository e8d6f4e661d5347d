"""The loaded inventory: what the rest of upgrader asks about nodes and how to reach them.

Owns the ``Inventory`` object built from a validated ``InventoryDocument``: node lookups,
roles, the kubeconfig to use (explicit path, else ``$KUBECONFIG``'s first entry, else
``~/.kube/config``), package manager and repository per node, the merged ``SSHTarget``
per node, a fingerprint of the validated content for the state file, and how a hint
names a setting in the form of the file the user gave (``setting_hint``).

Must not: read the inventory file (``loader.py`` does), connect anywhere, or hold secrets.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from upgrader.core import nodeenv
from upgrader.core.model import NodesByRole
from upgrader.core.settings import SettingHints
from upgrader.errors import ConfigError
from upgrader.inventory.schema import InventoryDocument, NodeSpec
from upgrader.inventory.targets import SSHConfigFile, build_target
from upgrader.transport.base import SSHTarget


@dataclass(frozen=True)
class Repository:
    """Where kubeadm/kubelet/kubectl packages come from. ``url_template`` has ``{minor}``
    and is set only for the ``custom`` flavour."""

    flavour: str  # "pkgs.k8s.io" | "legacy" | "custom"
    url_template: str | None = None
    mirror: str | None = None  # stands for https://pkgs.k8s.io (flavour pkgs.k8s.io)

    def url_for(self, minor: str) -> str | None:
        """The custom repository URL for ``minor`` (``"1.29"``); ``None`` for other flavours."""
        if self.url_template is None:
            return None
        return self.url_template.format(minor=minor)


# Inventory keys that say how a run reports and when it may run, not what it changes: left
# out of the fingerprint and of the run's recorded inputs (a new window never blocks a resume).
RUN_ONLY_KEYS = frozenset({"notify", "window", "window_tz"})


class Inventory(NodesByRole):
    """A validated inventory. Build it with :func:`upgrader.inventory.load_inventory`."""

    def __init__(
        self,
        document: InventoryDocument,
        source_path: Path,
        ssh_config: SSHConfigFile | None = None,
        source_format: str = "native",
        label: str | None = None,
    ) -> None:
        self.document = document
        self.source_path = source_path
        self.source_format = source_format  # "native" | "kubespray"
        self._label = label or str(source_path)
        self._ssh_config_file = ssh_config
        self._ssh_config = ssh_config if document.ssh.use_ssh_config else None
        self._by_name = {n.name: n for n in document.nodes}
        # Merged once, so a bad ssh_config entry fails at load time, before any host is touched.
        self._targets = {
            n.name: build_target(
                n,
                document.ssh,
                self._ssh_config,
                self._label,
                source_format,
                env=nodeenv.merged(document.node_env, n.node_env),
            )
            for n in document.nodes
        }

    def __repr__(self) -> str:
        return f"Inventory({self.cluster_name!r}, {len(self.nodes)} nodes, {self._label!r})"

    # ---- hints -----------------------------------------------------------------------
    @property
    def setting_hints(self) -> SettingHints:
        """How fix hints name a setting in this file's form (native or Kubespray)."""
        return SettingHints(self.source_format)

    def setting_hint(self, key: str) -> str:
        """``packages.release_checksums`` -> where to set it in this file, in words:
        ``packages.release_checksums in the inventory`` or, for a Kubespray file,
        ``upgrader_packages_release_checksums in all.vars of the inventory``."""
        return self.setting_hints.where(key)

    # ---- nodes -----------------------------------------------------------------------
    @property
    def cluster_name(self) -> str:
        return self.document.cluster.name

    @property
    def nodes(self) -> tuple[NodeSpec, ...]:
        return self.document.nodes

    @property
    def first_control_plane(self) -> NodeSpec:
        """The control-plane node that runs ``kubeadm upgrade apply`` (first in the file)."""
        return self.control_planes[0]

    def node(self, name: str) -> NodeSpec:
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(self._by_name)
            raise ConfigError(
                f"{self._label}: nodes: no node named {name!r} (known: {known})"
            ) from None

    def _spec(self, node: NodeSpec | str) -> NodeSpec:
        return self.node(node) if isinstance(node, str) else self.node(node.name)

    def with_access(
        self, kubeconfig: Path | None = None, known_hosts: Path | None = None
    ) -> Inventory:
        """This inventory with the command line's ``--kubeconfig`` / ``--known-hosts`` in
        place of what the file says (``kubeconfig.path`` / ``ssh.known_hosts``, in a
        Kubespray file ``upgrader_kubeconfig_path`` / ``upgrader_ssh_known_hosts``) or
        leaves to ``$KUBECONFIG`` and ``~/.ssh``."""
        if kubeconfig is None and known_hosts is None:
            return self
        doc = self.document
        update: dict[str, Any] = {}
        if kubeconfig is not None:
            update["kubeconfig"] = doc.kubeconfig.model_copy(update={"path": kubeconfig})
        if known_hosts is not None:
            update["ssh"] = doc.ssh.model_copy(update={"known_hosts": known_hosts})
        return Inventory(
            doc.model_copy(update=update),
            self.source_path,
            self._ssh_config_file,
            self.source_format,
            self._label,
        )

    # ---- kubeconfig ------------------------------------------------------------------
    def kubeconfig_path(self) -> Path | None:
        """The explicit path, else the first entry of ``$KUBECONFIG``, else
        ``~/.kube/config``. ``None`` only when no home directory can be found."""
        if self.document.kubeconfig.path is not None:
            return self.document.kubeconfig.path
        for entry in os.environ.get("KUBECONFIG", "").split(os.pathsep):
            if entry.strip():
                return Path(entry.strip()).expanduser()
        try:
            return Path.home() / ".kube" / "config"
        except RuntimeError:
            return None

    @property
    def kubeconfig_hint(self) -> str | None:
        """Where to name a kubeconfig, for the error when the default one is missing
        (``None`` when the inventory or ``--kubeconfig`` named one)."""
        if self.document.kubeconfig.path is not None:
            return None
        return self.setting_hint("kubeconfig.path")

    @property
    def kubeconfig_context(self) -> str | None:
        return self.document.kubeconfig.context

    # ---- packages --------------------------------------------------------------------
    def package_manager_for(self, node: NodeSpec | str) -> str:
        spec = self._spec(node)
        return spec.package_manager or self.document.packages.manager

    @property
    def repository(self) -> Repository:
        packages = self.document.packages
        return Repository(packages.repository, packages.url_template, packages.mirror)

    @property
    def image_repository(self) -> str | None:
        """``images.repository``: where the site's control-plane images come from."""
        return self.document.images.repository

    # ---- node environment ------------------------------------------------------------
    def node_env_for(self, node: NodeSpec | str) -> tuple[tuple[str, str], ...]:
        """The node's ``node_env``: the inventory's, the node's own winning name by name."""
        return self._targets[self._spec(node).name].env

    @property
    def node_env_names(self) -> tuple[str, ...]:
        """Every name some node's commands get (sorted), for the plan: never the values."""
        return tuple(sorted({k for n in self.nodes for k, _ in self.node_env_for(n)}))

    def node_env_secrets(self) -> tuple[str, ...]:
        """The passwords the node_env URLs carry, to mask wherever text is kept or shown."""
        return tuple(
            dict.fromkeys(s for n in self.nodes for s in nodeenv.credentials(self.node_env_for(n)))
        )

    @property
    def release_checksums(self) -> str | None:
        """An https URL template or an absolute directory, as the inventory gave it."""
        return self.document.packages.release_checksums

    @property
    def kubeadm(self) -> Any:
        """The ``kubeadm:`` section (pass-through; :class:`schema.KubeadmSpec`)."""
        return self.document.kubeadm

    # ---- drain -----------------------------------------------------------------------
    def drain_settings(self, node: NodeSpec | str) -> tuple[tuple[str | None, str | None], ...]:
        """``(fallback, pod_selector)`` of the node's own ``drain:`` and of the inventory-wide
        one, in that order (None: not set there); a command-line flag goes between them."""
        own = self._spec(node).drain
        wide = self.document.drain
        return (
            (own.fallback, own.pod_selector) if own is not None else (None, None),
            (wide.fallback, wide.pod_selector),
        )

    @property
    def worker_choice(self) -> Any:
        """The ``workers:`` section (selector, grouping; :class:`schema.WorkersSpec`)."""
        return self.document.workers

    # ---- ssh -------------------------------------------------------------------------
    def ssh_target(self, node: NodeSpec | str) -> SSHTarget:
        """Inventory ``ssh`` defaults < ``~/.ssh/config`` for the address < node overrides."""
        return self._targets[self._spec(node).name]

    # ---- identity --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The validated document (defaults filled, paths absolute) as JSON-ready data."""
        data = self.document.model_dump(mode="json")
        if data.get("kubeadm") == type(self.document.kubeadm)().model_dump(mode="json"):
            del data["kubeadm"]  # unset: the fingerprint of an inventory without it holds
        if data.get("drain") == {"fallback": None, "pod_selector": None}:
            del data["drain"]  # likewise
        for n in data.get("nodes") or ():
            if isinstance(n, dict) and n.get("drain") is None:
                n.pop("drain", None)
        if data.get("workers") == type(self.document.workers)().model_dump(mode="json"):
            del data["workers"]
        # likewise the keys added later, when unset (an older run's fingerprint still holds)
        if data.get("packages", {}).get("mirror", 0) is None:
            del data["packages"]["mirror"]
        if data.get("images") == {"repository": None}:
            del data["images"]
        if data.get("node_env") == {}:
            del data["node_env"]
        for node in data.get("nodes", ()):
            if node.get("node_env") == {}:
                del node["node_env"]
        return data

    def fingerprint(self) -> str:
        """sha256 (hex) of the canonical JSON of the validated document: key order,
        comments and spelled-out defaults in the file do not change it."""
        doc = {k: v for k, v in self.to_dict().items() if k not in RUN_ONLY_KEYS}
        canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
