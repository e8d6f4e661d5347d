"""The node environment: variables (proxies) exported for every command upgrader runs on a node.

Owns the rules for the inventory's ``node_env`` (inventory-wide, and per node: a node's
value wins, name by name): which names are allowed, which values, how the inventory-wide
and per-node mappings merge, how a value is shown (a proxy URL's ``user:password@`` as
``***@``), and the shell text and stdin bytes that carry the variables to a node.

How the values travel: never in the command line (a command line is visible in the node's
process list, ``ps``, ``/proc/PID/cmdline``). The transport writes :func:`payload` to the
command's stdin, after the sudo password when there is one; :func:`prologue`, the first
lines of the command run as root (inside ``sudo sh -c``, since sudo resets the
environment), skips whatever comes before a per-connection marker line (a password sudo
did not need), reads ``NAME`` / ``VALUE`` line pairs up to an empty line, exports them, and
then points stdin at ``/dev/null``. The command line holds only the marker.

Denied names (:data:`DENIED`, and every name starting with ``LD_``, ``BASH_FUNC_`` or
``__upgrader_``): what changes which program runs or how a shell parses
(``PATH``, ``LD_PRELOAD``, ``IFS``, ``BASH_ENV``, ``ENV``, ``PS4``, ``SHELLOPTS``, ...),
whose home it is (``HOME``, ``USER``), and upgrader's own shell variables.

Must not: do I/O, log, or let a value reach a command line, a plan, a log or a state file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_VALUE = 4096
DENIED = frozenset(
    {
        "PATH", "HOME", "IFS", "SHELL", "BASH_ENV", "ENV", "PS1", "PS2", "PS4",
        "SHELLOPTS", "BASHOPTS", "CDPATH", "GLOBIGNORE", "PWD", "OLDPWD", "USER",
        "LOGNAME", "SUDO_USER", "SUDO_UID", "SUDO_GID", "SUDO_COMMAND", "TMPDIR",
        "PYTHONPATH", "PYTHONSTARTUP", "PERL5LIB", "PERL5OPT", "RUBYOPT", "NODE_OPTIONS",
        "KUBECONFIG", "PROMPT_COMMAND", "MAIL", "TERM",
    }
)  # fmt: skip
DENIED_PREFIXES = ("LD_", "BASH_FUNC_", "__upgrader_")

Env = tuple[tuple[str, str], ...]

# scheme://user:password@host, or user:password@host at the start of a value or list item
_USERINFO_RE = re.compile(r"(^|://|[,\s])[^\s/@,]+@")


def name_problem(name: object) -> str | None:
    """Why ``name`` may not be exported, or ``None``."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        return "is not a variable name (letters, digits and '_', not starting with a digit)"
    if name in DENIED or name.startswith(DENIED_PREFIXES):
        return (
            "may not be set (it changes which program runs or how the shell parses: "
            "see the README's Security section)"
        )
    return None


def value_problem(value: object) -> str | None:
    """Why ``value`` may not be exported, or ``None``. Never quotes the value: it may hold
    a password."""
    if not isinstance(value, str):
        return "must be a string (quote it in YAML)"
    if any(c in value for c in "\n\r\x00"):
        return "may not contain a newline or NUL"
    if len(value) > MAX_VALUE:
        return f"is longer than {MAX_VALUE} characters"
    return None


def merged(*layers: Mapping[str, str] | None) -> Env:
    """The layers (inventory-wide first, the node's last: later wins name by name) as one
    sorted tuple of ``(name, value)``."""
    out: dict[str, str] = {}
    for layer in layers:
        out.update(layer or {})
    return tuple(sorted(out.items()))


def shown(value: str) -> str:
    """``value`` with the ``user:password@`` of every URL in it as ``***@``."""
    return _USERINFO_RE.sub(r"\1***@", value)


def credentials(env: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """The ``user:password`` parts (and the passwords alone) of the values: exact secrets
    for the redactor, so that a tool that prints the proxy without its scheme is masked."""
    out: list[str] = []
    for _name, value in env:
        for m in re.finditer(r"(?:^|://|[,\s])([^\s/@,]+)@", value):
            userinfo = m.group(1)
            if ":" in userinfo:  # a user name alone is no secret (and may be a common word)
                out.append(userinfo)
                out.append(userinfo.split(":", 1)[1])
    return tuple(dict.fromkeys(s for s in out if s))


def summary(names: Iterable[str]) -> str:
    """The plan's header line for the exported names (never the values)."""
    return f"Node environment: {', '.join(sorted(set(names)))} (values redacted)"


def prologue(marker: str) -> str:
    """Shell lines that export the variables :func:`payload` sends on stdin, then close
    stdin (``/dev/null``). ``marker``: a word of letters, digits and '-'."""
    if not re.fullmatch(r"[A-Za-z0-9-]+", marker):
        raise ValueError(f"bad marker {marker!r}")
    return (
        "while IFS= read -r __upgrader_l; do "
        f'[ "$__upgrader_l" = {marker} ] && break; done\n'
        'while IFS= read -r __upgrader_n && [ -n "$__upgrader_n" ]; do '
        "IFS= read -r __upgrader_v || break\n"
        '  case "$__upgrader_n" in [!A-Za-z_]*|*[!A-Za-z0-9_]*) continue ;; esac\n'
        '  export "$__upgrader_n=$__upgrader_v"\n'
        "done\n"
        "exec </dev/null\n"
        "unset __upgrader_l __upgrader_n __upgrader_v\n"
    )


def payload(env: Env, marker: str) -> bytes:
    """What the transport writes to stdin (after the sudo password line, if any)."""
    for name, value in env:
        problem = name_problem(name) or value_problem(value)
        if problem:
            raise ValueError(f"node_env {name}: {problem}")
    lines = [marker, *(f"{n}\n{v}" for n, v in env), ""]
    return ("\n".join(lines) + "\n").encode()
