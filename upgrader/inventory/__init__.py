"""The inventory: which nodes make up the cluster and how to reach them.

Owns reading and validating ``inventory.yaml`` (native, or a Kubespray/Ansible YAML
inventory) into an immutable :class:`Inventory`. Re-exports the public API; the parts are
``schema`` (pydantic models), ``problems`` (one-line errors, cross-field rules),
``kubespray`` (Ansible YAML import), ``ssh_config`` (~/.ssh/config, each value labelled
host-specific or generic), ``targets`` (the precedence merge -> SSHTarget),
``model`` (the Inventory object) and ``loader`` (the file edge).

Must not: connect to nodes or the cluster, or hold secret values.
"""

from upgrader.inventory.loader import inventory_from_data, load_inventory
from upgrader.inventory.model import Inventory, Repository
from upgrader.inventory.schema import (
    ROLE_CONTROL_PLANE,
    ROLE_WORKER,
    ClusterSpec,
    InventoryDocument,
    KubeconfigSpec,
    NodeSpec,
    PackagesSpec,
    SSHDefaults,
)

__all__ = [
    "ROLE_CONTROL_PLANE",
    "ROLE_WORKER",
    "ClusterSpec",
    "Inventory",
    "InventoryDocument",
    "KubeconfigSpec",
    "NodeSpec",
    "PackagesSpec",
    "Repository",
    "SSHDefaults",
    "inventory_from_data",
    "load_inventory",
]
