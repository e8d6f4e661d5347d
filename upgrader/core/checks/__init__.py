"""Preflight checks as pure functions: facts and plain API JSON in, findings out.

One small module per check family:

* :mod:`.access` — the permissions a run needs (SelfSubjectAccessReview answers), and the
  least-privilege rules ``upgrader rbac`` prints (one list, so they cannot drift);
* :mod:`.kubelet` — kubelet hardening (anonymous auth, authorization mode, read-only port);
* :mod:`.runtime` — the docker runtime (dockershim), a dockerd listening on TCP, and the
  1.35 rules (cgroup v1, containerd 1.x);
* :mod:`.node_lock` — flock(1) and a safe /run/upgrader, for the lock every step command
  runs under;
* :mod:`.removed_apis` — API versions a hop's target stops serving, still in use;
* :mod:`.drainability` — what would stop or hurt each drain (PDBs, emptyDir, unmanaged);
* :mod:`.health` — cluster health gates (nodes, control-plane pods, etcd, leftover lock,
  certificates) and the "N consecutive passes" counter;
* :mod:`.postflight` — what a finished run must leave as it found it (budgets recovered);
* :mod:`.inputs` — the value the I/O side (:mod:`upgrader.preflight`) fills for them;
* :mod:`.suite` — all of them at once, for the planner glue.

Every finding has a stable code (``docs/FINDINGS.md`` lists them all), a severity, the node
when there is one, a message and a fix. A blocker that an operator flag passes names the
flag in ``override`` and comes back as a warning "(passed by FLAG)" when the flag was given,
as :mod:`upgrader.core.policy` does.

Must not: do I/O, or import paramiko, kubernetes, typer or rich.
"""

from __future__ import annotations

from upgrader.core.model import Finding, Severity


def overridable(
    code: str,
    message: str,
    *,
    node: str | None,
    fix: str | None,
    flag: str,
    given: bool,
) -> Finding:
    """A blocker ``flag`` passes: a warning "(passed by FLAG)" when it was given."""
    if given:
        return Finding(code, Severity.WARNING, f"{message} (passed by {flag})", node, fix, flag)
    return Finding(code, Severity.BLOCKER, message, node, fix, flag)


def strict_warning(
    code: str, message: str, *, node: str | None, fix: str | None, strict: bool
) -> Finding:
    """A warning that ``--strict`` turns into a blocker (nothing overrides it then)."""
    return Finding(code, Severity.BLOCKER if strict else Severity.WARNING, message, node, fix)
