"""The pure core imports no I/O framework: paramiko, kubernetes, typer, rich (nor our own
I/O modules). Checked on the source with ``ast`` so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "upgrader" / "core"
FORBIDDEN = {"paramiko", "kubernetes", "typer", "rich", "socket", "subprocess", "urllib", "http"}
FORBIDDEN_OURS = (
    "upgrader.transport",
    "upgrader.kube",
    "upgrader.gather",
    "upgrader.cli",
    "upgrader_lab",
    "upgrader.inventory",
    "upgrader.state",
)


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


CORE_FILES = sorted(CORE.rglob("*.py"))


def test_core_has_modules() -> None:
    assert len(CORE_FILES) >= 3


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_module_imports_no_io_framework(path: Path) -> None:
    bad = [
        n for n in _imports(path) if n.split(".")[0] in FORBIDDEN or n.startswith(FORBIDDEN_OURS)
    ]
    assert bad == [], f"{path.name} imports {bad}"


def test_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    p = tmp_path / "x.py"
    p.write_text("def f():\n    import paramiko\n    from kubernetes import client\n")
    assert _imports(p) == ["paramiko", "kubernetes"]
