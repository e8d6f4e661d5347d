"""The repository's two distributions as pip builds them: ``upgrader`` (the product) and
``upgrader-lab`` (``lab/``, the simulated cluster). The product's wheel holds no lab code and
no lab-only dependency; the lab's wheel pins the product's exact version (lock-step) and adds
``upgrader lab`` through the ``upgrader.commands`` entry point, which the product loads by
group, never by name. Wheels are built offline (``--no-build-isolation``) with the
test environment's setuptools."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _wheel(src: Path, out: Path) -> zipfile.ZipFile:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    (whl,) = out.glob("*.whl")
    return zipfile.ZipFile(whl)


def _metadata(whl: zipfile.ZipFile) -> tuple[str, list[str], str]:
    """(version, Requires-Dist lines, entry_points.txt text) of a wheel."""
    names = whl.namelist()
    (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    msg = Parser().parsestr(whl.read(meta).decode())
    eps = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    return (
        str(msg["Version"]),
        [str(x) for x in msg.get_all("Requires-Dist") or []],
        whl.read(eps[0]).decode() if eps else "",
    )


def _version(pyproject: Path) -> str:
    return str(tomllib.loads(pyproject.read_text())["project"]["version"])


def test_the_product_wheel_holds_no_lab_and_the_lab_wheel_pins_the_product(
    tmp_path: Path,
) -> None:
    product = _wheel(ROOT, tmp_path / "product")
    files = product.namelist()
    assert "upgrader/cli.py" in files and "upgrader/data/releases.json" in files
    assert not [f for f in files if f.startswith(("upgrader_lab/", "upgrader/lab/"))]
    version, requires, eps = _metadata(product)
    assert version == _version(ROOT / "pyproject.toml")
    required = {r.split(";")[0].split(">")[0].split("=")[0].strip().lower() for r in requires}
    assert {"paramiko", "kubernetes", "packaging", "tenacity", "typer"} <= required
    assert "cryptography" not in required and "upgrader-lab" not in required
    assert "upgrader.commands" not in eps

    lab = _wheel(ROOT / "lab", tmp_path / "lab")
    lab_files = lab.namelist()
    assert "upgrader_lab/cli.py" in lab_files and "upgrader_lab/apiserver/server.py" in lab_files
    assert not [f for f in lab_files if f.startswith("upgrader/")]
    lab_version, lab_requires, lab_eps = _metadata(lab)
    assert lab_version == version  # released in lock-step
    assert f"upgrader=={version}" in lab_requires
    assert any(r.startswith("cryptography") for r in lab_requires)
    assert "[upgrader.commands]" in lab_eps and "lab = upgrader_lab.cli:lab_app" in lab_eps


def _dist(site: Path, name: str, entry: str) -> None:
    """A minimal installed distribution in ``site`` declaring one ``upgrader.commands``
    entry point, as pip would leave it."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[upgrader.commands]\n{entry}\n")


def test_sub_commands_come_from_the_entry_point_group_and_a_broken_one_is_left_out(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    (site / "hello_plugin.py").parent.mkdir(parents=True)
    (site / "hello_plugin.py").write_text(
        "import typer\n"
        "app = typer.Typer(help='Say hello (a test plugin).')\n"
        "@app.command()\n"
        "def greet() -> None:\n"
        "    typer.echo('hello from a plugin')\n"
    )
    _dist(site, "hello-plugin", "hello = hello_plugin:app")
    _dist(site, "broken-plugin", "broken = no_such_module_here:app")
    env = {**os.environ, "PYTHONPATH": str(site)}
    r = subprocess.run(
        [sys.executable, "-m", "upgrader", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    commands = r.stdout.split("Commands:", 1)[1]
    assert "hello" in commands and "lab" in commands and "broken" not in commands
    assert "warning: no_such_module_here:app (broken): not loaded:" in r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "upgrader", "hello", "greet"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert r.returncode == 0 and r.stdout.strip() == "hello from a plugin", r.stdout + r.stderr
