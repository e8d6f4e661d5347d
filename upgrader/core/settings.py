"""How the inventory the user gave spells each native setting, for hints that say "set X".

Owns the table of native inventory settings and their Kubespray form (an ``upgrader_*``
variable in ``all.vars`` or, for what a node may override, in a host's or group's vars;
the Kubespray/Ansible variable of the same meaning; the command-line flag, if any), and
:class:`SettingHints`, which turns a native key into the words a fix hint uses:
``packages.release_checksums in the inventory`` for a native inventory,
``upgrader_packages_release_checksums in all.vars of the inventory`` for a Kubespray one.

Must not: read anything, or import the inventory package (the inventory imports this).
"""

from __future__ import annotations

from dataclasses import dataclass

FORM_NATIVE = "native"
FORM_KUBESPRAY = "kubespray"


@dataclass(frozen=True)
class Setting:
    """One native setting. ``key``: its dotted key (``ssh.user``), ``None`` for a per-node
    key only; ``node_field``: the ``nodes[]`` key host vars set (``user``); ``ansible``: the
    Kubespray variable with the same meaning (the ``upgrader_*`` one wins on one level)."""

    variable: str
    key: str | None = None
    node_field: str | None = None
    ansible: str | None = None
    flag: str | None = None
    meaning: str = ""


SETTINGS: tuple[Setting, ...] = (
    Setting("upgrader_cluster_name", "cluster.name", ansible="cluster_name",
            meaning="cluster name (state file, plans); else cluster_name, else the file name"),
    Setting("upgrader_kubeconfig_path", "kubeconfig.path", flag="--kubeconfig",
            meaning="kubeconfig file (else $KUBECONFIG, ~/.kube/config)"),
    Setting("upgrader_kubeconfig_context", "kubeconfig.context",
            meaning="context in that kubeconfig (else its current-context)"),
    Setting("upgrader_ssh_user", "ssh.user", "user", ansible="ansible_user",
            meaning="SSH user"),
    Setting("upgrader_ssh_port", "ssh.port", "port", ansible="ansible_port",
            meaning="SSH port"),
    Setting("upgrader_ssh_identity_file", "ssh.identity_file", "identity_file",
            ansible="ansible_ssh_private_key_file", meaning="SSH private key file"),
    Setting("upgrader_ssh_known_hosts", "ssh.known_hosts", flag="--known-hosts",
            meaning="known_hosts file (else ~/.ssh/known_hosts)"),
    Setting("upgrader_ssh_host_key_policy", "ssh.host_key_policy",
            meaning="strict or accept-new"),
    Setting("upgrader_ssh_sudo", "ssh.sudo", "sudo", ansible="ansible_become",
            meaning="run commands through sudo (true/false)"),
    Setting("upgrader_ssh_sudo_password_env", "ssh.sudo_password_env",
            meaning="NAME of the environment variable holding the sudo password"),
    Setting("upgrader_ssh_connect_timeout", "ssh.connect_timeout",
            meaning="seconds for TCP connect and SSH handshake"),
    Setting("upgrader_ssh_keepalive", "ssh.keepalive",
            meaning="seconds between SSH keepalives (0: none)"),
    Setting("upgrader_ssh_jump_host", "ssh.jump_host", "jump_host",
            ansible="the bastion group", meaning="user@host:port to jump through, or none"),
    Setting("upgrader_ssh_use_ssh_config", "ssh.use_ssh_config",
            meaning="honour ~/.ssh/config (true/false)"),
    Setting("upgrader_packages_manager", "packages.manager", "package_manager",
            meaning="apt, dnf, yum or dnf5"),
    Setting("upgrader_packages_repository", "packages.repository",
            meaning="pkgs.k8s.io, legacy or custom"),
    Setting("upgrader_packages_url_template", "packages.url_template",
            meaning="custom repository URL with {minor}"),
    Setting("upgrader_packages_mirror", "packages.mirror",
            meaning="https base URL standing for https://pkgs.k8s.io (a mirror)"),
    Setting("upgrader_packages_release_checksums", "packages.release_checksums",
            meaning="directory or https URL template of the release sha256 files"),
    Setting("upgrader_images_repository", "images.repository",
            meaning="registry[/path] of the control-plane images (kubeadm imageRepository)"),
    Setting("upgrader_kubeadm_patches", "kubeadm.patches", flag="--patches",
            meaning="directory of kubeadm patch files for the control-plane nodes"),
    Setting("upgrader_kubeadm_config", "kubeadm.config", flag="--kubeadm-config",
            meaning="an UpgradeConfiguration file (kubeadm 1.31+)"),
    Setting("upgrader_kubeadm_ignore_preflight_errors", "kubeadm.ignore_preflight_errors",
            flag="--ignore-preflight-errors",
            meaning="kubeadm --ignore-preflight-errors (a list or a comma-separated string)"),
    Setting("upgrader_kubeadm_etcd_upgrade", "kubeadm.etcd_upgrade", flag="--etcd-upgrade",
            meaning="false: kubeadm upgrade --etcd-upgrade=false"),
    Setting("upgrader_kubeadm_certificate_renewal", "kubeadm.certificate_renewal",
            flag="--certificate-renewal",
            meaning="false: kubeadm upgrade --certificate-renewal=false"),
    Setting("upgrader_drain_fallback", "drain.fallback", "drain.fallback",
            flag="--drain-fallback",
            meaning="none or delete (delete the pods a PodDisruptionBudget still refuses "
            "when --drain-timeout ran out)"),
    Setting("upgrader_drain_pod_selector", "drain.pod_selector", "drain.pod_selector",
            flag="--pod-selector",
            meaning="label selector: only the pods it matches are drained"),
    Setting("upgrader_workers_selector", "workers.selector", flag="--selector",
            meaning="label selector on the Node objects: the workers a run upgrades"),
    Setting("upgrader_workers_group_by", "workers.group_by", flag="--group-by",
            meaning="Node label whose value groups the workers (groups run side by side)"),
    Setting("upgrader_workers_order_by", "workers.order_by", flag="--order-by",
            meaning="Node label whose value orders the workers (then the name)"),
    Setting("upgrader_workers_max_unavailable_per_group", "workers.max_unavailable_per_group",
            flag="--max-unavailable-per-group",
            meaning="nodes of one group down at once (with group_by; default 1)"),
    Setting("upgrader_node_labels", None, "labels",
            meaning="free-form labels of the node (a mapping)"),
    Setting("upgrader_node_env", None, "node_env",
            meaning="environment of the node's commands (a mapping: http_proxy, ...)"),
)  # fmt: skip

