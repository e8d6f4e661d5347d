"""Glue between the CLI and the pure planner: load playbooks and release data, turn the
inventory and the operator's flags into planner options, build the plan.

Owns: the mapping from inventory/flags to :class:`upgrader.core.planner.PlanOptions` (a
flag wins over the inventory's setting: ``--selector`` over ``workers.selector``...), and
merging the preflight findings (:mod:`upgrader.core.checks`, judged on the plan's hops and
the nodes it upgrades and drains) into ``Plan.findings`` when the plan has work to do.
Must not: reach a node or the API (facts and preflight inputs come in already gathered),
print anything.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from upgrader.core.checks.inputs import PreflightInputs
from upgrader.core.fields import built_from
from upgrader.core.kubeadm_passthrough import KubeadmPassthrough
from upgrader.core.model import Facts, Plan
from upgrader.core.versions import KubeVersion
from upgrader.core.vocab import Override, StepKind


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
    # --selector / --group-by / --order-by / --max-unavailable-per-group; None: the
    # inventory's workers: section says (a flag wins)
    selector: str | None = None
    group_by: str | None = None
    order_by: str | None = None
    max_unavailable_per_group: int | None = None
    # preflight flags (they change findings, not steps)
    harden_kubelet: bool = False
    delete_emptydir_data: bool = False
    disable_eviction: bool = False
    # --drain-fallback / --pod-selector (None: not given): between a node's own inventory
    # value and the inventory-wide one; recorded in the drain steps' params
    drain_fallback: str | None = None
    pod_selector: str | None = None
    break_lock: bool = False
    own_run_id: str | None = None  # a resumed run: its own Lease is not a leftover
    etcd_snapshot: bool = True  # --skip-etcd-snapshot: False
    prestage: bool = True  # --no-prestage: False
    # kubeadm pass-through (--patches, --kubeadm-config, ...), read and checked
    kubeadm: KubeadmPassthrough = dataclasses.field(default_factory=KubeadmPassthrough)


def check_request(req: PlanRequest) -> None:
    """Load the playbooks and the release data of ``req`` and throw them away: a broken
    file raises :class:`~upgrader.errors.ConfigError` here, before any node is contacted,
    rather than in :func:`make_plan` after the facts were gathered."""
    from upgrader.core.playbook import load_playbooks
    from upgrader.core.releases import load_release_data

    _load_playbook(req) if req.harden_kubelet else load_playbooks(req.playbooks)
    load_release_data(req.release_data)


def make_plan(
    facts: Facts,
    req: PlanRequest,
    inventory: Any | None = None,
    preflight: PreflightInputs | None = None,
) -> Plan:
    from upgrader.core import planner
    from upgrader.core.playbook import load_playbooks
    from upgrader.core.policy import PolicyOptions
    from upgrader.core.releases import load_release_data
    from upgrader.core.settings import SettingHints

    playbook = _load_playbook(req) if req.harden_kubelet else load_playbooks(req.playbooks)
    releases = load_release_data(req.release_data)
    policy = PolicyOptions(
        force=Override.FORCE in req.overrides,
        allow_experimental=Override.ALLOW_EXPERIMENTAL in req.overrides,
        allow_release_candidate=Override.ALLOW_RC in req.overrides,
        allow_unsupported=Override.ALLOW_UNSUPPORTED in req.overrides,
        strict=req.strict,
        today=req.today or date.today(),
    )
    pm: dict[str, str] = {}
    workers = getattr(inventory, "worker_choice", None)
    selector = req.selector if req.selector is not None else getattr(workers, "selector", None)
    group_by = req.group_by if req.group_by is not None else getattr(workers, "group_by", None)
    order_by = req.order_by if req.order_by is not None else getattr(workers, "order_by", None)
    per_group: int = req.max_unavailable_per_group or int(
        getattr(workers, "max_unavailable_per_group", 1)
    )
    repo = None
    checksums = None
    settings = None
    if inventory is not None:
        settings = getattr(inventory, "setting_hints", None)
        pm = {n.name: inventory.package_manager_for(n) for n in inventory.nodes}
        r = inventory.repository
        repo = planner.RepoConfig(
            flavour=r.flavour, url_template=r.url_template, mirror=getattr(r, "mirror", None)
        )
        source = getattr(inventory, "release_checksums", None)
        if source:
            checksums = _release_checksums(source, facts, req, releases, policy)
    opts = built_from(  # strategy, nodes, overrides, ...: the request's own
        planner.PlanOptions,
        req,
        policy=policy,
        package_manager_by_node=pm,
        checksums=checksums,
        selector=selector,
        group_by=group_by,
        order_by=order_by,
        max_unavailable_per_group=per_group,
        repository=repo if repo is not None else planner.RepoConfig(),
        settings=settings if settings is not None else SettingHints(),
    )
    plan = planner.build_plan(facts, req.target, playbook, releases, opts)
    plan = with_drain_settings(plan, drain_settings(req, inventory, plan))
    if inventory is not None:
        images = planner.image_repository_findings(
            facts.cluster.image_repository,
            getattr(inventory, "image_repository", None),
            opts.settings,
        )
        plan = dataclasses.replace(
            plan,
            findings=(*plan.findings, *images),
            node_env=tuple(getattr(inventory, "node_env_names", ())),
            package_mirror=repo.mirror if repo is not None else None,
        )
    return _with_preflight(plan, facts, req, preflight)


def drain_settings(req: PlanRequest, inventory: Any | None, plan: Plan) -> dict[str, Any]:
    """Per node the plan drains, ``(fallback, pod_selector)``: the node's own inventory
    value, else the flag, else the inventory-wide value, else none / every pod."""
    from upgrader.core.drain import FALLBACK_NONE, effective

    out: dict[str, tuple[str, str | None]] = {}
    for s in plan.steps:
        if s.kind != StepKind.DRAIN or s.node in out:
            continue
        own: tuple[str | None, str | None] = (None, None)
        wide: tuple[str | None, str | None] = (None, None)
        if inventory is not None and hasattr(inventory, "drain_settings"):
            own, wide = inventory.drain_settings(s.node)
        fallback = effective(own[0], req.drain_fallback, wide[0], FALLBACK_NONE)
        selector = effective(own[1], req.pod_selector, wide[1], "")
        out[s.node] = (fallback, selector or None)
    return out


def with_drain_settings(plan: Plan, settings: Mapping[str, Any]) -> Plan:
    """``plan`` with each drain step's params carrying its node's ``fallback`` and
    ``pod_selector`` (only when not the default, so that such plans read as before)."""
    entries = []
    for e in plan.entries:
        steps = []
        for s in e.steps:
            fallback, selector = settings.get(s.node, ("none", None))
            if s.kind == StepKind.DRAIN and (fallback != "none" or selector):
                params = dict(s.params)
                if fallback != "none":
                    params["fallback"] = fallback
                if selector:
                    params["pod_selector"] = selector
                s = dataclasses.replace(s, params=params)
            steps.append(s)
        entries.append(dataclasses.replace(e, steps=tuple(steps)))
    return dataclasses.replace(plan, entries=tuple(entries))


HARDEN_PLAYBOOK = "harden-kubelet.yaml"


def _release_checksums(
    source: str, facts: Facts, req: PlanRequest, releases: Any, policy: Any
) -> dict[str, Any]:
    """The release checksums of the hops the plan will take, read (or fetched over
    verified TLS) on this machine from the inventory's ``packages.release_checksums``."""
    from upgrader.checksums import load_releases
    from upgrader.core import path as path_mod
    from upgrader.errors import UpgraderError

    try:
        hops = path_mod.plan_path(facts, req.target, releases, policy, req.strategy).hops
    except UpgraderError:
        return {}  # build_plan raises the same error with its own wording
    return load_releases(source, hops)


