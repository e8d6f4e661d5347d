"""The simulated ``kubeadm``: version, upgrade plan/apply/node, config images pull.

Owns what kubeadm prints and refuses. The version-skew refusals of ``upgrade apply`` are
written here from kubeadm's own behaviour (``EnforceVersionPolicies`` in
``cmd/kubeadm/app/phases/upgrade/policy.go``: mandatory vs ``--force``-skippable errors,
the ``[upgrade/version] FATAL`` text), independently of upgrader's policy module, which
this simulator exists to test. ``upgrade apply`` runs kubeadm's phases in upstream order
(``cmd/kubeadm/app/cmd/upgrade/apply.go``, ``cmd/kubeadm/app/phases/upgrade/postupgrade.go``):
static pods (manifests rewritten, the API's mirror pods moved), upload-config (the
kubeadm-config ConfigMap), kubelet-config (the node's kubelet config, backed up into
``/etc/kubernetes/tmp/kubeadm-kubelet-config*``), bootstrap-token, the CoreDNS and
kube-proxy addons (from 1.28 only once every kube-apiserver runs this node's image; the
last ``upgrade node`` applies them then); a spec fault with ``after_phase`` stops it after
that phase. Flags are checked per command as cobra does (``unknown flag: --x``).
``config images list/pull`` use this kubeadm's own image list
(``cmd/kubeadm/app/images/images.go``) and record pulls in the node's image store
(``/var/lib/upgrader-lab/images.json``, read by crictl).

Must not: import upgrader's production code (``upgrader.core`` included).
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence

from upgrader_lab.node import args as argparse_
from upgrader_lab.node import tree
from upgrader_lab.node.adminapi import Api, ApiError, is_control_plane, kubelet_version, node_ready
from upgrader_lab.node.context import NodeContext

STACK_HINT = "To see the stack trace of this error execute with --v=5 or higher"
GO_VERSION = {
    24: "go1.19.13",
    25: "go1.20.10",
    26: "go1.21.5",
    27: "go1.21.9",
    28: "go1.20.11",
    29: "go1.21.13",
    30: "go1.22.12",
    31: "go1.22.12",
    32: "go1.23.6",
    33: "go1.24.0",
}

_VER_RE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:-((?:alpha|beta|rc)\.\d+))?(?:\+[0-9A-Za-z.\-]+)?$")


class Ver:
    """A semantic version as kubeadm's ``version.ParseSemantic`` sees it."""

    __slots__ = ("major", "minor", "patch", "pre", "text")

    def __init__(self, major: int, minor: int, patch: int, pre: str = "", text: str = "") -> None:
        self.major, self.minor, self.patch, self.pre, self.text = major, minor, patch, pre, text

    @classmethod
    def parse(cls, text: str) -> Ver:
        m = _VER_RE.match(text.strip())
        if not m:
            raise ValueError(f"could not parse {text!r} as version")
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4) or "", text)

    def _key(self) -> tuple[int, int, int, int, str, int]:
        if not self.pre:
            return (self.major, self.minor, self.patch, 1, "", 0)
        kind, num = self.pre.split(".")
        return (self.major, self.minor, self.patch, 0, kind, int(num))

    def less_than(self, other: Ver) -> bool:
        return self._key() < other._key()

    def at_least(self, other: Ver) -> bool:
        return not self.less_than(other)

    def __str__(self) -> str:
        pre = f"-{self.pre}" if self.pre else ""
        return f"v{self.major}.{self.minor}.{self.patch}{pre}"


# --------------------------------------------------------------------------- policy


def version_policy_errors(
    cluster: Ver,
    kubeadm: Ver,
    target: Ver,
    target_text: str,
    kubelets: list[str] | None,
    allow_experimental: bool,
    allow_rc: bool,
) -> tuple[list[str], list[str]]:
    """(mandatory, skippable) errors, in kubeadm's order and words."""
    mandatory: list[str] = []
    skippable: list[str] = []
    minimum = Ver(kubeadm.major, kubeadm.minor - 1, 0)
    if minimum.at_least(target):
        mandatory.append(
            f'Specified version to upgrade to "{target_text}" is equal to or lower than the '
            f'minimum supported version "{cluster.text or cluster}". Please specify a higher '
            "version to upgrade to"
        )
    if target.minor > cluster.minor + 1:
        err = (
            f'Specified version to upgrade to "{target_text}" is too high; kubeadm can upgrade '
            "only 1 minor version at a time"
        )
        (skippable if target.pre else mandatory).append(err)
    if target.minor < cluster.minor - 1:
        err = (
            f'Specified version to downgrade to "{target_text}" is too low; kubeadm can '
            "downgrade only 1 minor version at a time"
        )
        (skippable if target.pre else mandatory).append(err)
    if kubeadm.less_than(target):
        if target.minor > kubeadm.minor:
            err = (
                f'Specified version to upgrade to "{target_text}" is at least one minor release '
                f"higher than the kubeadm minor release ({target.minor} > {kubeadm.minor}). "
                "Such an upgrade is not supported"
            )
            (skippable if target.pre else mandatory).append(err)
        else:
            skippable.append(
                f'Specified version to upgrade to "{target_text}" is higher than the kubeadm '
                f'version "{kubeadm}". Upgrade kubeadm first using the tool you used to install '
                "kubeadm"
            )
    if kubeadm.major > target.major or kubeadm.minor > target.minor:
        skippable.append(
            f"Kubeadm version {kubeadm} can only be used to upgrade to Kubernetes version "
            f"{kubeadm.major}.{kubeadm.minor}"
        )
    if target.pre and not allow_experimental and not (target.pre.startswith("rc") and allow_rc):
        skippable.append(
            f'Specified version to upgrade to "{target_text}" is an unstable version and such '
            "upgrades weren't allowed via setting the --allow-*-upgrades flags"
        )
    if kubelets is not None:
        skew = 1 if kubeadm.minor <= 28 else 3
        too_old: list[str] = []
        for text in sorted(set(kubelets)):
            try:
                kv = Ver.parse(text)
            except ValueError:
                skippable.append(f"couldn't parse kubelet version {text}")
                too_old = []
                break
            if target.minor > kv.minor + skew:
                too_old.append(text)
        if too_old:
            skippable.append(
                "There are kubelets in this cluster that are too old that have these versions "
                f"[{' '.join(too_old)}]"
            )
    return mandatory, skippable


