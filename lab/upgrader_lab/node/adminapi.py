"""How node tools talk to the lab's API server: plain HTTPS requests with the admin token.

Owns reading the API location from ``DIR/lab.json`` (url, CA file, token file), the
requests node tools make (read the kubeadm-config ConfigMap's version and
imageRepository, the nodes and mirror pods; POST the ``/_lab/v1/`` admin endpoints:
cluster version, addons, control-plane and kubelet restarts) and turning a failure into
the one-line text a Go client would print
(``Get "https://...": dial tcp ...: connect: connection refused``).

Must not: import the kubernetes client or anything heavy, or keep state between calls.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

# Annotations only: importing typing costs every simulated tool call several ms of
# start-up (mypy and ruff read TYPE_CHECKING by name).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# ssl/urllib are imported where used: most tool invocations never talk to the API.


class ApiError(Exception):
    """The API server could not be reached or refused; ``str()`` is a Go-like one-liner."""


class Api:
    def __init__(self, lab_dir: Path) -> None:
        try:
            lab = json.loads((lab_dir / "lab.json").read_text())
            api = lab["api"]
            self.url = str(api["url"]).rstrip("/")
            self.ca = str(api["ca"])
            self.token = Path(api["token_file"]).read_text().strip()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ApiError(f"the lab's API server is not configured ({exc})") from None
        self._ssl: Any = None

    def request(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        import ssl
        import urllib.error
        import urllib.request

        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=self.ca)
        url = self.url + path
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - https URL
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        verb = method.capitalize()
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._ssl) as resp:  # noqa: S310
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            with contextlib.suppress(ValueError, AttributeError):
                detail = str(json.loads(detail).get("message") or detail)
            raise ApiError(
                f"{detail.strip() or exc.reason} (HTTP {exc.code} from {verb} {path})"
            ) from None
        except OSError as exc:  # URLError and TimeoutError too
            raise ApiError(f'{verb} "{url}": {_transport_error(url, exc)}') from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    # ---- reads -----------------------------------------------------------------------
    def _cluster_configuration(self) -> str:
        cm = self.request("GET", "/api/v1/namespaces/kube-system/configmaps/kubeadm-config")
        return str(((cm or {}).get("data") or {}).get("ClusterConfiguration") or "")

    def cluster_version(self) -> str:
        text = self._cluster_configuration()
        m = re.search(r"^\s*kubernetesVersion:\s*[\"']?([^\s\"']+)", text, re.MULTILINE)
        if not m:
            raise ApiError("the kubeadm-config ConfigMap has no kubernetesVersion")
        return m.group(1)

    def image_repository(self) -> str:
        """The ClusterConfiguration's top-level ``imageRepository`` (kubeadm's default when
        unset)."""
        text = self._cluster_configuration()
        m = re.search(r"^imageRepository:\s*[\"']?([^\s\"']+)", text, re.MULTILINE)
        return m.group(1) if m else "registry.k8s.io"

    def nodes(self) -> list[dict[str, Any]]:
        data = self.request("GET", "/api/v1/nodes")
        return list((data or {}).get("items") or [])

    def mirror_pod_images(self, component: str) -> dict[str, str]:
        """Node name -> image of ``component``'s mirror pod there."""
        data = self.request(
            "GET", f"/api/v1/namespaces/kube-system/pods?labelSelector=component%3D{component}"
        )
        out: dict[str, str] = {}
        for pod in (data or {}).get("items") or []:
            node = (pod.get("spec") or {}).get("nodeName")
            containers = (pod.get("spec") or {}).get("containers") or []
            if node and containers:
                out[str(node)] = str(containers[0].get("image", ""))
        return out

    # ---- admin endpoints -------------------------------------------------------------
    def set_cluster_version(self, version: str) -> None:
        """kubeadm's upload-config: the ClusterConfiguration says ``version`` (addons stay)."""
        self.request("POST", "/_lab/v1/cluster/version", {"version": version, "addons": False})

    def upgrade_addon(self, addon: str, version: str) -> None:
        """kubeadm's addon phase for ``addon`` (``coredns`` or ``kube-proxy``)."""
        self.request("POST", "/_lab/v1/cluster/addons", {"version": version, "only": [addon]})

    def set_control_plane(self, node: str, version: str, image_repository: str) -> None:
        self.request(
            "POST",
            f"/_lab/v1/nodes/{node}/control-plane",
            {"version": version, "image_repository": image_repository},
        )

    def kubelet_restart(self, node: str, version: str, starts: bool = True) -> None:
        """The kubelet was restarted at ``version``; ``starts=False``: the new process exits
        at once (the node stops posting status)."""
        body: dict[str, Any] = {"version": version}
        if not starts:
            body["starts"] = False
        self.request("POST", f"/_lab/v1/nodes/{node}/kubelet-restart", body)


def _transport_error(url: str, exc: OSError) -> str:
    """Why a request to ``url`` got no answer, worded as kubectl's Go client words it."""
    import urllib.error

    if isinstance(exc, urllib.error.URLError):
        return _dial_error(url, exc.reason)
    if isinstance(exc, TimeoutError):
        return "net/http: request canceled (Client.Timeout exceeded)"
    return str(exc)


def _dial_error(url: str, reason: object) -> str:
    import ssl

    hostport = re.sub(r"^https?://", "", url).split("/", 1)[0]
    if isinstance(reason, ConnectionRefusedError):
        return f"dial tcp {hostport}: connect: connection refused"
    if isinstance(reason, ssl.SSLCertVerificationError):
        return "tls: failed to verify certificate: x509: certificate signed by unknown authority"
    if isinstance(reason, TimeoutError):
        return f"dial tcp {hostport}: i/o timeout"
    return str(reason)


def node_ready(node: dict[str, Any]) -> bool:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def is_control_plane(node: dict[str, Any]) -> bool:
    labels = (node.get("metadata") or {}).get("labels") or {}
    return "node-role.kubernetes.io/control-plane" in labels


def kubelet_version(node: dict[str, Any]) -> str:
    return str(((node.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion") or "")
