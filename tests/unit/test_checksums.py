"""Release checksums: parsing ``.sha256`` files, where a binary's checksum is, reading a
checksum directory, and how the planner turns them into the ``verify-binaries`` step (or
a finding when they are missing)."""

from __future__ import annotations

import json
import shlex
from datetime import date
from pathlib import Path

import pytest

from upgrader.checksums import load_release, load_releases
from upgrader.core.checksums import (
    BINARIES,
    ChecksumFormatError,
    ReleaseChecksums,
    location,
    parse_sha256,
)
from upgrader.core.model import Facts, Plan, Severity
from upgrader.core.planner import (
    CHECKSUMS_UNAVAILABLE,
    CHECKSUMS_UNREADABLE,
    PlanOptions,
    build_plan,
)
from upgrader.core.playbook import load_playbooks
from upgrader.core.policy import PolicyOptions
from upgrader.core.releases import load_release_data
from upgrader.core.versions import KubeVersion

DATA = Path(__file__).resolve().parents[1] / "data" / "facts"
V = KubeVersion.parse("v1.28.4")
DIGESTS = {"kubeadm": "a" * 64, "kubelet": "b" * 64, "kubectl": "c" * 64}


def test_parse_sha256_accepts_bare_and_named_digests() -> None:
    assert parse_sha256("A" * 64 + "\n") == "a" * 64
    assert parse_sha256("\n" + "0" * 64 + "  kubelet\n") == "0" * 64
    with pytest.raises(ChecksumFormatError, match="not a sha256"):
        parse_sha256("<html>nope</html>")
    with pytest.raises(ChecksumFormatError, match="empty"):
        parse_sha256("  \n")


def test_location_of_directory_and_url_template() -> None:
    assert location("/sums/", V, "kubelet") == "/sums/v1.28.4/kubelet.sha256"
    url = "https://dl.k8s.io/release/{version}/bin/linux/{arch}/{binary}.sha256"
    assert location(url, V, "kubeadm") == (
        "https://dl.k8s.io/release/v1.28.4/bin/linux/amd64/kubeadm.sha256"
    )
    assert location("https://m.example/{minor}/{binary}", V, "kubectl") == (
        "https://m.example/1.28/kubectl"
    )


def _write_dir(root: Path, version: str, digests: dict[str, str]) -> None:
    (root / version).mkdir(parents=True)
    for b, d in digests.items():
        (root / version / f"{b}.sha256").write_text(d + "\n")


def test_load_release_from_a_directory(tmp_path: Path) -> None:
    _write_dir(tmp_path, "v1.28.4", DIGESTS)
    rc = load_release(str(tmp_path), V)
    assert rc.complete and dict(rc.digests) == DIGESTS

    missing = load_release(str(tmp_path), KubeVersion.parse("v1.29.0"))
    assert not missing.complete
    assert missing.problem is not None and "v1.29.0/kubeadm.sha256: not found" in missing.problem

    (tmp_path / "v1.28.4" / "kubectl.sha256").write_text("garbage\n")
    bad = load_releases(str(tmp_path), [V, V])
    assert list(bad) == ["v1.28.4"]
    assert bad["v1.28.4"].problem is not None
    assert "kubectl.sha256: 'garbage' is not a sha256 hex digest" in bad["v1.28.4"].problem


def _plan(checksums: dict[str, ReleaseChecksums] | None) -> Plan:
    f = Facts.from_dict(json.loads((DATA / "one-cp-two-workers.json").read_text()))
    return build_plan(
        f,
        V,
        load_playbooks(),
        load_release_data(DATA / "releases.json"),
        PlanOptions(policy=PolicyOptions(today=date(2024, 6, 1)), checksums=checksums),
    )


def test_planner_renders_the_verify_step_with_the_release_digests() -> None:
    p = _plan({"v1.28.4": ReleaseChecksums("v1.28.4", DIGESTS)})
    assert not p.findings
    verify = [s for s in p.steps if s.name == "verify-binaries"]
    assert [s.node for s in verify] == ["cp-1", "w-1", "w-2"]
    for e in p.entries:
        names = [s.name for s in e.steps]
        if "verify-binaries" in names:  # after the packages, before the kubelet restarts
            i = names.index("verify-binaries")
            assert names[i - 1] == "kubelet-kubectl-packages"
            assert names[i + 1] == "restart-kubelet"
    cmd = verify[0].command
    assert cmd is not None
    for b in BINARIES:
        assert f"{b}={DIGESTS[b]}" in cmd
    shlex.split(cmd)  # well-formed shell words


def test_planner_without_a_source_warns_and_leaves_the_step_out() -> None:
    p = _plan(None)
    assert not any(s.name == "verify-binaries" for s in p.steps)
    found = [f for f in p.findings if f.code == CHECKSUMS_UNAVAILABLE]
    assert len(found) == 1 and found[0].severity == Severity.WARNING
    assert "packages.release_checksums" in (found[0].fix or "")


def test_planner_with_an_unreadable_source_blocks() -> None:
    p = _plan({"v1.28.4": ReleaseChecksums("v1.28.4", {}, problem="/x/v1.28.4: not found")})
    blockers = p.blockers
    assert [f.code for f in blockers] == [CHECKSUMS_UNREADABLE]
    assert "v1.28.4" in blockers[0].message and "/x/v1.28.4: not found" in blockers[0].message
