"""Reading the brief plan in tests: :func:`unfold` joins the commands it folded (a
backslash-newline and the next line's indent, which the shell removes too), so a test can
look for a whole command; :func:`flat` also joins the prose it wrapped at 120 columns."""

from __future__ import annotations

import re


def unfold(text: str) -> str:
    return re.sub(r" \\\n +", " ", text)


def flat(text: str) -> str:
    return " ".join(unfold(text).split())
