"""What a refused input says: bad inventory values, flags, specs and files end in one
``ConfigError`` of one line with the bad-input exit code (the project's rule for bad input).

Owns :func:`refusal`. Must not: catch any other error, or judge the message beyond that
rule (each test checks what its message names).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from upgrader.errors import ConfigError, ExitCode


def refusal(call: Callable[..., object], *args: Any, **kwargs: Any) -> str:
    """The message of the ConfigError ``call(*args, **kwargs)`` raises, checked to be one
    line and to carry the bad-input exit code."""
    with pytest.raises(ConfigError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    assert info.value.exit_code == ExitCode.BAD_INPUT
    return message
