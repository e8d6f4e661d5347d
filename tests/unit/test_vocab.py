"""The vocabulary (upgrader.core.vocab) is defined once and spelled as the files spell it."""

from __future__ import annotations

import json

from upgrader.core import model, path, playbook, vocab
from upgrader.core.vocab import Override, PackageManager, Phase, StepKind, Strategy


def test_members_are_their_strings_in_json_and_comparisons() -> None:
    doc = {"phase": Phase.WORKER, "kind": StepKind.WAIT_READY, "overrides": [Override.FORCE]}
    assert json.loads(json.dumps(doc)) == {
        "phase": "worker",
        "kind": "wait-ready",
        "overrides": ["--force"],
    }
    assert Phase.WORKER == "worker" and f"{Override.DRAIN_FALLBACK_DELETE}" == (
        "--drain-fallback delete"
    )
    assert Override("--allow-unsupported") is Override.ALLOW_UNSUPPORTED


def test_the_old_tables_are_views_of_the_vocabulary() -> None:
    assert tuple(p.value for p in Phase) == playbook.PHASES
    assert {Phase.PRESTAGE} == playbook.OPTIONAL_PHASES
    assert tuple(k.value for k in StepKind) == model.STEP_KINDS
    assert set(vocab.API_KINDS) == set(StepKind) - {StepKind.SHELL, StepKind.ETCD_SNAPSHOT}
    assert path.STRATEGIES == ("auto", "per-hop", "drain-once")
    assert set(playbook.STRATEGIES) == set(Strategy) - {Strategy.AUTO}
    assert playbook.PACKAGE_MANAGERS == ("apt", "dnf", "yum", "dnf5")


def test_dnf5_runs_as_dnf() -> None:
    assert playbook.PROGRAM == {"apt": "apt", "dnf": "dnf", "yum": "yum", "dnf5": "dnf"}
    assert PackageManager.DNF5.program == "dnf"


def test_the_default_playbook_uses_every_phase_and_only_known_kinds() -> None:
    pb = playbook.load_playbooks()
    assert set(pb.phases) == set(Phase)
    kinds = {s.kind for p in pb.phases for s in pb.phase(p).all_steps}
    assert kinds <= set(StepKind) and StepKind.SHELL in kinds and StepKind.DRAIN in kinds
