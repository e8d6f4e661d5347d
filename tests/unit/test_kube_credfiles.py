"""Kubeconfig credentials without files (:mod:`upgrader.kube.credfiles`) and what
:mod:`upgrader.kube.client` does with a kubeconfig's inline credentials and ``exec`` user,
on this machine's real memfds and temp directory."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from upgrader.errors import ConfigError
from upgrader.kube import credfiles
from upgrader.kube.client import (
    credential_values,
    exec_plugin_notice,
    make_api_client,
)

KEY = (
    b"-----BEGIN PRIVATE KEY-----\n"
    + b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo" * 2
    + b"\n-----END PRIVATE KEY-----\n"
)


@pytest.fixture
def tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temp directory of our own and a fresh credential store using it."""
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    monkeypatch.setattr(credfiles, "_store", None)
    yield d
    if credfiles._store is not None:
        credfiles._store.close()


def _kubeconfig(
    path: Path, user: dict[str, object], cluster: dict[str, object] | None = None
) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": "https://127.0.0.1:6443", **(cluster or {})}}
        ],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
        "users": [{"name": "u", "user": user}],
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def test_memfd_path_is_sealed_and_shared_per_content(tmp: Path) -> None:
    p = credfiles.path_for(KEY)
    assert p.startswith("/proc/self/fd/")
    assert Path(p).read_bytes() == KEY
    assert credfiles.path_for(KEY) == p  # one fd per distinct content
    with pytest.raises(PermissionError), open(p, "r+b") as f:  # sealed: no writes
        f.write(b"X")
    assert list(tmp.rglob("*")) == []  # nothing under the temp directory
    credfiles.store().close()


def test_fallback_files_are_private_and_removed_at_exit(tmp: Path) -> None:
    s = credfiles.store()
    s.memfd_ok = False  # as on a system without memfd_create
    p = Path(s.path_for(KEY))
    assert p.read_bytes() == KEY
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert stat.S_IMODE(p.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(p.parent.parent.stat().st_mode) == 0o700
    assert p.parent.name.startswith(f"{os.getpid()}-")
    s.close()
    assert not p.exists() and not p.parent.exists()


def test_a_dead_process_directory_is_swept_at_the_next_start(tmp: Path) -> None:
    """What a SIGKILLed run on a system without memfd leaves: removed by the next run."""
    code = (
        "import os, sys; from upgrader.kube import credfiles as c; s = c.store(); "
        "s.memfd_ok = False; print(s.path_for(b'KEY-BODY'), flush=True); os._exit(0)"
    )
    env = dict(os.environ, TMPDIR=str(tmp))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    left = Path(out.stdout.strip())
    assert left.read_bytes() == b"KEY-BODY"  # os._exit: no atexit, as after SIGKILL
    live = left.parent.parent / f"{os.getpid()}-live"
    live.mkdir()
    api = make_api_client(_kubeconfig(tmp / ".." / "kc", {"token": "t"}), None)  # sweeps
    api.close()  # type: ignore[no-untyped-call]
    assert not left.parent.exists()
    assert live.exists()  # ours (alive) stays
    assert credfiles.sweep() == []


def test_base_dir_of_someone_else_is_not_used(tmp: Path) -> None:
    base = tmp / f"upgrader-kube-{os.getuid()}"
    target = tmp / "elsewhere"
    target.mkdir()
    base.symlink_to(target)
    s = credfiles.store()
    d = s.private_dir()
    assert not d.is_relative_to(target) and not d.resolve().is_relative_to(target)
    s.close()


def test_inline_credentials_become_memory_paths(tmp: Path, tmp_path: Path) -> None:
    b64 = base64.b64encode(KEY).decode()
    cfg = _kubeconfig(
        tmp_path / "kc",
        {"token": "tok-123", "client-certificate-data": b64, "client-key-data": b64},
        {"certificate-authority-data": b64},
    )
    api = make_api_client(cfg, None)
    c = api.configuration
    assert all(
        str(v).startswith("/proc/self/fd/") for v in (c.ssl_ca_cert, c.cert_file, c.key_file)
    )
    assert list(tmp.rglob("*")) == []
    values = credential_values(api)
    assert "tok-123" in values and b64 in values
    assert "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo" * 2 in values
    api.close()  # type: ignore[no-untyped-call]


def test_relative_credential_files_resolve_beside_the_kubeconfig(tmp: Path, tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "key.pem").write_bytes(KEY)
    cfg = _kubeconfig(
        tmp_path / "conf" / "kc", {"client-certificate": "key.pem", "client-key": "key.pem"}
    )
    api = make_api_client(cfg, None)
    assert api.configuration.key_file == str(tmp_path / "conf" / "key.pem")
    api.close()  # type: ignore[no-untyped-call]


def test_bad_base64_is_one_line_naming_the_field(tmp: Path, tmp_path: Path) -> None:
    cfg = _kubeconfig(tmp_path / "kc", {"client-key-data": "not*base64!"})
    with pytest.raises(ConfigError) as ei:
        make_api_client(cfg, None)
    assert str(ei.value) == f"kubeconfig {cfg}: user client-key-data is not base64"


def test_exec_notice_names_the_command_only(tmp_path: Path) -> None:
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "/usr/bin/aws-iam-authenticator",
            "args": ["token", "--secret", "hunter2"],
            "env": [{"name": "AWS_SECRET", "value": "hunter3"}],
        }
    }
    cfg = _kubeconfig(tmp_path / "kc", user)
    assert exec_plugin_notice(cfg, None) == (
        "kubeconfig user 'u' runs an exec credential plugin: /usr/bin/aws-iam-authenticator"
    )
    assert exec_plugin_notice(_kubeconfig(tmp_path / "kc2", {"token": "t"}), None) is None
    assert exec_plugin_notice(tmp_path / "missing", None) is None
    hostile = dict(user, exec=dict(user["exec"], command="/bin/x\x1b[2J\rok"))  # type: ignore[arg-type]
    line = exec_plugin_notice(_kubeconfig(tmp_path / "kc3", hostile), None)
    assert line is not None and line.isprintable() and "\\x1b" in line