BY_VARIABLE = {s.variable: s for s in SETTINGS}
BY_KEY = {s.key: s for s in SETTINGS if s.key is not None}
BY_NODE_FIELD = {s.node_field: s for s in SETTINGS if s.node_field is not None}


@dataclass(frozen=True)
class SettingHints:
    """The words for "where to set ``key``" in an inventory of ``form``.

    ``key`` is a native dotted key (``packages.release_checksums``) or, for what a node
    may set for itself, ``nodes[].<field>`` (``nodes[].package_manager``)."""

    form: str = FORM_NATIVE

    def where(self, key: str) -> str:
        node_field = key.removeprefix("nodes[].") if key.startswith("nodes[].") else None
        setting = BY_NODE_FIELD.get(node_field) if node_field else BY_KEY.get(key)
        if self.form != FORM_KUBESPRAY or setting is None:
            return self._native(key, node_field, setting)
        if node_field is not None:
            return f"{setting.variable} in the node's host vars (or all.vars) of the inventory"
        if setting.flag:
            return f"{setting.flag} (or {setting.variable} in all.vars of the inventory)"
        return f"{setting.variable} in all.vars of the inventory"

    @staticmethod
    def _native(key: str, node_field: str | None, setting: Setting | None) -> str:
        if node_field is not None:
            if setting is not None and setting.key is not None:
                return f"{setting.key} (or the node's {node_field}) in the inventory"
            return f"the node's {node_field} in the inventory"
        if setting is not None and setting.flag:
            return f"{key} in the inventory (or {setting.flag})"
        return f"{key} in the inventory"