def _format_errs(errs: list[str]) -> str:
    return "".join(f"\t- {e}\n" for e in errs)


# --------------------------------------------------------------------------- helpers


class Fatal(Exception):
    """A kubeadm error: printed on stderr followed by the stack-trace hint, exit 1 (or
    the given status)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _repository(api: Api) -> str:
    try:
        return api.image_repository()
    except ApiError as exc:
        raise Fatal(f"[upgrade/config] FATAL: failed to get config map: {exc}") from None


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _self_version(ctx: NodeContext) -> Ver:
    text = os.environ.get("LAB_TOOL_VERSION") or ctx.installed_version("kubeadm") or "v0.0.0"
    return Ver.parse(text)


def _minor_table(table: dict[int, str], minor: int) -> str:
    return table.get(minor, table[max(table)] if minor > max(table) else table[min(table)])


def _build_info(version: Ver) -> dict[str, str]:
    return {
        "major": str(version.major),
        "minor": str(version.minor),
        "gitVersion": str(version),
        "gitCommit": _fake_commit(str(version)),
        "gitTreeState": "clean",
        "buildDate": "2023-11-15T16:56:18Z",
        "goVersion": _minor_table(GO_VERSION, version.minor),
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def _fake_commit(seed: str) -> str:
    import hashlib  # not in every tool call's imports (OpenSSL's start-up)

    return hashlib.sha1(seed.encode(), usedforsecurity=False).hexdigest()


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _api(ctx: NodeContext) -> Api:
    try:
        return Api(ctx.lab_dir)
    except ApiError as exc:
        raise Fatal(f"[upgrade/config] FATAL: {exc}") from None


def _require_kubeconfig(ctx: NodeContext, name: str) -> None:
    path = f"/etc/kubernetes/{name}"
    if not ctx.path(path).is_file():
        raise Fatal(
            f'couldn\'t create a Kubernetes client from file "{path}": failed to load admin '
            f"kubeconfig: open {path}: no such file or directory"
        )


def _read_config(api: Api, prefix: str) -> Ver:
    _out(f"[{prefix}] Reading configuration from the cluster...")
    _out(
        f"[{prefix}] FYI: You can look at this config file with "
        "'kubectl -n kube-system get cm kubeadm-config -o yaml'"
    )
    try:
        text = api.cluster_version()
    except ApiError as exc:
        raise Fatal(f"[{prefix}] FATAL: failed to get config map: {exc}") from None
    try:
        return Ver.parse(text)
    except ValueError:
        raise Fatal(f'[{prefix}] FATAL: couldn\'t parse kubernetesVersion "{text}"') from None


def _images(ctx: NodeContext, version: Ver, repository: str) -> list[str]:
    """This kubeadm's image list for ``version`` (``cmd/kubeadm/app/images/images.go``)."""
    return tree.kubeadm_images(str(_self_version(ctx)), str(version), repository)


def _stamp() -> str:
    return time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime())


def _upgrade_static_pods(
    ctx: NodeContext,
    version: Ver,
    address: str,
    renew: bool,
    etcd: bool,
    dry_run: bool,
    repository: str,
) -> None:
    """Rewrite this node's static pod manifests (backing the old ones up), kubeadm-style."""
    backup = f"/etc/kubernetes/tmp/kubeadm-backup-manifests-{_stamp()}"
    # external etcd (no etcd manifest): kubeadm leaves etcd alone
    etcd = etcd and ctx.path("/etc/kubernetes/manifests/etcd.yaml").is_file()
    if etcd and not dry_run:
        tree.write_file(
            ctx.path(f"/etc/kubernetes/tmp/kubeadm-backup-etcd-{_stamp()}/etcd/member/snap/db"),
            b"",
        )
    _out("[upgrade/etcd] Upgrading to TLS for etcd")
    components = (["etcd"] if etcd else []) + list(tree.CONTROL_PLANE_COMPONENTS)
    _out(
        "[upgrade/staticpods] Writing new Static Pod manifests to "
        f'"/etc/kubernetes/tmp/kubeadm-upgraded-manifests{int(time.time()) % 10**9}"'
    )
    for comp in components:
        manifest = f"/etc/kubernetes/manifests/{comp}.yaml"
        new_text = tree.manifest_text(comp, str(version), address, ctx.name, repository)
        _out(f'[upgrade/staticpods] Preparing for "{comp}" upgrade')
        old = ctx.path(manifest)
        try:
            old_text = old.read_text()
        except OSError:
            old_text = ""
        if old_text == new_text:
            _out(
                f"[upgrade/staticpods] Current and new manifests of {comp} are equal, skipping "
                "upgrade"
            )
            continue
        if renew and comp == "kube-apiserver":
            for cert in (
                "apiserver",
                "apiserver-kubelet-client",
                "front-proxy-client",
                "apiserver-etcd-client",
            ):
                _out(f"[upgrade/staticpods] Renewing {cert} certificate")
        elif renew and comp in ("kube-controller-manager", "kube-scheduler"):
            conf = comp.split("-", 1)[1]
            _out(f"[upgrade/staticpods] Renewing {conf}.conf certificate")
        if not dry_run:
            if old_text:
                tree.write_file(ctx.path(f"{backup}/{comp}.yaml"), old_text, 0o600)
            tree.write_file(old, new_text, 0o600)
        _out(
            f'[upgrade/staticpods] Moved new manifest to "{manifest}" and backed up old manifest '
            f'to "{backup}/{comp}.yaml"'
        )
        _out("[upgrade/staticpods] Waiting for the kubelet to restart the component")
        _out("[upgrade/staticpods] This can take up to 5m0s")
        _out(f"[apiclient] Found 1 Pods for label selector component={comp}")
        _out(f'[upgrade/staticpods] Component "{comp}" upgraded successfully!')


