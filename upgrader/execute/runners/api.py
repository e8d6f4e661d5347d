"""The steps done through the Kubernetes API: ``cordon``, ``drain``, ``uncordon``,
``wait-ready`` and ``wait-control-plane``.

Owns one attempt of each (through :class:`~upgrader.execute.ops.KubeOps`), what an API
failure means (a transient API error may be retried; an operation that gave up for good,
a drain refused or a wait timed out, may not), cordon provenance (a node cordoned before
the run is not recorded as ours; a failed drain uncordons only a node we cordoned), the
drain's options (the step's params, the operator's flags, a resume's per-node drain
overrides) and the drain fallback's report (state, transcript, event).

Must not: retry (the engine does), talk to the API except through ``KubeOps``, or print.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from upgrader import state as st
from upgrader.core.drain import fallback_text
from upgrader.core.model import Step
from upgrader.errors import KubernetesError, StepFailed
from upgrader.execute import events as ev
from upgrader.execute.ops import DrainOptions, KubeOps
from upgrader.execute.runners.base import AttemptFailed, Host, Retryable

log = logging.getLogger("upgrader.execute")


class ApiRunner:
    """An API step: :meth:`call` does the work and returns what it did; the attempt
    around it times it, notes it in the transcript and reads failures."""

    success_exit_code: int | None = None

    def call(self, host: Host, step: Step) -> str:
        raise NotImplementedError

    def gave_up(self, host: Host, step: Step) -> str:
        """What is done (and said) after the operation gave up for good."""
        return ""

    def limit(self, host: Host, step: Step) -> float:
        return float(step.timeout)

    def attempt(self, host: Host, step: Step, attempt: int) -> str:
        t0 = time.monotonic()
        try:
            message = self.call(host, step)
        except StepFailed as e:
            # The operation gave up for good (drain refused/timed out, a wait timed out).
            host.note(step.node, f"{step.id} [attempt {attempt}] failed: {e}")
            raise AttemptFailed(host.mask(str(e)) + self.gave_up(host, step), retry=False) from e
        except KubernetesError as e:
            host.note(step.node, f"{step.id} [attempt {attempt}] API error: {e}")
            raise Retryable(host.mask(str(e)), retry=True) from e
        dur = time.monotonic() - t0
        host.note(step.node, f"{step.id} [attempt {attempt}] {message} ({dur:.1f}s)")
        return f"{message} in {dur:.1f}s"


def cordon(host: Host, step: Step) -> None:
    """Cordon the node and record it as ours unless it was cordoned before the run."""
    changed = host.kube.cordon(step.node)
    if step.node in host.state.precordoned:
        host.note(step.node, f"{step.id}: node was cordoned before the run")
        return
    if changed:
        host.note(step.node, f"{step.id}: cordoned")
        host.emit(ev.NODE_CORDONED, node=step.node, step=step.id)
    if step.node not in host.state.cordoned_by_us:
        host.update(lambda s: st.mark_cordoned(s, step.node, step.id))


def uncordon_ours(host: Host, step: Step, why: str) -> bool:
    """Uncordon the node if this run cordoned it; True if it did."""
    if step.node not in host.state.cordoned_by_us:
        return False
    try:
        host.kube.uncordon(step.node)
    except KubernetesError as e:
        log.error("%s: could not uncordon after %s: %s", step.node, why, e)
        host.note(step.node, f"{step.id}: uncordon after {why} failed: {e}")
        return False
    host.update(lambda s: st.mark_uncordoned(s, step.node))
    host.note(step.node, f"{step.id}: uncordoned (we had cordoned it) after {why}")
    host.emit(ev.NODE_UNCORDONED, node=step.node, step=step.id, reason=why)
    return True


class CordonRunner(ApiRunner):
    def call(self, host: Host, step: Step) -> str:
        cordon(host, step)
        return "cordoned"


class UncordonRunner(ApiRunner):
    def call(self, host: Host, step: Step) -> str:
        node = step.node
        changed = host.kube.uncordon(node)
        host.update(lambda s: st.mark_uncordoned(s, node))
        if changed:
            host.emit(ev.NODE_UNCORDONED, node=node, step=step.id)
        return "uncordoned" if changed else "was not cordoned"


class DrainRunner(ApiRunner):
    def call(self, host: Host, step: Step) -> str:
        cordon(host, step)
        return "drained: " + host.kube.drain(step.node, drain_options(host, step))

    def gave_up(self, host: Host, step: Step) -> str:
        if uncordon_ours(host, step, "the failed drain"):
            return f"; {step.node} uncordoned again (we had cordoned it)"
        return ""

    def limit(self, host: Host, step: Step) -> float:
        return float(drain_options(host, step).timeout)


class WaitRunner(ApiRunner):
    """``wait-ready`` (the kubelet Ready at ``kubelet_version``) and
    ``wait-control-plane`` (the mirror pods at ``version``): the same wait on another
    ``KubeOps`` method."""

    def __init__(
        self, method: Callable[[KubeOps], Callable[..., None]], param: str, what: str
    ) -> None:
        self._method = method  # the KubeOps method that waits
        self._param = param  # the step's param naming the version
        self._what = what  # "{version}" stands for the version waited for

    def call(self, host: Host, step: Step) -> str:
        version = str(step.params.get(self._param) or step.hop)
        self._method(host.kube)(
            step.node,
            version,
            self.limit(host, step),
            _poll(host, step),
            on_progress=host.waiting(step),
            progress_every=host.options.progress_every,
        )
        return self._what.format(version=version)

    def limit(self, host: Host, step: Step) -> float:
        ready = host.options.ready_timeout
        return float(ready if ready else step.timeout)


def _poll(host: Host, step: Step) -> float:
    if host.options.poll_interval is not None:
        return host.options.poll_interval
    return float(step.params.get("poll_interval", 5))


def drain_options(host: Host, step: Step) -> DrainOptions:
    """The drain of ``step`` as the operator's flags, a resume's per-node overrides and
    the step's params say it."""
    p = step.params
    o = host.options
    timeout = o.drain_timeout if o.drain_timeout is not None else p.get("timeout", 600)
    grace = o.grace_period if o.grace_period is not None else p.get("grace_period")
    fallback = str(p.get("fallback") or "none")
    selector = str(p["pod_selector"]) if p.get("pod_selector") else None
    if o.drain_overrides and step.node in o.drain_overrides:
        fallback, selector = o.drain_overrides[step.node]
    return DrainOptions(
        timeout=float(timeout),
        grace_period=None if grace is None else int(grace),
        delete_emptydir_data=o.delete_emptydir_data or bool(p.get("delete_emptydir_data")),
        force=o.force or bool(p.get("allow_unmanaged")),
        disable_eviction=o.disable_eviction,
        pod_selector=selector,
        fallback=fallback,
        on_fallback=_fallback_reporter(host, step),
        retry_interval=float(p.get("retry_interval", 5)),
        on_progress=host.waiting(step),
        progress_every=o.progress_every,
    )


def _fallback_reporter(
    host: Host, step: Step
) -> Callable[[tuple[str, ...], tuple[str, ...]], None]:
    """What the drain fallback calls before it deletes pods a budget still refuses:
    recorded in the state (for the summary), the node's transcript and an event."""

    def report(pods: tuple[str, ...], budgets: tuple[str, ...]) -> None:
        text = fallback_text(pods, budgets)
        host.update(lambda s: st.record_drain_fallback(s, step.id, step.node, pods, budgets))
        host.note(step.node, f"{step.id}: {text}")
        host.emit(
            ev.DRAIN_FALLBACK,
            **host.step_data(step),
            pods=list(pods),
            budgets=list(budgets),
            message=text,
        )

    return report
