"""The plan a run executes, stored beside its state file.

A run executes the steps that were planned when it started, never a fresh plan: after a
failure the cluster is half-way (a control plane at the hop, a node cordoned), and a new
plan from those facts would leave out or reorder steps the run still owes. So
``upgrader apply`` writes the plan's entries and steps (ids, nodes, kinds, commands, checks,
parameters) to ``<state file>.plan.json`` when a run starts, and a resume loads them back
(tied to the run by its id). The state file keeps what happened to each step; this file
keeps what each step is.

Owns: that document's JSON form, its atomic write (returning the sha256 of the bytes
written, which the state file records as ``plan_digest``) and its loader (one-line
:class:`ConfigError` on anything malformed, on a file that is a symlink, not the running
user's or writable by others, and on a digest other than the one the state recorded).
Must not: plan, run anything, or hold a secret (rendered commands carry no secret
values: secrets live in environment variables).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictStr

from upgrader import safefile
from upgrader.core.model import Plan, PlanEntry, Step
from upgrader.core.problems import FileModel, validate
from upgrader.core.vocab import StepKind
from upgrader.core.workers import WorkerSelection
from upgrader.errors import ConfigError

SCHEMA = 1


def plan_path(state_path: str | os.PathLike[str]) -> Path:
    """``<state file>.plan.json``."""
    p = Path(state_path)
    return p.with_name(p.name + ".plan.json")


@dataclass(frozen=True)
class StoredPlan:
    """The executable part of a plan, as a run recorded it."""

    run_id: str
    current: str
    target: str
    hops: tuple[str, ...]
    strategy: str
    entries: tuple[PlanEntry, ...]
    # the workers chosen, grouped and ordered (absent from plans stored before it existed)
    selection: WorkerSelection | None = None

    @property
    def steps(self) -> tuple[Step, ...]:
        return tuple(s for e in self.entries for s in e.steps)

    @classmethod
    def of(cls, plan: Plan, run_id: str) -> StoredPlan:
        return cls(
            run_id=run_id,
            current=str(plan.current),
            target=str(plan.target),
            hops=tuple(str(h) for h in plan.hops),
            strategy=plan.strategy,
            entries=plan.entries,
            selection=plan.selection
            if plan.selection is not None and plan.selection.active
            else None,
        )

    def to_dict(self) -> dict[str, Any]:
        out = self._to_dict()
        if self.selection is not None:
            out["workers"] = self.selection.to_dict()
        return out

    def _to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "run_id": self.run_id,
            "current": self.current,
            "target": self.target,
            "hops": list(self.hops),
            "strategy": self.strategy,
            "entries": [
                {
                    "node": e.node,
                    "role": e.role,
                    "phase": e.phase,
                    "hop": e.hop,
                    "steps": [{**s.to_dict(), "sudo": s.sudo} for s in e.steps],
                }
                for e in self.entries
            ],
        }


class _StepDoc(FileModel):
    id: StrictStr
    kind: StepKind
    node: StrictStr
    hop: StrictStr
    phase: StrictStr
    name: StrictStr
    description: StrictStr | None = None
    command: StrictStr | None = None
    check: StrictStr | None = None
    params: dict[str, Any] | None = None
    retry_safe: StrictBool = False
    timeout: Annotated[float, Field(strict=True)]
    sudo: StrictBool = True

    def step(self) -> Step:
        return Step(
            id=self.id,
            kind=self.kind.value,
            node=self.node,
            hop=self.hop,
            phase=self.phase,
            name=self.name,
            description=self.description or "",
            command=self.command,
            check=self.check,
            params=self.params or {},
            retry_safe=self.retry_safe,
            timeout=self.timeout,
            sudo=self.sudo,
        )


class _EntryDoc(FileModel):
    node: StrictStr
    role: StrictStr
    phase: StrictStr
    hop: StrictStr
    steps: list[_StepDoc]


class _StoredPlanDoc(FileModel):
    """``<state>.plan.json`` (:meth:`StoredPlan.to_dict` writes it)."""

    schema_: Literal[1] = Field(alias="schema")
    run_id: StrictStr
    current: StrictStr
    target: StrictStr
    hops: list[StrictStr]
    strategy: StrictStr
    entries: list[_EntryDoc]
    workers: dict[str, Any] | None = None  # WorkerSelection.from_dict checks it


def from_dict(data: Any, source: str) -> StoredPlan:
    if not isinstance(data, Mapping) or data.get("schema") != SCHEMA:
        raise ConfigError(f"{source}: not a stored plan of this upgrader version")
    doc = validate(_StoredPlanDoc, data, source)
    entries: list[PlanEntry] = []
    seen: set[str] = set()
    for i, e in enumerate(doc.entries):
        steps = tuple(s.step() for s in e.steps)
        for s in steps:
            if s.id in seen:
                raise ConfigError(f"{source}: entries[{i}]: duplicate step id {s.id!r}")
            seen.add(s.id)
        entries.append(PlanEntry(node=e.node, role=e.role, phase=e.phase, hop=e.hop, steps=steps))
    return StoredPlan(
        run_id=doc.run_id,
        current=doc.current,
        target=doc.target,
        hops=tuple(doc.hops),
        strategy=doc.strategy,
        entries=tuple(entries),
        selection=WorkerSelection.from_dict(doc.workers, f"{source}: workers")
        if doc.workers is not None
        else None,
    )


def save(path: str | os.PathLike[str], plan: StoredPlan) -> str:
    """Write atomically (mode 0600, private directory); returns the sha256 (hex) of the bytes
    written, for the state file's ``plan_digest``."""
    data = json.dumps(plan.to_dict(), indent=1).encode() + b"\n"
    safefile.atomic_write(Path(path), data)
    return hashlib.sha256(data).hexdigest()


def load(path: str | os.PathLike[str], run_id: str, digest: str | None = None) -> StoredPlan:
    """The stored plan of run ``run_id``; :class:`ConfigError` if it is missing, corrupt,
    belongs to another run, or (``digest`` given) its sha256 is not ``digest``."""
    p = Path(path)
    hint = "pass --abandon to drop the unfinished run and plan afresh"
    blob = safefile.read_trusted(p)
    if blob is None:
        raise ConfigError(f"{p}: the plan of unfinished run {run_id} is missing; {hint}")
    if digest is not None and hashlib.sha256(blob).hexdigest() != digest:
        raise ConfigError(
            f"{p}: stored plan does not match the digest the state file recorded for run "
            f"{run_id} (edited or replaced since); refusing to run it; {hint}"
        )
    try:
        raw = blob.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: cannot read the stored plan: {e}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"{p}: stored plan is corrupt (line {e.lineno}: {e.msg}); {hint}"
        ) from None
    sp = from_dict(data, str(p))
    if sp.run_id != run_id:
        raise ConfigError(f"{p}: stored plan belongs to run {sp.run_id}, not {run_id}; {hint}")
    return sp
