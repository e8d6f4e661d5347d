"""Shared fixtures of the integration tests, and the order the run takes them in. Each group
lives in clearly named functions; add new groups below their own heading."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from apply_kit import FAST, Lab
from fake_nodes import FakeNodes
from kubeapi_stub import StubAPI
from labkit import fast_playbooks, lab_down, lab_up
from sshd import SSHServer

# --------------------------------------------------------------------------- run order


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The smoke tests first (each is one of the longest files): with one file per worker at
    a time (``--dist loadfile``) the run then ends on short files, not on a long one that
    started last. The order within each group stays the collection order."""
    items.sort(key=lambda item: item.get_closest_marker("smoke") is None)


# --------------------------------------------------------------------------- sshd (transport)

# Loopback addresses of the simulated nodes behind ``fake_nodes_sshd`` (127.0.0.0/8 needs no
# setup). Tests pick distinct addresses so they do not disturb each other's node state.
FAKE_NODE_ADDRESSES = tuple(f"127.0.0.{i}" for i in range(11, 21))


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    """A real OpenSSH sshd on 127.0.0.1 accepting the generated client key as the current
    user; commands run unmodified."""
    server = SSHServer.start(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def fake_nodes_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeNodes]:
    """A real sshd on several loopback addresses whose ForceCommand runs each command with
    the dialled node's fake tools first on PATH (see ``fake_nodes.py``)."""
    nodes = FakeNodes.start(tmp_path_factory.mktemp("fake-nodes"), FAKE_NODE_ADDRESSES)
    try:
        yield nodes
    finally:
        nodes.stop()


# ------------------------------------------------------------- kube API stub (readers, gather)


@pytest.fixture
def kube_stub(tmp_path: Path) -> Iterator[StubAPI]:
    """A real HTTPS server with its own CA answering canned Kubernetes API JSON (empty
    routes: the test fills them); ``kube_stub.kubeconfig(path)`` writes a kubeconfig."""
    stub = StubAPI(tmp_path / "kube-stub").start()
    try:
        yield stub
    finally:
        stub.stop()


# ------------------------------------------------------------- labs for apply (apply_kit)


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[Callable[..., Lab]]:
    """``make_lab(spec)`` starts a lab of the kit from ``spec`` (``FAST`` delays unless it
    names its own) with the fast playbooks in its work directory; every lab it started
    is brought down after the test."""
    started: list[Lab] = []

    def make(spec: dict[str, Any]) -> Lab:
        n = len(started)
        work = tmp_path / f"work{n}"
        fast_playbooks(work / "playbooks")
        lab = Lab(tmp_path / f"lab{n}", work)
        started.append(lab)
        lab_up(lab.dir, {"delays": FAST, **spec})
        return lab

    yield make
    for lab in started:
        lab_down(lab.dir)
