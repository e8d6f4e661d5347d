"""The ``shell`` step: its command on the node, and what a failed attempt means.

Owns one attempt of a shell step (the command under the node lock), the reading of its
result (exit 0, a non-zero exit, a timeout, a dropped session, a busy node lock) into
success or :class:`~upgrader.execute.runners.base.Retryable`/``AttemptFailed``/``Done``,
and the rules for a step not safe to repeat (its check decides, a second attempt only
when the first never reported an exit status) or one that found the lock busy (never
started blindly after the lock's holder: wait through the check, or through an empty
command for a retry-safe step without one).

Must not: record state transitions or retry (the engine does), or wrap commands in the
lock itself (the engine's ``run_command`` does).
"""

from __future__ import annotations

from upgrader import state as st
from upgrader.core import nodelock
from upgrader.core.model import Step
from upgrader.execute import events as ev
from upgrader.execute.runners.base import AttemptFailed, Done, Host, Retryable
from upgrader.transport.base import Result

CHECK_TIMEOUT = 120.0  # seconds; a done-check is a quick read


class ShellRunner:
    success_exit_code: int | None = 0

    def limit(self, host: Host, step: Step) -> float:
        return float(step.timeout)

    def attempt(self, host: Host, step: Step, attempt: int) -> str:
        assert step.command is not None
        res, err = host.run_command(step, step.command, "run", attempt, step.timeout)
        return self.outcome(host, step, attempt, res, err)

    def outcome(
        self, host: Host, step: Step, attempt: int, res: Result | None, err: str | None
    ) -> str:
        """What the command's ``res`` (or transport error ``err``) means for the step."""
        if res is not None and res.ok:
            return f"exit 0 in {res.duration:.1f}s"
        if res is not None and nodelock.is_busy(res.exit_code, res.stderr):
            _lock_was_busy(host, step, attempt, res.stderr)
        if res is None:
            message = f"SSH session failed: {err}"
            exit_code, stderr, no_status = None, None, True
        elif res.timed_out:
            message = f"timed out after {step.timeout:g}s"
            exit_code, stderr, no_status = None, res.stderr, True
        else:
            last = st.tail(res.stderr, 1) or st.tail(res.stdout, 1)
            message = f"exit {res.exit_code}" + (f": {last}" if last else "")
            exit_code, stderr, no_status = res.exit_code, res.stderr, False
        message = host.mask(message)
        if step.retry_safe:
            raise Retryable(message, retry=True, exit_code=exit_code, stderr=stderr)
        # Not safe to repeat blindly: ask the node whether the effect is there.
        if step.check is None:
            raise AttemptFailed(
                message + " (not retried: the step is not safe to repeat and has no check)",
                retry=False,
                exit_code=exit_code,
                stderr=stderr,
            )
        host.emit(
            ev.STEP_ATTEMPT_FAILED,
            **host.step_data(step),
            attempt=attempt,
            error=message,
            will_retry=False,
            will_check=True,
        )
        if host.check(step, attempt, "after-failure"):
            raise Done()
        if no_status:
            raise Retryable(
                message + " (check: not done)", retry=True, exit_code=exit_code, stderr=stderr
            )
        raise AttemptFailed(
            message + " (not retried: the step is not safe to repeat)",
            retry=False,
            exit_code=exit_code,
            stderr=stderr,
        )


def _lock_was_busy(host: Host, step: Step, attempt: int, stderr: str) -> None:
    """The command did not run: another command held the node lock (one a killed run
    left running, perhaps this very step's). Never start it blindly after that one:
    wait for the lock through the check (its effect may now be there) or, for a
    retry-safe step without a check, through an empty command; then raise."""
    lock_path = host.options.lock_path
    message = f"not run: another command held the node lock {lock_path}"
    by = nodelock.holder(stderr)
    if by:
        message += f" (open by {by})"
    since = host.announce_lock_wait(step, stderr)
    if step.check is not None:
        if host.check(step, attempt, "after-lock-wait", since=since):
            raise Done()
        raise Retryable(message + " (check: not done)", retry=True)
    if not step.retry_safe:
        raise AttemptFailed(
            message + "; the step is not safe to repeat and has no check: look at "
            "the node, then run the same command again",
            retry=False,
        )
    host.run_waiting(step, ":", "wait for the node lock", attempt, CHECK_TIMEOUT, since)
    raise Retryable(message, retry=True)
