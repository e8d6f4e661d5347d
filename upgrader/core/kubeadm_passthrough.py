"""kubeadm pass-through: the operator's ``--patches`` directory, ``--kubeadm-config``
UpgradeConfiguration, ``--ignore-preflight-errors``, ``--etcd-upgrade false`` and
``--certificate-renewal false``, as the flags and the file-copy step a plan carries.

Owns: the rules the inputs must follow (patch file names as kubeadm's
``cmd/kubeadm/app/util/patches/patches.go`` reads them: ``target[suffix][+patchtype].extension``;
a config file holding an ``UpgradeConfiguration`` of ``kubeadm.k8s.io/v1beta4``), where the
files go on a node (:data:`REMOTE_DIR`, root's, 0700, files 0600), the shell-quoted flag
fragments for ``kubeadm upgrade apply|node|plan``, and the ``kubeadm-files`` step that
writes the files (base64 in the command, sha256-checked; its check is the same sha256 list).
Must not: read files of this machine (``upgrader.kubeadm_files`` does), run anything.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shlex
from dataclasses import dataclass

import yaml

from upgrader.core.model import Step
from upgrader.core.versions import KubeVersion
from upgrader.errors import ConfigError

REMOTE_DIR = "/etc/kubernetes/upgrader"
REMOTE_PATCHES = f"{REMOTE_DIR}/patches"
REMOTE_CONFIG = f"{REMOTE_DIR}/upgrade-config.yaml"
STEP_NAME = "kubeadm-files"
#: kubeadm's patch targets (patches.go knownTargets) and patch types / extensions.
PATCH_TARGETS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubeletconfiguration",
    "corednsdeployment",
)
PATCH_TYPES = ("strategic", "merge", "json")
PATCH_EXTENSIONS = ("json", "yaml")
_PATCH_RE = re.compile(
    r"^(?P<target>[a-z-]+?)(?P<suffix>[A-Za-z0-9_-]*)(?:\+(?P<type>[a-z]+))?\.(?P<ext>[a-z]+)$"
)
_PREFLIGHT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")
#: The UpgradeConfiguration kind exists from kubeadm 1.31 (kubeadm.k8s.io/v1beta4).
UPGRADE_CONFIG_MINOR = (1, 31)
UPGRADE_CONFIG_API = "kubeadm.k8s.io/v1beta4"
#: kubeadm (apply from 1.30: ``validation.ValidateMixedArguments``) refuses ``--config``
#: beside any flag but --ignore-preflight-errors, --dry-run, --kubeconfig, skip-* (and
#: --yes from 1.31): the override flags are then the UpgradeConfiguration's fields.
CONFIG_FIELD_OF_FLAG = {
    "--force": "forceUpgrade",
    "--allow-experimental-upgrades": "allowExperimentalUpgrades",
    "--allow-release-candidate-upgrades": "allowRCUpgrades",
}
#: The files travel base64 inside one SSH command line: kept well under its limits.
MAX_TOTAL_BYTES = 64 * 1024


def check_patch_name(name: str) -> str | None:
    """The problem with a patch file name, or ``None`` (kubeadm's format)."""
    m = _PATCH_RE.match(name)
    if m is None:
        return "not named target[suffix][+patchtype].extension"
    target = next(
        (t for t in sorted(PATCH_TARGETS, key=len, reverse=True) if name.startswith(t)), None
    )
    if target is None:
        return f"unknown target (one of {', '.join(PATCH_TARGETS)})"
    rest = name[len(target) :]
    stem, _, ext = rest.rpartition(".")
    suffix, _, ptype = stem.partition("+")
    if ext not in PATCH_EXTENSIONS:
        return f"extension .{ext} (kubeadm reads .json or .yaml)"
    if "+" in stem and ptype not in PATCH_TYPES:
        return f"patch type {ptype!r} (one of {', '.join(PATCH_TYPES)})"
    if suffix and not re.fullmatch(r"[A-Za-z0-9_-]+", suffix):
        return "suffix may hold only letters, digits, - and _"
    return None


def check_upgrade_config(text: str, source: str) -> None:
    """Raise one ConfigError line unless ``text`` is a YAML file whose documents hold an
    ``UpgradeConfiguration`` (``kubeadm.k8s.io/v1beta4``) and nothing kubeadm's upgrade
    ignores or refuses (a ClusterConfiguration, an InitConfiguration...)."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not YAML: {str(exc).splitlines()[0]}") from None
    if not docs:
        raise ConfigError(f"{source}: empty: an UpgradeConfiguration is expected")
    found = False
    for d in docs:
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: a document is not a mapping")
        kind = d.get("kind")
        if kind != "UpgradeConfiguration":
            raise ConfigError(
                f"{source}: kind {kind!r}: only an UpgradeConfiguration is passed to kubeadm "
                "upgrade (kubeadm 1.31+ ignores or refuses other kinds; a ClusterConfiguration "
                "change is not an upgrade setting)"
            )
        if d.get("apiVersion") != UPGRADE_CONFIG_API:
            raise ConfigError(
                f"{source}: apiVersion {d.get('apiVersion')!r}: UpgradeConfiguration is "
                f"{UPGRADE_CONFIG_API}"
            )
        found = True
    assert found


def apply_settings(text: bytes) -> dict[str, object]:
    """The ``apply:`` mapping of a (checked) UpgradeConfiguration."""
    for d in yaml.safe_load_all(text.decode("utf-8")):
        if isinstance(d, dict) and isinstance(d.get("apply"), dict):
            return dict(d["apply"])
    return {}


def check_preflight_errors(items: tuple[str, ...], source: str) -> None:
    for item in items:
        if item != "all" and not _PREFLIGHT_RE.match(item):
            raise ConfigError(f"{source}: {item!r} is not a preflight check name")


@dataclass(frozen=True)
class KubeadmPassthrough:
    """What the operator passes through to kubeadm. ``patches``: (file name, content)
    pairs, names checked; ``config``: the UpgradeConfiguration text, checked."""

    patches: tuple[tuple[str, bytes], ...] = ()
    patches_source: str = ""
    config: bytes | None = None
    config_source: str = ""
    ignore_preflight_errors: tuple[str, ...] = ()
    etcd_upgrade: bool = True
    certificate_renewal: bool = True

    @property
    def active(self) -> bool:
        return bool(
            self.patches
            or self.config is not None
            or self.ignore_preflight_errors
            or not self.etcd_upgrade
            or not self.certificate_renewal
        )

    @property
    def has_files(self) -> bool:
        return bool(self.patches) or self.config is not None

    def _common(self) -> list[str]:
        out: list[str] = []
        if self.config is not None:
            out.append(f"--config {shlex.quote(REMOTE_CONFIG)}")
        if self.ignore_preflight_errors:
            out.append(
                "--ignore-preflight-errors " + shlex.quote(",".join(self.ignore_preflight_errors))
            )
        return out

    def upgrade_flags(self) -> tuple[str, ...]:
        """For ``kubeadm upgrade apply`` and ``kubeadm upgrade node`` (both take all five)."""
        out = self._common()
        if self.patches:
            out.append(f"--patches {shlex.quote(REMOTE_PATCHES)}")
        if not self.etcd_upgrade:
            out.append("--etcd-upgrade=false")
        if not self.certificate_renewal:
            out.append("--certificate-renewal=false")
        return tuple(out)

    def plan_flags(self) -> tuple[str, ...]:
        """For ``kubeadm upgrade plan`` (it takes --config and --ignore-preflight-errors)."""
        return tuple(self._common())

    def _files(self) -> list[tuple[str, bytes]]:
        files = [(f"patches/{name}", data) for name, data in self.patches]
        if self.config is not None:
            files.append(("upgrade-config.yaml", self.config))
        return files

    def copy_step(self, hop: KubeVersion, node: str, phase: str) -> Step:
        """The step that writes the files into :data:`REMOTE_DIR` on ``node`` (root's,
        0700; files 0600; the patches directory holds exactly the operator's files)."""
        files = self._files()
        sums = " ".join(
            shlex.quote(f"{hashlib.sha256(data).hexdigest()}  {path}") for path, data in files
        )
        verify = f"cd {REMOTE_DIR} && printf '%s\\n' {sums} | sha256sum --status -c -"
        count = len(self.patches)
        check = (
            f'{verify} && [ "$(find {REMOTE_PATCHES} -mindepth 1 2>/dev/null | wc -l)" -eq '
            f"{count} ]"
        )
        parts = [
            "umask 077",
            f"mkdir -p {REMOTE_DIR}",
            f"chmod 0700 {REMOTE_DIR}",
            f"rm -rf {REMOTE_PATCHES}",
            f"rm -f {REMOTE_CONFIG}",
        ]
        if self.patches:
            parts.append(f"mkdir {REMOTE_PATCHES}")
        for path, data in files:
            encoded = base64.b64encode(data).decode("ascii")
            remote = shlex.quote(f"{REMOTE_DIR}/{path}")
            parts.append(f"printf %s {shlex.quote(encoded)} | base64 -d > {remote}")
        parts.append(verify)
        what = []
        if self.patches:
            what.append(f"{count} patch file{'s' if count != 1 else ''} to {REMOTE_PATCHES}")
        if self.config is not None:
            what.append(f"the UpgradeConfiguration to {REMOTE_CONFIG}")
        return Step(
            id=f"{hop}/{node}/{phase}/{STEP_NAME}",
            kind="shell",
            node=node,
            hop=str(hop),
            phase=phase,
            name=STEP_NAME,
            description=f"Copy {' and '.join(what)} on {node} (root's, 0700; sha256 checked)",
            command=" && ".join(parts),
            check=check,
            retry_safe=True,
            timeout=60.0,
        )
