"""Read the operator's kubeadm pass-through inputs from this machine (``--patches DIR``,
``--kubeadm-config FILE``) and check them with :mod:`upgrader.core.kubeadm_passthrough`.

Owns: reading the files (regular files only, no symlinks, no subdirectories, a size cap)
and turning the flag values into a :class:`KubeadmPassthrough`. Every problem is one
``ConfigError`` line naming the flag and the path, raised before any node is contacted.
Must not: reach a node, print anything.
"""

from __future__ import annotations

import stat
from pathlib import Path

from upgrader.core.kubeadm_passthrough import (
    MAX_TOTAL_BYTES,
    KubeadmPassthrough,
    check_patch_name,
    check_preflight_errors,
    check_upgrade_config,
)
from upgrader.errors import ConfigError


def _read_regular(path: Path, label: str) -> bytes:
    try:
        st = path.lstat()
    except OSError as exc:
        raise ConfigError(f"{label} {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{label} {path}: not a regular file (symlinks are refused)")
    if st.st_size > MAX_TOTAL_BYTES:
        raise ConfigError(f"{label} {path}: larger than {MAX_TOTAL_BYTES} bytes")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{label} {path}: {exc.strerror}") from None


def load_passthrough(
    patches: Path | None = None,
    config: Path | None = None,
    ignore_preflight_errors: str | None = None,
    etcd_upgrade: bool = True,
    certificate_renewal: bool = True,
    *,
    patches_label: str = "--patches",
    config_label: str = "--kubeadm-config",
    ignore_label: str = "--ignore-preflight-errors",
) -> KubeadmPassthrough:
    """The checked pass-through of the given flag (or inventory) values."""
    files: list[tuple[str, bytes]] = []
    if patches is not None:
        if not patches.is_dir() or patches.is_symlink():
            raise ConfigError(f"{patches_label} {patches}: not a directory")
        for entry in sorted(patches.iterdir()):
            problem = check_patch_name(entry.name)
            if problem is not None:
                raise ConfigError(f"{patches_label} {entry}: {problem}")
            files.append((entry.name, _read_regular(entry, patches_label)))
        if not files:
            raise ConfigError(f"{patches_label} {patches}: no patch files")
    text: bytes | None = None
    if config is not None:
        text = _read_regular(config, config_label)
        try:
            decoded = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{config_label} {config}: not UTF-8 text") from None
        check_upgrade_config(decoded, f"{config_label} {config}")
    if sum(len(d) for _, d in files) + len(text or b"") > MAX_TOTAL_BYTES:
        raise ConfigError(
            f"{patches_label}/{config_label}: the files together exceed {MAX_TOTAL_BYTES} bytes"
        )
    ignored: tuple[str, ...] = ()
    if ignore_preflight_errors:
        ignored = tuple(x.strip() for x in ignore_preflight_errors.split(",") if x.strip())
        check_preflight_errors(ignored, ignore_label)
    if config is not None and files:
        raise ConfigError(
            f"{config_label} {config}: kubeadm refuses --config beside --patches; set "
            "apply.patches.directory / node.patches.directory in the UpgradeConfiguration "
            f"to a directory on the nodes, or leave {config_label} out"
        )
    if config is not None and (not etcd_upgrade or not certificate_renewal):
        raise ConfigError(
            f"{config_label} {config}: set etcdUpgrade/certificateRenewal in the "
            "UpgradeConfiguration, not with --etcd-upgrade/--certificate-renewal "
            "(kubeadm refuses mixing --config with them)"
        )
    return KubeadmPassthrough(
        patches=tuple(files),
        patches_source=str(patches) if patches is not None else "",
        config=text,
        config_source=str(config) if config is not None else "",
        ignore_preflight_errors=ignored,
        etcd_upgrade=etcd_upgrade,
        certificate_renewal=certificate_renewal,
    )
