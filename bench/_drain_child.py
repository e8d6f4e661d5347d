"""``python -m bench._drain_child KUBECONFIG NODE``: upgrader's drain as one process.

Owns the child side of the drain benchmark: build the API client from the kubeconfig (TLS
verified), cordon the node and call :func:`upgrader.kube.drain.drain`, as the engine does
(evict everything ``kubectl drain --ignore-daemonsets --delete-emptydir-data`` would, wait
until gone), then print one JSON line ``{"evicted": N, "seconds": S}`` (S: the library call alone).

Must not: change any drain option from upgrader's defaults except those the kubectl
command line also sets.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from upgrader.kube.client import make_api_client
from upgrader.kube.drain import drain
from upgrader.kube.nodes import cordon


def main(argv: list[str]) -> int:
    kubeconfig, node = Path(argv[0]), argv[1]
    api = make_api_client(kubeconfig, None)
    start = time.monotonic()
    cordon(api, node)
    result = drain(api, node, timeout=600, delete_emptydir_data=True)
    seconds = time.monotonic() - start
    print(json.dumps({"evicted": len(result.evicted), "seconds": round(seconds, 4)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
