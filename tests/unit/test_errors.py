def test_a_refusal_exits_with_the_code_of_its_cause() -> None:
    from upgrader.errors import ExitCode, refusal_exit_code

    assert refusal_exit_code(["DOWNGRADE", "SKEW_APISERVER"]) == ExitCode.BLOCKED
    assert refusal_exit_code(["DOWNGRADE", "API_UNREACHABLE"]) == ExitCode.KUBERNETES
    assert refusal_exit_code(["API_UNREACHABLE", "HOST_KEY_REJECTED"]) == ExitCode.TRANSPORT
    assert refusal_exit_code(iter(["NODE_UNREACHABLE"])) == ExitCode.TRANSPORT
    assert refusal_exit_code([]) == ExitCode.BLOCKED
    # another run holds the cluster Lease: 6, as when the lock itself refuses (README);
    # with other blockers to fix, 3
    assert refusal_exit_code(["LOCK_HELD"]) == ExitCode.LOCKED
    assert refusal_exit_code(["LOCK_HELD", "DOWNGRADE"]) == ExitCode.BLOCKED
    assert refusal_exit_code(["LOCK_HELD", "NODE_UNREACHABLE"]) == ExitCode.TRANSPORT