def _write_kubelet_config(ctx: NodeContext, version: Ver, dry_run: bool) -> None:
    path = ctx.path("/var/lib/kubelet/config.yaml")
    try:
        text = path.read_text()
    except OSError:
        text = ""
    backup = f"/etc/kubernetes/tmp/kubeadm-kubelet-config{int(time.time()) % 10**10}/config.yaml"
    _out(f"[upgrade] Backing up kubelet config file to {backup}")
    if not dry_run:
        if text:
            tree.write_file(ctx.path(backup), text)
        tree.write_file(path, tree.set_kubelet_marker(text, str(version)))
    _out('[kubelet-start] Writing kubelet configuration to file "/var/lib/kubelet/config.yaml"')


def _pull_images(ctx: NodeContext, version: Ver, prefix: str, repository: str) -> None:
    _out(f"[{prefix}] Pulling images required for setting up a Kubernetes cluster")
    _out(
        f"[{prefix}] This might take a minute or two, depending on the speed of your internet "
        "connection"
    )
    _out(
        f"[{prefix}] You can also perform this action beforehand using 'kubeadm config images pull'"
    )
    _add_images(ctx, _images(ctx, version, repository), announce=False)


def _add_images(ctx: NodeContext, images: list[str], announce: bool) -> None:
    """Record ``images`` in the node's image store (``images.json``, read by crictl)."""
    pulled = set(ctx.read_json("images.json", []))
    for image in images:
        if image not in pulled:
            ctx.sleep("download")
            pulled.add(image)
        if announce:
            _out(f"[config/images] Pulled {image}")
    ctx.write_json("images.json", sorted(pulled))


# --------------------------------------------------------------------------- commands

_GLOBAL_VALUE = {
    "--v",
    "--kubeconfig",
    "--rootfs",
    "--config",
    "--ignore-preflight-errors",
    "--patches",
    "--skip-phases",
    "--output",
    "--kubernetes-version",
    "--cri-socket",
    "--image-repository",
    "--feature-gates",
}
_GLOBAL_BOOL = {
    "--yes",
    "--force",
    "--allow-experimental-upgrades",
    "--allow-release-candidate-upgrades",
    "--certificate-renewal",
    "--etcd-upgrade",
    "--dry-run",
    "--print-config",
    "--skip-headers",
    "--skip-log-headers",
    "--help",
    "--short",
    "--show-managed-fields",
}
_ALIASES = {"-y": "--yes", "-f": "--force", "-o": "--output", "-v": "--v", "-h": "--help"}


def cmd_version(p: argparse_.Parsed, ctx: NodeContext) -> int:
    v = _self_version(ctx)
    fmt = p.get("--output")
    if fmt == "short":
        _out(str(v))
    elif fmt == "json":
        _out(json.dumps({"clientVersion": _build_info(v)}, indent=2))
    elif fmt == "yaml":
        _out("clientVersion:")
        for key, value in _build_info(v).items():
            _out(f'  {key}: "{value}"' if key in ("major", "minor") else f"  {key}: {value}")
    elif fmt in (None, ""):
        info = _build_info(v)
        _out(
            "kubeadm version: &version.Info{"
            f'Major:"{info["major"]}", Minor:"{info["minor"]}", GitVersion:"{info["gitVersion"]}", '
            f'GitCommit:"{info["gitCommit"]}", GitTreeState:"clean", '
            f'BuildDate:"{info["buildDate"]}", '
            f'GoVersion:"{info["goVersion"]}", Compiler:"gc", Platform:"linux/amd64"}}'
        )
    else:
        raise Fatal(f"invalid output format: {fmt}")
    return 0


def _health_check(api: Api, ignored: set[str]) -> None:
    _out("[upgrade] Running cluster health checks")
    try:
        nodes = api.nodes()
    except ApiError as exc:
        raise Fatal(f"[upgrade/health] FATAL: {exc}") from None
    not_ready = sorted(
        str(n["metadata"]["name"]) for n in nodes if is_control_plane(n) and not node_ready(n)
    )
    if not_ready and not ({"all", "controlplanenodesready"} & ignored):
        raise Fatal(
            "[upgrade/health] FATAL: [preflight] Some fatal errors occurred:\n"
            "\t[ERROR ControlPlaneNodesReady]: there are NotReady control-planes in the cluster: "
            f"[{' '.join(not_ready)}]\n"
            "[preflight] If you know what you are doing, you can make a check non-fatal with "
            "`--ignore-preflight-errors=...`"
        )
    if not_ready:
        _out(
            "\t[WARNING ControlPlaneNodesReady]: there are NotReady control-planes in the "
            f"cluster: [{' '.join(not_ready)}]"
        )


