"""The one redaction function: what every sink that keeps or shows text runs it through.

Owns the rules that turn a credential into ``***`` wherever upgrader writes or prints text
that came from a node, a command or an error: the state file (step messages, stderr tails),
the ``--events`` file, the per-node transcripts, the progress lines and the CLI's error
line. Two kinds of rule:

- exact values the caller knows (the sudo password, the API bearer token): every
  occurrence, longest first, whatever their length (a 3-character password is masked too:
  a garbled line is better than a leaked password);
- shapes that are credentials whoever holds them: kubeadm bootstrap tokens
  (``[a-z0-9]{6}.[a-z0-9]{16}``, bare or after ``--token``), ``--certificate-key`` values
  (and kubeadm's ``Using certificate key:`` line), discovery-token CA cert hashes
  (``sha256:<64 hex>``, not an image digest ``@sha256:...``), ``Authorization: Bearer``
  and ``bearer`` tokens, ``--token``, ``password=``/``password:`` values, and the
  userinfo of a URL (``http://user:pass@proxy:3128`` -> ``http://***@proxy:3128``).

Must not: do I/O, log, or decide where text goes. Pure standard library.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

MASK = "***"

Redactor = Callable[[str], str]

# (pattern, replacement). Group 1, when present, is kept (the flag or label before the value).
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1" + MASK),
    (re.compile(r"(?i)(--token[=\s]+)\S+"), r"\1" + MASK),
    (re.compile(r"(?i)(--certificate-key[=\s]+)\S+"), r"\1" + MASK),
    (re.compile(r"(?i)(certificate[ _-]key:?\s+)[0-9a-f]{64}\b"), r"\1" + MASK),
    (re.compile(r"(?i)(--discovery-token-ca-cert-hash[=\s]+)\S+"), r"\1" + MASK),
    (re.compile(r"(?i)(?<![@\w])(sha256:)[0-9a-f]{64}\b"), r"\1" + MASK),
    (re.compile(r"(?<![A-Za-z0-9])[a-z0-9]{6}\.[a-z0-9]{16}(?![A-Za-z0-9])"), MASK),
    (re.compile(r"(?i)(password[=:]\s*)\S+"), r"\1" + MASK),
    # a URL's user:password@ (a proxy URL of the inventory's node_env): the whole userinfo
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@'\"]+@"), r"\1" + MASK + "@"),
)


def _exact(secrets: Iterable[str]) -> re.Pattern[str] | None:
    values = sorted({s for s in secrets if s}, key=len, reverse=True)
    if not values:
        return None
    return re.compile("|".join(re.escape(v) for v in values))


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret value and every credential-shaped value as ``***``."""
    return make_redactor(secrets)(text)


def make_redactor(secrets: Iterable[str] = ()) -> Redactor:
    """A :func:`redact` bound to ``secrets`` (compiled once: the engine calls it per line)."""
    exact = _exact(secrets)

    def run(text: str) -> str:
        out = exact.sub(MASK, text) if exact is not None else text
        for pat, repl in _RULES:
            out = pat.sub(repl, out)
        return out

    return run


def redact_obj(value: Any, redactor: Redactor) -> Any:
    """``value`` (JSON-ready: dicts, lists, strings, numbers) with every string redacted;
    before serialising, so that a secret JSON would escape cannot slip past."""
    if isinstance(value, str):
        return redactor(value)
    if isinstance(value, Mapping):
        return {k: redact_obj(v, redactor) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_obj(v, redactor) for v in value]
    return value
