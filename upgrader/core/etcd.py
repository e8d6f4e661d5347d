"""etcd on a kubeadm control plane: how upgrader reaches it, and when it cannot.

kubeadm installs no ``etcdctl`` on the host: etcd runs as a static pod
(``/etc/kubernetes/manifests/etcd.yaml``, ``cmd/kubeadm/app/phases/etcd/local.go``) whose
image holds ``etcdctl`` and ``etcdutl``; the node reaches the container with ``crictl``
(cri-tools, a dependency of the kubeadm package). Owns:

* :func:`container_shell`: the POSIX shell prelude (run as root) that finds the running
  ``etcd`` container with ``crictl ps`` on the CRI endpoint kubeadm gave the kubelet
  (``--container-runtime-endpoint`` in ``/var/lib/kubelet/kubeadm-flags.env``, so crictl
  does not guess), with distinct exit codes for "no crictl" (127), "no etcd static pod"
  (:data:`RC_NO_STATIC_POD`) and "no running container" (:data:`RC_NOT_RUNNING`);
* :data:`HEALTH_COMMAND`: ``etcdctl endpoint health`` through that container with kubeadm's
  health-check client certificate;
* :func:`snapshot_blockers`: the plan findings (``ETCD_SNAPSHOT_UNAVAILABLE``) when the
  facts show the snapshot cannot be taken (external etcd in kubeadm-config, no etcd mirror
  pod on the node, no crictl on the node), found before anything changes.

Must not: do I/O, or import paramiko, kubernetes, typer or rich.
"""

from __future__ import annotations

from upgrader.core.model import Facts, Finding, NodeFacts, Severity

MANIFEST = "/etc/kubernetes/manifests/etcd.yaml"
KUBEADM_FLAGS = "/var/lib/kubelet/kubeadm-flags.env"
ENDPOINT = "https://127.0.0.1:2379"
PKI = "/etc/kubernetes/pki/etcd"
RC_NO_CRICTL = 127
RC_NO_STATIC_POD = 3
RC_NOT_RUNNING = 4

ETCD_SNAPSHOT_UNAVAILABLE = "ETCD_SNAPSHOT_UNAVAILABLE"
SKIP_FLAG = "--skip-etcd-snapshot"

# Facts keys (NodeFacts.extra) the gatherer fills: "crictl" (True/False: crictl on PATH).
FACT_CRICTL = "crictl"


def certificate_flags(client: str) -> str:
    """etcdctl's TLS flags with kubeadm's CA and the ``client`` certificate (``server``,
    ``healthcheck-client``)."""
    return (
        f"--endpoints={ENDPOINT} --cacert={PKI}/ca.crt "
        f"--cert={PKI}/{client}.crt --key={PKI}/{client}.key"
    )


def container_shell() -> str:
    """Shell (as root) leaving the etcd container id in ``$c`` and ``crictl`` with the
    kubelet's runtime endpoint in ``$crictl``; exits 127/3/4 with one line on stderr."""
    return (
        'export PATH="$PATH:/usr/local/bin:/usr/bin:/usr/sbin:/bin:/sbin"\n'
        "command -v crictl >/dev/null 2>&1 || "
        "{ echo 'crictl: not found (cri-tools is not installed)' >&2; exit 127; }\n"
        f"if [ ! -f {MANIFEST} ]; then echo 'upgrader: no {MANIFEST}: etcd is not a "
        f"kubeadm static pod on this node (external etcd?)' >&2; exit {RC_NO_STATIC_POD}; fi\n"
        "ep=\"$(sed -n 's/.*--container-runtime-endpoint=\\([^\" ]*\\).*/\\1/p' "
        f'{KUBEADM_FLAGS} 2>/dev/null | head -n 1)"\n'
        'crictl="crictl${ep:+ --runtime-endpoint $ep}"\n'
        "c=\"$($crictl ps -q --name '^etcd$' --state running 2>/dev/null | head -n 1)\"\n"
        'if [ -z "$c" ]; then echo "upgrader: the etcd static pod has no running container '
        "(crictl ps --name '^etcd\\$' --state running)\" >&2; "
        f"exit {RC_NOT_RUNNING}; fi\n"
    )


#: ``etcdctl endpoint health`` inside the etcd container, with kubeadm's health-check
#: client certificate (mounted there from /etc/kubernetes/pki/etcd). Run as root.
HEALTH_COMMAND = (
    container_shell()
    + '$crictl exec "$c" etcdctl '
    + certificate_flags("healthcheck-client")
    + " --command-timeout=10s endpoint health\n"
)


def snapshot_blockers(facts: Facts, node: NodeFacts) -> list[Finding]:
    """Why the etcd snapshot cannot be taken on ``node`` (the first control plane), from
    the facts alone: external etcd, no etcd mirror pod, no crictl. Unknown facts (an
    older facts file) raise nothing."""
    reasons: list[str] = []
    external = facts.cluster.etcd_external
    if external:
        reasons.append(
            "kubeadm-config says etcd is external (etcd.external.endpoints: "
            f"{', '.join(external)}): there is no etcd on the control-plane nodes to "
            "snapshot from"
        )
    else:
        cp = node.control_plane
        if cp is not None and facts.cluster.etcd_external is not None and cp.etcd is None:
            reasons.append(
                f"node {node.name} has no etcd mirror pod in kube-system: etcd is not a "
                f"kubeadm static pod there ({MANIFEST})"
            )
        if node.extra.get(FACT_CRICTL) is False:
            reasons.append(
                f"crictl (cri-tools) is not installed on {node.name}: upgrader reaches the "
                "etcd container's etcdctl through it"
            )
    return [
        Finding(
            ETCD_SNAPSHOT_UNAVAILABLE,
            Severity.BLOCKER,
            f"cannot take the etcd snapshot before `kubeadm upgrade apply` on {node.name}: " + why,
            node=node.name,
            fix=f"take and verify an etcd snapshot yourself, then run again with {SKIP_FLAG}"
            + (
                " (for external etcd: etcdctl snapshot save against one of its endpoints)"
                if external
                else " (or install cri-tools on the node)"
                if "crictl" in why
                else ""
            ),
        )
        for why in reasons
    ]
