"""Post-flight: what a finished run must have left as it found it (beyond node versions and
cordons, which :func:`upgrader.apply.post_check` checks).

Owns :func:`pdb_regressions`: every PodDisruptionBudget that allowed a disruption before
the run must allow one again after it (the drained pods were recreated and became Ready).
A budget that allowed none before, or that is gone, is not a regression. And
:func:`addon_problems`: the CoreDNS and kube-proxy addons at the images of the target
(what the whole of ``kubeadm upgrade apply`` leaves, not only its first phases).

Must not: do I/O, or import paramiko, kubernetes, typer or rich.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def _key(pdb: Mapping[str, Any]) -> str:
    md = pdb.get("metadata") or {}
    return f"{md.get('namespace') or 'default'}/{md.get('name')}"


def _allowed(pdb: Mapping[str, Any]) -> int | None:
    v = (pdb.get("status") or {}).get("disruptionsAllowed")
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def pdb_regressions(
    before: Iterable[Mapping[str, Any]], after: Iterable[Mapping[str, Any]]
) -> list[str]:
    """One line per budget that allowed disruptions before and allows none now."""
    now = {_key(p): p for p in after}
    out: list[str] = []
    for b in before:
        was = _allowed(b)
        if was is None or was < 1:
            continue
        a = now.get(_key(b))
        if a is None:
            continue
        is_ = _allowed(a)
        if is_ is None or is_ < 1:
            st = a.get("status") or {}
            healthy = ""
            if st.get("currentHealthy") is not None and st.get("desiredHealthy") is not None:
                healthy = f"; {st['currentHealthy']} healthy, {st['desiredHealthy']} needed"
            out.append(
                f"PodDisruptionBudget {_key(b)} allowed {was} disruption(s) before the run and "
                f"{is_ if is_ is not None else 'an unknown number'} now{healthy}"
            )
    return out


def _tag(image: str) -> str:
    return image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""


def addon_problems(
    target: str,
    apiserver_images: Mapping[str, str],
    kube_proxy: str | None,
    coredns: str | None,
    coredns_expected: str | None,
) -> list[str]:
    """The kubeadm addons after a run that moved the control plane to ``target``: the
    ``kube-proxy`` DaemonSet at the target's tag and the ``coredns`` Deployment at the tag
    the target's kubeadm lists (``coredns_expected``, a full image reference; ``None``:
    not known, not compared). An addon the cluster does not have (``None``) is skipped, as
    kubeadm skips it. While some control plane's kube-apiserver is not at the target the
    addons legitimately wait (kubeadm >= 1.28, ``UnupgradedControlPlaneInstances``): no
    problem is reported then (the node check reports that control plane)."""
    if not apiserver_images or any(_tag(i) != target for i in apiserver_images.values()):
        return []
    out: list[str] = []
    hint = (
        f"kubeadm's addon phase did not finish: run `kubeadm upgrade apply {target}` again "
        "on the first control plane (it is idempotent)"
    )
    if kube_proxy is not None and _tag(kube_proxy) != target:
        out.append(f"kube-proxy DaemonSet runs {kube_proxy}, expected tag {target}; {hint}")
    if coredns is not None and coredns_expected is not None and coredns != coredns_expected:
        out.append(f"CoreDNS Deployment runs {coredns}, expected {coredns_expected}; {hint}")
    return out
