"""The lab API server's ``GET /metrics``: the deprecated-API gauge a real kube-apiserver
exports, from the spec.

Owns reading the optional top-level spec key ``deprecated_api_requests`` (a list of
``{group, version, resource, subresource, removed_release}``: API versions some client
"requested" since the server started) and rendering it as the Prometheus text exposition
of ``apiserver_requested_deprecated_apis`` (a gauge, value 1 per requested
group/version/resource/subresource), as kube-apiserver does. Without the key the gauge has
no samples. Bad input raises ``ConfigError`` naming the file and field.

Must not: write anything, or know about HTTP beyond the body and its content type.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from upgrader.errors import ConfigError

SPEC_KEY = "deprecated_api_requests"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LABELS = ("group", "removed_release", "resource", "subresource", "version")
_HELP = (
    "# HELP apiserver_requested_deprecated_apis [STABLE] Gauge of deprecated APIs that have "
    "been requested, broken out by API group, version, resource, subresource, and "
    "removed_release.\n"
    "# TYPE apiserver_requested_deprecated_apis gauge\n"
)


def load_requests(spec_path: Path) -> tuple[dict[str, str], ...]:
    """The spec's ``deprecated_api_requests`` (empty when absent)."""
    try:
        data = json.loads(spec_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{spec_path}: cannot read: {e}") from None
    raw = data.get(SPEC_KEY) if isinstance(data, Mapping) else None
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{spec_path}: {SPEC_KEY}: must be a list")
    out: list[dict[str, str]] = []
    for i, item in enumerate(raw):
        where = f"{spec_path}: {SPEC_KEY}[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{where}: must be a mapping")
        labels: dict[str, str] = {}
        for key in _LABELS:
            value: Any = item.get(key, "")
            if not isinstance(value, str):
                raise ConfigError(f"{where}.{key}: must be a string")
            labels[key] = value
        if not labels["version"] or not labels["resource"]:
            raise ConfigError(f"{where}: needs version and resource")
        out.append(labels)
    return tuple(out)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(requests: tuple[dict[str, str], ...]) -> bytes:
    """The exposition text (sorted label names, as the Prometheus client writes them)."""
    lines = [_HELP]
    for r in requests:
        labels = ",".join(f'{k}="{_escape(r[k])}"' for k in _LABELS)
        lines.append(f"apiserver_requested_deprecated_apis{{{labels}}} 1\n")
    return "".join(lines).encode()
