"""Glue between the CLI and the pure planner: load playbooks and release data, turn the
inventory and the operator's flags into planner options, build the plan.

Owns: the mapping from inventory/flags to :class:`upgrader.core.planner.PlanOptions`.
Must not: reach a node or the API (facts come in already gathered), print anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from upgrader.core.model import Facts, Plan
from upgrader.core.versions import KubeVersion


@dataclass(frozen=True)
class PlanRequest:
    target: KubeVersion
    strategy: str = "auto"
    playbooks: Path | None = None
    release_data: Path | None = None
    nodes: tuple[str, ...] | None = None
    overrides: tuple[str, ...] = ()
    strict: bool = False
    today: date | None = None
    max_unavailable: int = 1


def make_plan(facts: Facts, req: PlanRequest, inventory: Any | None = None) -> Plan:
    from upgrader.core import planner
    from upgrader.core.playbook import load_playbooks
    from upgrader.core.policy import PolicyOptions
    from upgrader.core.releases import load_release_data

    playbook = load_playbooks(req.playbooks)
    releases = load_release_data(req.release_data)
    policy = PolicyOptions(
        force="--force" in req.overrides,
        allow_experimental="--allow-experimental-upgrades" in req.overrides,
        allow_release_candidate="--allow-release-candidate-upgrades" in req.overrides,
        allow_unsupported="--allow-unsupported" in req.overrides,
        strict=req.strict,
        today=req.today or date.today(),
    )
    pm: dict[str, str] = {}
    repo = None
    if inventory is not None:
        pm = {n.name: inventory.package_manager_for(n) for n in inventory.nodes}
        r = inventory.repository
        repo = planner.RepoConfig(flavour=r.flavour, url_template=r.url_template)
    opts = planner.PlanOptions(
        policy=policy,
        strategy=req.strategy,
        package_manager_by_node=pm,
        nodes=req.nodes,
        overrides=req.overrides,
        max_unavailable=req.max_unavailable,
        **({"repository": repo} if repo is not None else {}),
    )
    return planner.build_plan(facts, req.target, playbook, releases, opts)
