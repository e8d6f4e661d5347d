"""The simulated ``crictl`` (kubernetes-sigs/cri-tools) of a lab node.

Owns the node's containers as the CRI runtime would list them: one running container per
container of each static pod manifest in ``/etc/kubernetes/manifests`` (pod
``<name>-<node>`` in kube-system, as the kubelet names a static pod), with ids stable per
node, pod, container and image (a new image = a new container, as after ``kubeadm upgrade
apply`` rewrote the manifest), and each container's private root filesystem under
``DIR/nodes/NAME/containers/<id>/rootfs`` with the manifest's hostPath volumes mounted in.

Commands and output follow cri-tools v1.28 (``cmd/crictl/container.go``, ``sandbox.go``,
``image.go``, ``exec.go``, ``main.go``, ``util.go``):
``crictl --version`` (``crictl version v1.28.0``); ``ps [-a] [--name RE] [--state S]
[--id ID] [--pod ID] [-q] [-o json|table]`` (columns CONTAINER IMAGE CREATED STATE NAME
ATTEMPT POD ID POD, ids cut to 13 characters; ``-q`` prints full ids; ``-o json`` the CRI
``ListContainersResponse`` as jsonpb with EmitDefaults, indent 2); ``pods [-q]``;
``images [-q]``; ``pull IMAGE`` (``Image is up to date for sha256:...``); ``inspect ID``;
``exec [-i] [-t] [-s] CONTAINER CMD...``. ``exec`` runs the etcd image's ``etcdctl``,
``etcdutl`` (:mod:`upgrader_lab.node.etcd`) of the etcd version in the image tag; the
image is distroless, so any other command fails as containerd + runc report it
(``OCI runtime exec failed: exec failed: unable to start container process: exec: "sh":
executable file not found in $PATH: unknown``), and a command that exits non-zero makes
crictl exit 1 with ``command terminated with exit code N`` (client-go's stream error,
logged by ``logrus.Fatal``). Errors are logrus text lines (``time=... level=fatal
msg=...``: no terminal over SSH). Without ``/etc/crictl.yaml`` or ``--runtime-endpoint``
crictl warns that it uses the deprecated default endpoints and logs the failed dial of
the first one (dockershim), as the real one does on a kubeadm node.

Must not: import upgrader's production code, or change manifests (the kubelet's inputs).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from upgrader_lab.node import args as argparse_
from upgrader_lab.node import etcd as etcd_tools
from upgrader_lab.node import repo, tree
from upgrader_lab.node.context import NodeContext

# Annotations only: importing typing costs every simulated tool call several ms of
# start-up (mypy and ruff read TYPE_CHECKING by name).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MANIFESTS = "/etc/kubernetes/manifests"
CONFIG = "/etc/crictl.yaml"
DEFAULT_ENDPOINTS = (
    "unix:///var/run/dockershim.sock",
    "unix:///run/containerd/containerd.sock",
    "unix:///run/crio/crio.sock",
    "unix:///var/run/cri-dockerd.sock",
)
TRUNC = 13
_FIELD = re.compile(r"^\s*(\w+):\s*(.*)$")


def _logrus(level: str, msg: str) -> None:
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sys.stdout.flush()
    sys.stderr.write(f"time={json.dumps(ts)} level={level} msg={json.dumps(msg)}\n")
    sys.stderr.flush()


def _fatal(msg: str) -> int:
    _logrus("fatal", msg)
    return 1


# --------------------------------------------------------------------------- containers


@dataclass
class Container:
    id: str
    pod_id: str
    name: str
    pod_name: str
    namespace: str
    image: str
    created_ns: int
    pod_uid: str
    mounts: list[tuple[str, str]] = field(default_factory=list)  # (container path, node path)
    command: list[str] = field(default_factory=list)

    @property
    def image_id(self) -> str:
        return "sha256:" + hashlib.sha256(self.image.encode()).hexdigest()


def _yaml() -> Any:
    """PyYAML (the lab's Python has it: upgrader depends on it), found through ``site``
    even in a tool started without it (:func:`upgrader_lab.node.tree.tool_command`)."""
    tree.site_packages()
    import yaml

    return yaml


def _load_yaml(text: str) -> Any:
    return _yaml().safe_load(text)


def static_pod_containers(ctx: NodeContext) -> list[Container]:
    """The containers of the node's static pods, in manifest-file order."""
    out: list[Container] = []
    directory = ctx.path(MANIFESTS)
    try:
        names = sorted(p for p in os.listdir(directory) if p.endswith((".yaml", ".yml", ".json")))
    except OSError:
        return out
    cluster = str(ctx.info.get("cluster_name") or "lab")
    for fname in names:
        path = directory / fname
        try:
            doc = _load_yaml(path.read_text())
            created = int(path.stat().st_mtime * 1e9)
        except Exception:
            doc, created = None, 0
        if not isinstance(doc, dict) or doc.get("kind") != "Pod":
            continue
        meta = doc.get("metadata") or {}
        spec = doc.get("spec") or {}
        base = str(meta.get("name") or fname.rsplit(".", 1)[0])
        pod_name = f"{base}-{ctx.name}"
        namespace = str(meta.get("namespace") or "default")
        pod_key = f"{cluster}/{ctx.name}/{namespace}/{pod_name}"
        pod_id = hashlib.sha256(f"pod {pod_key}".encode()).hexdigest()
        volumes = {
            str(v.get("name")): str((v.get("hostPath") or {}).get("path"))
            for v in spec.get("volumes") or []
            if isinstance(v, dict) and isinstance(v.get("hostPath"), dict)
        }
        for c in spec.get("containers") or []:
            if not isinstance(c, dict):
                continue
            image = str(c.get("image") or "")
            cid = hashlib.sha256(f"container {pod_key}/{c.get('name')}/{image}".encode())
            mounts = [
                (str(m.get("mountPath")), volumes[str(m.get("name"))])
                for m in c.get("volumeMounts") or []
                if isinstance(m, dict) and str(m.get("name")) in volumes
            ]
            out.append(
                Container(
                    id=cid.hexdigest(),
                    pod_id=pod_id,
                    name=str(c.get("name")),
                    pod_name=pod_name,
                    namespace=namespace,
                    image=image,
                    created_ns=created,
                    pod_uid=hashlib.md5(pod_key.encode()).hexdigest(),  # noqa: S324 - an id
                    mounts=mounts,
                    command=[str(x) for x in c.get("command") or []],
                )
            )
    return out


class ContainerFS:
    """The container's view of paths: hostPath mounts go to the node's files, everything
    else to the container's own root (kept per container id, like a snapshotter layer)."""

    def __init__(self, ctx: NodeContext, container: Container) -> None:
        self.ctx = ctx
        self.container = container
        self.rootfs = ctx.node_dir / "containers" / container.id / "rootfs"
        for d in ("tmp", "var/lib", "etc"):
            (self.rootfs / d).mkdir(parents=True, exist_ok=True)

    def resolve(self, path: str) -> Path:
        text = posixpath.normpath(posixpath.join("/", path))
        best: tuple[str, str] | None = None
        for inside, host in self.container.mounts:
            inside = inside.rstrip("/") or "/"
            under = text == inside or text.startswith(inside + "/")
            if under and (best is None or len(inside) > len(best[0])):
                best = (inside, host)
        if best is not None:
            rest = text[len(best[0]) :]
            return self.ctx.path(best[1].rstrip("/") + rest)
        return self.rootfs / text.lstrip("/")


def etcd_version_of(image: str) -> str | None:
    """``registry.k8s.io/etcd:3.5.9-0`` -> ``3.5.9-0``."""
    name, _, tag = image.rpartition(":")
    if not tag or "/" in tag or not name.endswith("etcd"):
        return None
    return tag


# --------------------------------------------------------------------------- output


def _ago(created_ns: int) -> str:
    seconds = max(0, int(time.time() - created_ns / 1e9))
    if seconds < 1:
        return "Less than a second ago"
    if seconds < 60:
        return f"{seconds} seconds ago"
    minutes = seconds // 60
    if minutes < 60:
        return "About a minute ago" if minutes == 1 else f"{minutes} minutes ago"
    hours = minutes // 60
    if hours < 48:
        return "About an hour ago" if hours == 1 else f"{hours} hours ago"
    return f"{hours // 24} days ago"


def _table(rows: list[list[str]]) -> None:
    """tabwriter(minwidth 20, tabwidth 1, padding 3, ' ')."""
    if not rows:
        return
    widths = [max(20, max(len(r[i]) for r in rows) + 3) for i in range(len(rows[0]) - 1)]
    for r in rows:
        line = "".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + r[-1]
        sys.stdout.write(line + "\n")


def _labels(c: Container) -> dict[str, str]:
    return {
        "io.kubernetes.container.name": c.name,
        "io.kubernetes.pod.name": c.pod_name,
        "io.kubernetes.pod.namespace": c.namespace,
        "io.kubernetes.pod.uid": c.pod_uid,
    }


def _container_json(c: Container) -> dict[str, Any]:
    return {
        "id": c.id,
        "podSandboxId": c.pod_id,
        "metadata": {"name": c.name, "attempt": 0},
        "image": {"image": c.image_id, "annotations": {}},
        "imageRef": c.image_id,
        "state": "CONTAINER_RUNNING",
        "createdAt": str(c.created_ns),
        "labels": _labels(c),
        "annotations": {
            "io.kubernetes.container.hash": c.id[:8],
            "io.kubernetes.container.restartCount": "0",
            "io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
            "io.kubernetes.container.terminationMessagePolicy": "File",
            "io.kubernetes.pod.terminationGracePeriod": "30",
        },
    }


# --------------------------------------------------------------------------- commands

_PS_VALUE = {"--name", "--state", "--id", "--pod", "--image", "--label", "-o", "--output"}
_PS_BOOL = {"-a", "--all", "-q", "--quiet", "-v", "--verbose", "--no-trunc", "-l", "--latest"}
_PS_ALIASES = {
    "--all": "-a",
    "--quiet": "-q",
    "--output": "-o",
    "--verbose": "-v",
    "-s": "--state",
    "-p": "--pod",
    "--latest": "-l",
}


def cmd_ps(args: list[str], ctx: NodeContext) -> int:
    p = argparse_.parse(args, _PS_VALUE, _PS_BOOL, _PS_ALIASES)
    if p.unknown:
        return _fatal(f"flag provided but not defined: {p.unknown[0].lstrip('-').split('=')[0]}")
    state = (p.get("--state") or "").lower()
    if state and state not in ("created", "running", "exited", "unknown"):
        return _fatal("--state should be one of created, running, exited or unknown")
    fmt = p.get("-o") or "table"
    if fmt not in ("table", "json", "yaml"):
        return _fatal(f'listing containers: unsupported output format "{fmt}"')
    found = static_pod_containers(ctx)
    if state and state != "running":
        found = []  # every simulated container runs
    if p.get("--name"):
        try:
            pattern = re.compile(str(p.get("--name")))
        except re.error as exc:
            return _fatal(f"listing containers: {exc}")
        found = [c for c in found if pattern.search(c.name)]
    if p.get("--id"):
        found = [c for c in found if c.id.startswith(str(p.get("--id")))]
    if p.get("--pod"):
        found = [c for c in found if c.pod_id.startswith(str(p.get("--pod")))]
    found.sort(key=lambda c: -c.created_ns)
    if fmt == "json":
        sys.stdout.write(
            json.dumps({"containers": [_container_json(c) for c in found]}, indent=2) + "\n"
        )
        return 0
    if fmt == "yaml":
        sys.stdout.write(
            _yaml().safe_dump({"containers": [_container_json(c) for c in found]}, sort_keys=False)
        )
        return 0
    if p.has("-q"):
        for c in found:
            sys.stdout.write(c.id + "\n")
        return 0
    trunc = not p.has("--no-trunc")
    rows = [["CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD ID", "POD"]]
    for c in found:
        rows.append(
            [
                c.id[:TRUNC] if trunc else c.id,
                c.image_id.split(":", 1)[1][:TRUNC] if trunc else c.image_id,
                _ago(c.created_ns),
                "Running",
                c.name,
                "0",
                c.pod_id[:TRUNC] if trunc else c.pod_id,
                c.pod_name,
            ]
        )
    _table(rows)
    return 0


def cmd_pods(args: list[str], ctx: NodeContext) -> int:
    p = argparse_.parse(
        args,
        {"--name", "--namespace", "--state", "-o", "--output", "--label"},
        {"-q", "--quiet", "--no-trunc", "-v", "--verbose"},
        {"--quiet": "-q", "--output": "-o", "--verbose": "-v", "-s": "--state"},
    )
    if p.unknown:
        return _fatal(f"flag provided but not defined: {p.unknown[0].lstrip('-').split('=')[0]}")
    pods: dict[str, Container] = {}
    for c in static_pod_containers(ctx):
        pods.setdefault(c.pod_id, c)
    found = list(pods.values())
    if p.get("--name"):
        pattern = re.compile(str(p.get("--name")))
        found = [c for c in found if pattern.search(c.pod_name)]
    if p.has("-q"):
        for c in found:
            sys.stdout.write(c.pod_id + "\n")
        return 0
    rows = [["POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "RUNTIME"]]
    for c in found:
        rows.append(
            [
                c.pod_id[:TRUNC],
                _ago(c.created_ns),
                "Ready",
                c.pod_name,
                c.namespace,
                "0",
                "(default)",
            ]
        )
    _table(rows)
    return 0


def _image_store(ctx: NodeContext) -> list[str]:
    raw = ctx.read_json("images.json", [])
    images = [str(i) for i in raw] if isinstance(raw, list) else []
    for c in static_pod_containers(ctx):
        if c.image not in images:
            images.append(c.image)
    return sorted(images)


def cmd_images(args: list[str], ctx: NodeContext) -> int:
    p = argparse_.parse(
        args,
        {"-o", "--output"},
        {"-q", "--quiet", "--digests", "--no-trunc", "-v", "--verbose"},
        {"--quiet": "-q", "--output": "-o", "--verbose": "-v"},
    )
    if p.unknown:
        return _fatal(f"flag provided but not defined: {p.unknown[0].lstrip('-').split('=')[0]}")
    images = _image_store(ctx)
    ids = {i: "sha256:" + hashlib.sha256(i.encode()).hexdigest() for i in images}
    if p.has("-q"):
        for i in images:
            sys.stdout.write(ids[i] + "\n")
        return 0
    rows = [["IMAGE", "TAG", "IMAGE ID", "SIZE"]]
    for i in images:
        name, _, tag = i.rpartition(":")
        size = 10 + int(ids[i][7:11], 16) % 90
        rows.append([name, tag, ids[i][7 : 7 + TRUNC], f"{size}.{int(ids[i][11], 16) % 10}MB"])
    _table(rows)
    return 0


def cmd_pull(args: list[str], ctx: NodeContext) -> int:
    p = argparse_.parse(args, {"--creds", "--auth", "--username", "-p", "--pod-config"}, set())
    if len(p.positional) != 1:
        return _fatal('pulling image: image name required: "crictl pull IMAGE"')
    image = p.positional[0]
    if ":" not in image.rsplit("/", 1)[-1] and "@" not in image:
        image += ":latest"
    images = ctx.read_json("images.json", [])
    images = [str(i) for i in images] if isinstance(images, list) else []
    if image not in images:
        ctx.sleep("download")
        images.append(image)
        ctx.write_json("images.json", sorted(images))
    digest = "sha256:" + hashlib.sha256(image.encode()).hexdigest()
    sys.stdout.write(f"Image is up to date for {digest}\n")
    return 0


def _find(ctx: NodeContext, ident: str) -> Container | str | None:
    """The container whose id starts with ``ident``; an error text when ambiguous."""
    matches = [c for c in static_pod_containers(ctx) if c.id.startswith(ident)] if ident else []
    if len(matches) > 1:
        return f'container "{ident}" is ambiguous'
    return matches[0] if matches else None


def cmd_inspect(args: list[str], ctx: NodeContext) -> int:
    p = argparse_.parse(args, {"-o", "--output", "--template"}, {"-q", "--quiet"})
    if not p.positional:
        return _fatal("ID cannot be empty")
    docs = []
    for ident in p.positional:
        c = _find(ctx, ident)
        if not isinstance(c, Container):
            return _fatal(
                f'getting the status of the container "{ident}": rpc error: code = NotFound '
                f'desc = an error occurred when try to find container "{ident}": not found'
            )
        info = _container_json(c)
        info["mounts"] = [
            {"containerPath": a, "hostPath": b, "readonly": False} for a, b in c.mounts
        ]
        docs.append(
            {
                "status": {**info, "startedAt": info["createdAt"], "exitCode": 0},
                "info": {"pid": 4000 + int(c.id[:4], 16) % 1000, "config": {"args": c.command}},
            }
        )
    for d in docs:
        sys.stdout.write(json.dumps(d, indent=2) + "\n")
    return 0


def cmd_exec(args: list[str], ctx: NodeContext) -> int:
    # urfave/cli: the subcommand's flags come before CONTAINER-ID; the rest is the command
    flags: list[str] = []
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        flags.append(args[i])
        if args[i] == "--timeout" and i + 1 < len(args):
            flags.append(args[i + 1])
            i += 1
        i += 1
    if i < len(args) and args[i] == "--":
        i += 1
    p = argparse_.parse(
        flags,
        {"--timeout"},
        {"-i", "--interactive", "-t", "--tty", "-s", "--sync"},
        {"--interactive": "-i", "--tty": "-t", "--sync": "-s"},
    )
    if p.unknown:
        return _fatal(f"flag provided but not defined: {p.unknown[0].lstrip('-').split('=')[0]}")
    rest = args[i:]
    if len(rest) < 2:
        sys.stdout.write(
            "NAME:\n   crictl exec - Run a command in a running container\n\n"
            "USAGE:\n   crictl exec [command options] CONTAINER-ID COMMAND [ARG...]\n"
        )
        return 0
    if p.has("-t") and not p.has("-i"):
        return _fatal(
            "execing command in container: tty=true must be specified with interactive=true"
        )
    ident, command = rest[0], rest[1:]
    found = _find(ctx, ident)
    if isinstance(found, str):
        return _fatal(f"execing command in container: {found}")
    if found is None:
        return _fatal(
            f"execing command in container: rpc error: code = NotFound desc = failed to find "
            f'container "{ident}": not found'
        )
    container = found
    fs = ContainerFS(ctx, container)
    tool = PurePosixPath(command[0]).name
    version = etcd_version_of(container.image)
    known = {"etcdctl", "etcdutl", "etcd"} if version else set()
    if tool not in known or (
        command[0].startswith("/") and not command[0].startswith(("/usr/local/bin/",))
    ):
        return _fatal(
            "execing command in container: Internal error occurred: error executing command in "
            "container: failed to exec in container: failed to start exec "
            f'"{hashlib.sha256(repr(command).encode()).hexdigest()}": OCI runtime exec failed: '
            "exec failed: unable to start container process: exec: "
            f'"{command[0]}": executable file not found in $PATH: unknown'
        )
    assert version is not None
    streams = etcd_tools.Streams(_write_out, _write_err)
    if tool == "etcdctl":
        code = etcd_tools.etcdctl(command[1:], fs, version, ctx.name, streams)
    elif tool == "etcdutl":
        code = etcd_tools.etcdutl(command[1:], fs, version, streams)
    else:
        if "--version" in command[1:]:
            plain = version.split("-")[0]
            _write_out(f"etcd Version: {plain}\nGit SHA: a1b2c3d\nGo Version: go1.20.6\n")
            code = 0
        else:
            _write_err("upgrader lab: a second etcd server cannot start in this container\n")
            code = 1
    if code != 0:
        return _fatal(f"execing command in container: command terminated with exit code {code}")
    return 0


def _write_out(text: str) -> None:
    sys.stdout.write(text)


def _write_err(text: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(text)
    sys.stderr.flush()


# --------------------------------------------------------------------------- entry

_GLOBAL_VALUE = {
    "-r",
    "--runtime-endpoint",
    "-i",
    "--image-endpoint",
    "-c",
    "--config",
    "-t",
    "--timeout",
}
_GLOBAL_BOOL = {"-D", "--debug", "--version", "-v", "-h", "--help"}
_RUNTIME_COMMANDS = {"ps", "pods", "exec", "inspect", "inspectp", "stop", "rm", "logs"}
_IMAGE_COMMANDS = {"ps", "images", "image", "img", "pull", "rmi"}


def crictl_version(ctx: NodeContext) -> str:
    """cri-tools follows the Kubernetes minor: ``v1.<kubeadm minor>.0`` unless the
    installed script says otherwise."""
    own = os.environ.get("LAB_TOOL_VERSION")
    if own:
        return own
    kubeadm = ctx.installed_version("kubeadm")
    if kubeadm:
        major, minor = repo.plain_key(repo.plain(kubeadm))[:2]
        return f"v{major}.{minor}.0"
    return "v1.28.0"


def _connect_warnings(ctx: NodeContext, endpoint: str | None, what: str) -> None:
    if endpoint or os.environ.get("CONTAINER_RUNTIME_ENDPOINT"):
        return
    if ctx.path(CONFIG).is_file():
        return
    _logrus(
        "warning",
        f"{what} connect using default endpoints: [{' '.join(DEFAULT_ENDPOINTS)}]. As the "
        "default settings are now deprecated, you should set the endpoint instead.",
    )
    _logrus(
        "error",
        f"validate service connection: validate CRI v1 {what}"
        f' API for endpoint "{DEFAULT_ENDPOINTS[0]}": rpc error: code = Unavailable desc = '
        'connection error: desc = "transport: Error while dialing: dial unix '
        '/var/run/dockershim.sock: connect: no such file or directory"',
    )


def main(tool: str, args: list[str], ctx: NodeContext) -> int:
    # global flags stop at the first subcommand word
    j = 0
    while j < len(args) and args[j].startswith("-"):
        if args[j] in _GLOBAL_VALUE and "=" not in args[j]:
            j += 1
        j += 1
    p = argparse_.parse(
        args[:j],
        _GLOBAL_VALUE,
        _GLOBAL_BOOL,
        {
            "--runtime-endpoint": "-r",
            "--image-endpoint": "-i",
            "--config": "-c",
            "--timeout": "-t",
            "--debug": "-D",
            "-v": "--version",
            "--help": "-h",
        },
    )
    if p.unknown:
        return _fatal(f"flag provided but not defined: {p.unknown[0].lstrip('-').split('=')[0]}")
    if p.has("--version"):
        sys.stdout.write(f"crictl version {crictl_version(ctx)}\n")
        return 0
    words = args[j:]
    if not words or p.has("-h"):
        sys.stdout.write(
            "NAME:\n   crictl - client for CRI\n\nUSAGE:\n   crictl [global options] command "
            "[command options] [arguments...]\n\nVERSION:\n   "
            f"{crictl_version(ctx)}\n"
        )
        return 0
    sub, rest = words[0], words[1:]
    runtime = str(ctx.info.get("runtime") or "containerd://1.7.2")
    if sub in _RUNTIME_COMMANDS | _IMAGE_COMMANDS | {"version", "info"}:
        if sub in _RUNTIME_COMMANDS or sub in ("version", "info"):
            _connect_warnings(ctx, p.get("-r"), "runtime")
        if sub in _IMAGE_COMMANDS:
            _connect_warnings(ctx, p.get("-i") or p.get("-r"), "image")
        if runtime.startswith("docker"):
            return _fatal(
                "validate service connection: validate CRI v1 runtime API for endpoint "
                '"unix:///var/run/cri-dockerd.sock": rpc error: code = Unavailable desc = '
                'connection error: desc = "transport: Error while dialing: dial unix '
                '/var/run/cri-dockerd.sock: connect: no such file or directory"'
            )
    if sub == "version":
        name, _, ver = runtime.partition("://")
        sys.stdout.write(
            f"Version:  0.1.0\nRuntimeName:  {name}\nRuntimeVersion:  v{ver.lstrip('v')}\n"
            "RuntimeApiVersion:  v1\n"
        )
        return 0
    handlers = {
        "ps": cmd_ps,
        "pods": cmd_pods,
        "images": cmd_images,
        "image": cmd_images,
        "img": cmd_images,
        "pull": cmd_pull,
        "inspect": cmd_inspect,
        "exec": cmd_exec,
    }
    handler = handlers.get(sub)
    if handler is None:
        return _fatal(f"upgrader lab: crictl {sub} is not simulated")
    with contextlib.suppress(BrokenPipeError):
        return handler(rest, ctx)
    return 141