def _ignored(p: argparse_.Parsed) -> set[str]:
    raw = p.get("--ignore-preflight-errors") or ""
    return {x.strip().lower() for x in raw.split(",") if x.strip()}


# What `kubeadm upgrade apply` prints in its bootstrap-token phase.
BOOTSTRAP_TOKEN_LINES = (
    "[bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to get nodes",
    "[bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to post CSRs in "
    "order for nodes to get long term certificate credentials",
    "[bootstrap-token] Configured RBAC rules to allow the csrapprover controller "
    "automatically approve CSRs from a Node Bootstrap Token",
    "[bootstrap-token] Configured RBAC rules to allow certificate rotation for all node "
    "client certificates in the cluster",
)


def _check_versions(
    api: Api, p: argparse_.Parsed, cluster: Ver, kubeadm: Ver, target: Ver, target_text: str
) -> None:
    """`upgrade apply`'s version policy: fatal errors stop it, the others unless --force."""
    try:
        kubelets: list[str] | None = [kubelet_version(n) for n in api.nodes()]
    except ApiError:
        kubelets = None
    mandatory, skippable = version_policy_errors(
        cluster,
        kubeadm,
        target,
        target_text,
        kubelets,
        p.has("--allow-experimental-upgrades"),
        p.has("--allow-release-candidate-upgrades"),
    )
    if mandatory:
        raise Fatal(
            "[upgrade/version] FATAL: the --version argument is invalid due to these fatal "
            f"errors:\n\n{_format_errs(mandatory)}\n"
            "Please fix the misalignments highlighted above and try upgrading again"
        )
    if skippable:
        if not p.has("--force"):
            raise Fatal(
                "[upgrade/version] FATAL: the --version argument is invalid due to these "
                f"errors:\n\n{_format_errs(skippable)}\nCan be bypassed if you pass the --force "
                "flag"
            )
        sys.stdout.write(
            f"[upgrade/version] Found {len(skippable)} potential version compatibility errors "
            f"but skipping since the --force flag is set: \n\n{_format_errs(skippable)}"
        )


def _upgrade_control_plane(
    ctx: NodeContext,
    p: argparse_.Parsed,
    api: Api,
    version: Ver,
    repository: str,
    command: str,
    prefix: str,
) -> None:
    """This node's static pods (and etcd, certificates, patches) to ``version``, then its
    mirror pods in the API (``prefix`` names the phase in a failure)."""
    dry_run = p.has("--dry-run")
    renew = p.flags.get("--certificate-renewal", "true") != "false"
    etcd = p.flags.get("--etcd-upgrade", "true") != "false"
    address = str(ctx.info.get("address", "127.0.0.1"))
    _upgrade_static_pods(ctx, version, address, renew, etcd, dry_run, repository)
    _apply_patches(ctx, p, command, dry_run)
    if not dry_run:
        try:
            api.set_control_plane(ctx.name, str(version), repository)
        except ApiError as exc:
            raise Fatal(f"{prefix} FATAL: failed to upgrade the control plane: {exc}") from None


def cmd_upgrade_apply(p: argparse_.Parsed, ctx: NodeContext) -> int:
    if len(p.positional) < 1:
        raise Fatal("[upgrade/version] FATAL: missing version argument")
    target_text = p.positional[0]
    try:
        target = Ver.parse(target_text)
    except ValueError:
        raise Fatal(
            f'[upgrade/version] FATAL: unable to parse version "{target_text}": '
            "expected a version like v1.28.4"
        ) from None
    if not target_text.startswith("v"):
        target_text = "v" + target_text
    dry_run = p.has("--dry-run")
    force = p.has("--force")
    api, cluster, kubeadm = _preflight(ctx, p)
    _out(f'[upgrade/version] You have chosen to change the cluster version to "{target_text}"')
    _out(f"[upgrade/versions] Cluster version: {cluster}")
    _out(f"[upgrade/versions] kubeadm version: {kubeadm}")
    _check_versions(api, p, cluster, kubeadm, target, target_text)
    if not (p.has("--yes") or force or dry_run):
        sys.stdout.write("[upgrade] Are you sure you want to proceed? [y/N]: ")
        sys.stdout.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            raise Fatal("won't proceed; the user didn't answer (Y|y) in order to continue")
    repository = _repository(api)
    if dry_run:
        _out("[dryrun] Would pull the required images (like 'kubeadm config images pull')")
    else:
        _pull_images(ctx, target, "upgrade/prepull", repository)
    phases = _Phases(ctx, p, "apply")
    phases.done("preflight")
    _out(
        "[upgrade/apply] Upgrading your Static Pod-hosted control plane to version "
        f'"{target_text}" '
        "(timeout: 5m0s)..."
    )
    _upgrade_control_plane(ctx, p, api, target, repository, "apply", "[upgrade/apply]")
    phases.done("control-plane")
    _out(
        '[upload-config] Storing the configuration used in ConfigMap "kubeadm-config" in the '
        '"kube-system" Namespace'
    )
    if not dry_run:
        phases.api_call("upload-config", lambda: api.set_cluster_version(str(target)))
    _out(
        '[kubelet] Creating a ConfigMap "kubelet-config" in namespace kube-system with the '
        "configuration for the kubelets in the cluster"
    )
    phases.done("upload-config")
    phases.done("kubeconfig")
    _write_kubelet_config(ctx, target, dry_run)
    phases.done("kubelet-config")
    for line in BOOTSTRAP_TOKEN_LINES:
        _out(line)
    phases.done("bootstrap-token")
    _addons(ctx, api, phases, target, dry_run, wait_for_all=kubeadm.minor >= ADDONS_WAIT_MINOR)
    phases.done("post-upgrade")
    _out()
    if dry_run:
        _out("[dryrun] Finished dryrunning successfully!")
        return 0
    _out(f'[upgrade/successful] SUCCESS! Your cluster was upgraded to "{target_text}". Enjoy!')
    _out()
    _out(
        "[upgrade/kubelet] Now that your control plane is upgraded, please proceed with "
        "upgrading your kubelets if you haven't already done so."
    )
    return 0