def _load_playbook(req: PlanRequest) -> Any:
    """The playbooks of ``req.playbooks`` (default: the packaged ones) plus the packaged
    ``--harden-kubelet`` steps (``upgrader/data/harden-kubelet.yaml``), applied last."""
    from importlib import resources

    from upgrader.core.playbook import DEFAULT_FILE, default_playbook_dir, parse_playbook
    from upgrader.errors import ConfigError

    d = req.playbooks if req.playbooks is not None else default_playbook_dir()
    base = d / DEFAULT_FILE
    if not base.is_file():
        raise ConfigError(f"{base}: missing (a playbook directory needs {DEFAULT_FILE})")
    files = [base, *sorted(p for p in d.glob("*.yaml") if p.name != DEFAULT_FILE)]
    texts: list[tuple[str, str]] = []
    try:
        for f in files:
            texts.append((str(f), f.read_text(encoding="utf-8")))
        harden = resources.files("upgrader") / "data" / HARDEN_PLAYBOOK
        texts.append((f"upgrader/data/{HARDEN_PLAYBOOK}", harden.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read a playbook: {e}") from None
    return parse_playbook(texts)


def _with_preflight(
    plan: Plan, facts: Facts, req: PlanRequest, preflight: PreflightInputs | None
) -> Plan:
    """``plan`` with the preflight findings added (only when it has steps to run)."""
    from upgrader.core.checks.drainability import DrainFlags
    from upgrader.core.checks.removed_apis import load_removed_apis
    from upgrader.core.checks.suite import CheckOptions, preflight_findings

    if not plan.entries:
        return plan
    force = Override.FORCE in req.overrides
    options = CheckOptions(
        strict=req.strict,
        harden_kubelet=req.harden_kubelet,
        drain=DrainFlags(
            req.delete_emptydir_data,
            force,
            req.disable_eviction,
            fallback_delete=frozenset(
                s.node for s in plan.steps if s.kind == StepKind.DRAIN and s.params.get("fallback")
            ),
            pod_selectors={
                s.node: str(s.params["pod_selector"])
                for s in plan.steps
                if s.kind == StepKind.DRAIN and s.params.get("pod_selector")
            },
        ),
        own_run_id=req.own_run_id,
        break_lock=req.break_lock,
    )
    drained = [s.node for s in plan.steps if s.kind == StepKind.DRAIN]
    today = req.today or date.today()
    extra = preflight_findings(
        facts,
        preflight,
        current=plan.current,
        target=plan.target,
        hops=plan.hops,
        upgrade_nodes=list(dict.fromkeys(e.node for e in plan.entries)),
        drain_nodes=list(dict.fromkeys(drained)),
        now=datetime(today.year, today.month, today.day, tzinfo=UTC),
        options=options,
        removed_table=load_removed_apis() if preflight is not None else (),
    )
    flags = tuple(
        f
        for f, on in (
            ("--harden-kubelet", req.harden_kubelet),
            ("--delete-emptydir-data", req.delete_emptydir_data),
            ("--disable-eviction", req.disable_eviction),
            ("--break-lock", req.break_lock),
        )
        if on and f not in plan.overrides
    )
    return dataclasses.replace(
        plan, findings=(*plan.findings, *extra), overrides=(*plan.overrides, *flags)
    )
