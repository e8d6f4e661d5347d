"""Entry point of every simulated node tool: ``python -m upgrader_lab.node TOOL ARGS...``
(the shims run :func:`main` with ``python -S -c``, :func:`upgrader_lab.node.tree.tool_command`).

Owns the life of one invocation: find the node, apply the spec's per-command delay and
any matching fault (exit code + stderr, a hang, a dropped session), dispatch to the tool's
module, and append ``{argv, exit_code, start, end}`` to the node's ``calls.jsonl``.

Must not: import the tool modules before it knows which one runs (start-up time matters).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
import time

from upgrader_lab.node.context import NodeContext, NotALabNode, drop_session

# Annotations only: importing typing costs every simulated tool call several ms of
# start-up (mypy and ruff read TYPE_CHECKING by name).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# tool name -> module under upgrader_lab.node holding ``main(tool, args, ctx) -> int``
TOOLS = {
    "kubeadm": "kubeadm",
    "apt-get": "realtool",
    "apt": "realtool",
    "apt-mark": "realtool",
    "apt-cache": "realtool",
    "dpkg-query": "realtool",
    "dpkg": "realtool",
    "dnf": "rpm",
    "yum": "rpm",
    "rpm": "rpm",
    "systemctl": "services",
    "kubelet": "services",
    "kubectl": "services",
    "crictl": "crictl",
    "containerd": "services",
    "crio": "services",
    "dockerd": "services",
    "curl": "net",
    "gpg": "realtool",
}


# Go programs write os.Stdout unbuffered: after a dropped SSH session their next line hits
# the broken pipe and they exit (SIGPIPE on fd 1/2, Go's os/signal docs). Python buffers a
# pipe, which would let a simulated kubeadm finish unseen: flush these tools line by line
# (a broken pipe then stops the tool mid-work, exit 141, as the real binary would stop).
GO_TOOLS = frozenset({"kubeadm", "kubelet", "kubectl", "etcdctl", "containerd", "crictl"})


def run(argv: list[str]) -> int:
    if not argv or argv[0] not in TOOLS:
        sys.stderr.write(f"upgrader lab: unknown node tool {argv[:1]}\n")
        return 127
    tool, args = argv[0], argv[1:]
    if tool in GO_TOOLS and isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    try:
        ctx = NodeContext.load()
    except NotALabNode as exc:
        sys.stderr.write(f"{tool}: upgrader lab: not running on a lab node ({exc})\n")
        return 127
    start = time.time()
    record: dict[str, Any] = {"argv": [tool, *args], "exit_code": None, "start": start}
    code = 1
    try:
        fault = ctx.take_fault(" ".join([tool, *args]))
        if fault is not None:
            record["fault"] = fault["index"]
        ctx.sleep("command")
        if fault is not None and fault.get("drop"):
            record.update(end=time.time(), dropped=True)
            ctx.record(record)
            drop_session()
        if fault is not None and fault.get("hang"):
            time.sleep(float(fault["hang"]))
        if fault is not None and fault.get("exit") is not None:
            message = fault.get("stderr") or f"{tool}: simulated failure (upgrader lab fault)"
            sys.stderr.write(message.rstrip("\n") + "\n")
            code = int(fault["exit"])
            return code
        module = importlib.import_module(f"upgrader_lab.node.{TOOLS[tool]}")
        code = int(module.main(tool, args, ctx))
        return code
    except BrokenPipeError:
        code = 141
        return code
    except KeyboardInterrupt:
        code = 130
        return code
    finally:
        if "dropped" not in record:
            record.update(exit_code=code, end=time.time())
            with contextlib.suppress(OSError):
                ctx.record(record)


def main() -> None:
    code = run(sys.argv[1:])
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = code or 141
    sys.exit(code)


if __name__ == "__main__":
    main()