# kubeadm from 1.28 upgrades the CoreDNS/kube-proxy addons only once every control-plane
# instance runs the new kube-apiserver (``UnupgradedControlPlaneInstances``, in
# cmd/kubeadm/app/phases/upgrade/postupgrade.go): `upgrade apply` skips them while others
# lag and the `upgrade node` of the last control plane applies them.
ADDONS_WAIT_MINOR = 28


class _Phases:
    """The phases of one `kubeadm upgrade apply/node` run, and the spec's ``after_phase``
    faults: after the named phase the command stops with the fault's exit status, the way
    kubeadm's workflow stops at a failing phase (``error execution phase ...``)."""

    def __init__(self, ctx: NodeContext, p: argparse_.Parsed, command: str) -> None:
        self.ctx = ctx
        self.line = " ".join(["kubeadm", "upgrade", command, *p.positional])

    def done(self, phase: str) -> None:
        fault = self.ctx.take_fault(self.line, phase=phase)
        if fault is None:
            return
        message = fault.get("stderr") or f"upgrader lab fault after phase {phase}"
        raise Fatal(f"error execution phase {phase}: {message}", int(fault.get("exit") or 1))

    @staticmethod
    def api_call(phase: str, call: Callable[[], None]) -> None:
        try:
            call()
        except ApiError as exc:
            raise Fatal(f"error execution phase {phase}: {exc}") from None


def _unupgraded_control_planes(api: Api, node: str) -> list[str]:
    """Control-plane nodes whose kube-apiserver image differs from this node's."""
    try:
        images = api.mirror_pod_images("kube-apiserver")
    except ApiError as exc:
        raise Fatal(
            "failed to determine whether all the control plane instances have been upgraded: "
            f"failed to list kube-apiserver Pod from cluster: {exc}"
        ) from None
    mine = images.get(node)
    if mine is None:
        raise Fatal(f"cannot find kube-apiserver image for current control plane instance {node}")
    return sorted(n for n, image in images.items() if image != mine)


def _addons(
    ctx: NodeContext, api: Api, phases: _Phases, version: Ver, dry_run: bool, wait_for_all: bool
) -> None:
    for addon, label in (("coredns", "CoreDNS"), ("kube-proxy", "kube-proxy")):
        if wait_for_all and not dry_run:
            lagging = _unupgraded_control_planes(api, ctx.name)
            if lagging:
                _out(
                    "[upgrade/addons] skip upgrade addons because control plane instances "
                    f"[{' '.join(lagging)}] have not been upgraded"
                )
                phases.done(f"addon/{addon}")
                continue
        if not dry_run:
            phases.api_call(
                f"addon/{addon}", functools.partial(api.upgrade_addon, addon, str(version))
            )
        _out(f"[addons] Applied essential addon: {label}")
        phases.done(f"addon/{addon}")


def cmd_upgrade_node(p: argparse_.Parsed, ctx: NodeContext) -> int:
    _require_kubeconfig(ctx, "kubelet.conf")
    api = _api(ctx)
    cluster = _read_config(api, "upgrade")
    kubeadm = _self_version(ctx)
    if kubeadm.minor > cluster.minor + 1:
        raise Fatal(
            "[upgrade/version] FATAL: this version of kubeadm only supports deploying clusters "
            f"with the control plane version >= {kubeadm.major}.{kubeadm.minor - 1}.0. "
            f"Current version: {cluster}"
        )
    if kubeadm.minor < cluster.minor or kubeadm.major != cluster.major:
        raise Fatal(
            f'[upgrade/version] FATAL: the cluster version "{cluster}" is newer than this kubeadm '
            f'("{kubeadm}"); upgrade kubeadm first using the tool you used to install kubeadm'
        )
    dry_run = p.has("--dry-run")
    _out("[preflight] Running pre-flight checks")
    phases = _Phases(ctx, p, "node")
    if ctx.is_control_plane:
        repository = _repository(api)
        if not dry_run:
            _pull_images(ctx, cluster, "preflight", repository)
        phases.done("preflight")
        _out(
            "[upgrade] Upgrading your Static Pod-hosted control plane instance to version "
            f'"{cluster}"...'
        )
        _upgrade_control_plane(ctx, p, api, cluster, repository, "node", "[upgrade]")
        _out("[upgrade] The control plane instance for this node was successfully updated!")
        phases.done("control-plane")
    else:
        _out("[preflight] Skipping prepull. Not a control plane node.")
        _out("[upgrade] Skipping phase. Not a control plane node.")
    _write_kubelet_config(ctx, cluster, dry_run)
    phases.done("kubelet-config")
    if ctx.is_control_plane and kubeadm.minor >= ADDONS_WAIT_MINOR:
        _addons(ctx, api, phases, cluster, dry_run, wait_for_all=True)
    _out("[upgrade] The configuration for this node was successfully updated!")
    _out(
        "[upgrade] Now you should go ahead and upgrade the kubelet package using your package "
        "manager."
    )
    return 0


def _preflight(ctx: NodeContext, p: argparse_.Parsed) -> tuple[Api, Ver, Ver]:
    """`upgrade apply` and `upgrade plan`'s start: the admin kubeconfig, the cluster's
    version from kubeadm-config, the health checks; then this kubeadm's own version."""
    _require_kubeconfig(ctx, "admin.conf")
    api = _api(ctx)
    _out("[preflight] Running pre-flight checks.")
    cluster = _read_config(api, "upgrade/config")
    _health_check(api, _ignored(p))
    return api, cluster, _self_version(ctx)


def cmd_upgrade_plan(p: argparse_.Parsed, ctx: NodeContext) -> int:
    api, cluster, kubeadm = _preflight(ctx, p)
    _out("[upgrade] Fetching available versions to upgrade to")
    _out(f"[upgrade/versions] Cluster version: {cluster}")
    _out(f"[upgrade/versions] kubeadm version: {kubeadm}")
    _out(
        "[upgrade/versions] WARNING: Couldn't fetch latest stable version from the internet: "
        'unable to get URL "https://dl.k8s.io/release/stable.txt"'
    )
    _out(
        "[upgrade/versions] WARNING: Falling back to current kubeadm version as latest stable "
        "version"
    )
    target = Ver.parse(p.positional[0]) if p.positional else kubeadm
    _out(f"[upgrade/versions] Target version: {target}")
    _out(
        f"[upgrade/versions] Latest version in the v{cluster.major}.{cluster.minor} series: "
        f"{cluster}"
    )
    _out()
    if not cluster.less_than(target):
        _out("Awesome, you're up-to-date! Enjoy!")
        return 0
    try:
        kubelets = Counter(kubelet_version(n) for n in api.nodes())
    except ApiError as exc:
        raise Fatal(f"[upgrade/versions] FATAL: {exc}") from None
    cp_versions: dict[str, Counter[str]] = {}
    for comp in tree.CONTROL_PLANE_COMPONENTS:
        try:
            images = api.mirror_pod_images(comp)
        except ApiError:
            images = {}
        tags = Counter(img.rsplit(":", 1)[-1] for img in images.values() if ":" in img)
        cp_versions[comp] = tags or Counter({str(cluster): 1})
    _out(
        "Components that must be upgraded manually after you have upgraded the control plane "
        "with 'kubeadm upgrade apply':"
    )
    rows = [("COMPONENT", "CURRENT", "TARGET")]
    for i, (ver, count) in enumerate(sorted(kubelets.items(), key=lambda kv: kv[0], reverse=True)):
        rows.append(("kubelet" if i == 0 else "", f"{count} x {ver}", str(target)))
    _table(rows)
    _out()
    _out("Upgrade to the latest stable version:")
    _out()
    rows = [("COMPONENT", "CURRENT", "TARGET")]
    for comp, counts in cp_versions.items():
        for i, (ver, count) in enumerate(sorted(counts.items(), reverse=True)):
            current = ver if sum(counts.values()) == 1 else f"{count} x {ver}"
            rows.append((comp if i == 0 else "", current, str(target)))
    rows.append(("kube-proxy", str(cluster), str(target)))
    rows.append(("CoreDNS", tree.coredns_version(str(cluster)), tree.coredns_version(str(target))))
    rows.append(("etcd", tree.etcd_version(str(cluster)), tree.etcd_version(str(target))))
    _table(rows)
    _out()
    _out("You can now apply the upgrade by executing the following command:")
    _out()
    _out(f"\tkubeadm upgrade apply {target}")
    _out()
    if kubeadm.less_than(target):
        _out(f"Note: Before you can perform this upgrade, you have to update kubeadm to {target}.")
        _out()
    _out("_____________________________________________________________________")
    _out()
    _out(
        "The table below shows the current state of component configs as understood by this "
        "version of kubeadm."
    )
    _out(
        'Configs that have a "yes" mark in the "MANUAL UPGRADE REQUIRED" column require manual '
        "config upgrade or"
    )
    _out(
        "resetting to kubeadm defaults before a successful upgrade can be performed. The version "
        "to manually"
    )
    _out('upgrade to is denoted in the "PREFERRED VERSION" column.')
    _out()
    _table(
        [
            ("API GROUP", "CURRENT VERSION", "PREFERRED VERSION", "MANUAL UPGRADE REQUIRED"),
            ("kubeproxy.config.k8s.io", "v1alpha1", "v1alpha1", "no"),
            ("kubelet.config.k8s.io", "v1beta1", "v1beta1", "no"),
        ]
    )
    _out("_____________________________________________________________________")
    _out()
    return 0


def _table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        _out("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def cmd_images(p: argparse_.Parsed, ctx: NodeContext, action: str) -> int:
    """``kubeadm config images list|pull``: this kubeadm's image list, for
    ``--kubernetes-version`` (default: its own version; the real one asks dl.k8s.io for
    stable-1 and falls back to that), from ``--image-repository`` or the ``--config``
    ClusterConfiguration's ``imageRepository`` (default registry.k8s.io). It does not
    read the cluster's kubeadm-config."""
    docs = _config_documents(ctx, p.get("--config"))
    cluster_doc = next((d for d in docs if d.get("kind") == "ClusterConfiguration"), {})
    text = p.get("--kubernetes-version") or cluster_doc.get("kubernetesVersion")
    version = _self_version(ctx)
    if text:
        try:
            version = Ver.parse(text)
        except ValueError:
            raise Fatal(f'couldn\'t parse version "{text}"') from None
    repository = (
        p.get("--image-repository") or cluster_doc.get("imageRepository") or "registry.k8s.io"
    )
    images = _images(ctx, version, repository)
    if action == "list":
        for image in images:
            _out(image)
        return 0
    _add_images(ctx, images, announce=True)
    return 0


_TOP_KEY_RE = re.compile(r"^([A-Za-z]+):\s*[\"']?([^\s\"'#]*)")


def _config_documents(ctx: NodeContext, path: str | None) -> list[dict[str, str]]:
    """The top-level scalar keys of each YAML document of a ``--config`` file."""
    if not path:
        return []
    try:
        text = ctx.path(path).read_text() if path.startswith("/") else open(path).read()  # noqa: SIM115
    except OSError as exc:
        raise Fatal(
            f'unable to read config from "{path}" : open {path}: '
            f"{(exc.strerror or str(exc)).lower()}"
        ) from None
    docs: list[dict[str, str]] = [{}]
    for line in text.splitlines():
        if line.strip() == "---":
            docs.append({})
            continue
        m = _TOP_KEY_RE.match(line)
        if m and m.group(2):
            docs[-1][m.group(1)] = m.group(2)
    return [d for d in docs if d]


def _check_upgrade_config(ctx: NodeContext, p: argparse_.Parsed, kubeadm: Ver) -> None:
    """``--config`` of ``upgrade apply/node/plan``: from 1.31 an UpgradeConfiguration
    (``kubeadm.k8s.io/v1beta4``); other kubeadm documents are ignored with a warning
    (``documentMapToUpgradeConfiguration`` in cmd/kubeadm/app/util/config/upgradeconfiguration.go);
    from 1.32 a file without one is refused. Before 1.31 the UpgradeConfiguration kind
    does not exist."""
    path = p.get("--config")
    if not path:
        return
    docs = _config_documents(ctx, path)
    found_upgrade = False
    for d in docs:
        gvk = f"{d.get('apiVersion', '')}, Kind={d.get('kind', '')}"
        if d.get("kind") == "UpgradeConfiguration":
            if kubeadm.minor < 31 or d.get("apiVersion") != "kubeadm.k8s.io/v1beta4":
                raise Fatal(
                    f'no kind "UpgradeConfiguration" is registered for version '
                    f'"{d.get("apiVersion", "")}" in scheme '
                    '"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/scheme/scheme.go:31"'
                )
            found_upgrade = True
        elif kubeadm.minor >= 32:
            sys.stderr.write(
                f"[config] WARNING: Ignored configuration document with GroupVersionKind {gvk}\n"
            )
        elif kubeadm.minor == 31:
            sys.stderr.write(
                f"[config] WARNING: YAML document with GroupVersionKind {gvk} is deprecated for "
                "upgrade, please use config file with kind of UpgradeConfiguration instead \n"
            )
        else:
            sys.stderr.write(
                "[upgrade/config] WARNING: Usage of the --config flag with kubeadm config types "
                "for reconfiguring the cluster during upgrade is not recommended!\n"
            )
    if kubeadm.minor >= 32 and not found_upgrade:
        raise Fatal("no UpgradeConfiguration found in the supplied config")


_PATCH_TYPES = {
    "strategic": "application/strategic-merge-patch+json",
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
}


def _apply_patches(ctx: NodeContext, p: argparse_.Parsed, command: str, dry_run: bool) -> None:
    """``--patches DIR``: the static pod targets' patch files (kubeadm's
    ``target[suffix][+patchtype].extension``, cmd/kubeadm/app/util/patches/patches.go) are
    "applied" to the manifests just written: announced the way kubeadm does and recorded in
    the node's ``patches-applied.json`` (target, file, sha256 of what was read), the lab's
    record of what a patch did."""
    path = p.get("--patches")
    if not path:
        return
    applied = ctx.read_json("patches-applied.json", [])
    for entry in sorted(ctx.path(path).iterdir()):
        stem, _, ext = entry.name.rpartition(".")
        target_part, _, ptype = stem.partition("+")
        target = next(
            (
                t
                for t in sorted(("etcd", *tree.CONTROL_PLANE_COMPONENTS), key=len, reverse=True)
                if target_part.startswith(t)
            ),
            None,
        )
        if target is None or ext not in ("json", "yaml") or not entry.is_file():
            continue
        media = _PATCH_TYPES.get(ptype or "strategic")
        if media is None:
            raise Fatal(f'unknown patch type "{ptype}" for file "{entry.name}"')
        _out(f'[patches] Applied patch of type "{media}" to target "{target}"')
        if not dry_run:
            applied.append(
                {
                    "command": command,
                    "dir": path,
                    "file": entry.name,
                    "target": target,
                    "sha256": _sha256(entry.read_bytes()),
                }
            )
    if not dry_run:
        ctx.write_json("patches-applied.json", applied)


_MIXABLE_WITH_CONFIG = {"--config", "--ignore-preflight-errors", "--dry-run", "--kubeconfig"}
_MIXABLE_WITH_CONFIG |= {"--rootfs", "--v", "--skip-phases"}


def _check_mixed_arguments(p: argparse_.Parsed, kubeadm: Ver) -> None:
    """``kubeadm upgrade apply`` from 1.30 runs ``validation.ValidateMixedArguments``
    (cmd/kubeadm/app/apis/kubeadm/validation/validation.go): beside ``--config`` only
    --ignore-preflight-errors, --dry-run, --kubeconfig, --rootfs, --v and --skip-* pass;
    --yes joins them in 1.31 (kubernetes/kubeadm#3054, #3084)."""
    if "--config" not in p.flags or kubeadm.minor < 30:
        return
    allowed = _MIXABLE_WITH_CONFIG | ({"--yes"} if kubeadm.minor >= 31 else set())
    mixed = sorted(f.lstrip("-") for f in p.flags if f not in allowed)
    if mixed:
        raise Fatal(f"can not mix '--config' with arguments [{' '.join(mixed)}]")


def _check_patches(ctx: NodeContext, p: argparse_.Parsed) -> None:
    path = p.get("--patches")
    if path and not ctx.path(path).is_dir():
        raise Fatal(
            f'could not list patch files for path "{path}": open {path}: no such file or directory'
        )


# Flags per command, as cobra defines them (kubeadm's cmd/kubeadm/app/cmd/upgrade/*.go,
# cmd/kubeadm/app/cmd/config.go); anything else is "unknown flag".
_PERSISTENT = {"--v", "--rootfs", "--help", "--skip-headers", "--skip-log-headers"}
_COMMAND_FLAGS: dict[str, set[str]] = {
    "version": {"--output"},
    "upgrade apply": {
        "--allow-experimental-upgrades",
        "--allow-release-candidate-upgrades",
        "--certificate-renewal",
        "--config",
        "--dry-run",
        "--etcd-upgrade",
        "--force",
        "--ignore-preflight-errors",
        "--kubeconfig",
        "--patches",
        "--print-config",
        "--skip-phases",
        "--yes",
        "--feature-gates",
    },
    "upgrade node": {
        "--certificate-renewal",
        "--config",
        "--dry-run",
        "--etcd-upgrade",
        "--ignore-preflight-errors",
        "--kubeconfig",
        "--patches",
        "--skip-phases",
    },
    "upgrade plan": {
        "--allow-experimental-upgrades",
        "--allow-release-candidate-upgrades",
        "--config",
        "--ignore-preflight-errors",
        "--kubeconfig",
        "--output",
        "--print-config",
        "--show-managed-fields",
        "--feature-gates",
    },
    "config images pull": {
        "--config",
        "--cri-socket",
        "--feature-gates",
        "--image-repository",
        "--kubernetes-version",
        "--kubeconfig",
    },
    "config images list": {
        "--config",
        "--feature-gates",
        "--image-repository",
        "--kubernetes-version",
        "--kubeconfig",
        "--output",
        "--show-managed-fields",
    },
}


def _check_flags(command: str, p: argparse_.Parsed) -> None:
    allowed = _COMMAND_FLAGS.get(command, set()) | _PERSISTENT
    for name, value in p.flags.items():
        if name not in allowed:
            raise Fatal(f"unknown flag: {name}")
        if name in _GLOBAL_BOOL and value not in ("true", "false", "1", "0", "t", "f"):
            raise Fatal(
                f'invalid argument "{value}" for "{name}" flag: strconv.ParseBool: parsing '
                f'"{value}": invalid syntax'
            )


def main(tool: str, args: list[str], ctx: NodeContext) -> int:
    p = argparse_.parse(args, _GLOBAL_VALUE, _GLOBAL_BOOL, _ALIASES)
    try:
        if p.unknown:
            raise Fatal(f"unknown flag: {p.unknown[0].split('=', 1)[0]}")
        if p.missing_value:
            raise Fatal(f"flag needs an argument: {p.missing_value}")
        words = p.positional
        if not words:
            _out("kubeadm: easily bootstrap a secure Kubernetes cluster (upgrader lab simulation)")
            return 0
        head = words[0]
        if head == "version":
            _check_flags("version", p)
            return cmd_version(p, ctx)
        if head == "upgrade" and len(words) >= 2 and words[1] in ("apply", "node", "plan"):
            sub = argparse_.Parsed(words[2:], p.flags, p.unknown)
            _check_flags(f"upgrade {words[1]}", p)
            if words[1] == "apply":
                _check_mixed_arguments(p, _self_version(ctx))
            _check_patches(ctx, sub)
            _check_upgrade_config(ctx, sub, _self_version(ctx))
            if words[1] == "apply":
                return cmd_upgrade_apply(sub, ctx)
            if words[1] == "node":
                return cmd_upgrade_node(sub, ctx)
            return cmd_upgrade_plan(sub, ctx)
        if head == "config" and words[1:3] in (["images", "pull"], ["images", "list"]):
            _check_flags(f"config images {words[2]}", p)
            return cmd_images(argparse_.Parsed(words[3:], p.flags, p.unknown), ctx, words[2])
        raise Fatal(f'unknown command "{" ".join(words)}" for "kubeadm"')
    except Fatal as exc:
        sys.stdout.flush()
        sys.stderr.write(f"{exc}\n{STACK_HINT}\n")
        return exc.code
