"""A small command-line flag parser shared by the simulated node tools.

Owns splitting ``argv`` into positionals and flags the way cobra (kubeadm, kubectl) and
getopt-style tools accept them: ``--flag=value``, ``--flag value``, ``-f value``,
``-fvalue``, ``-f=value``, bundled short booleans (``-qy``), ``--bool=false``, ``--``.

Must not: print anything; tools decide how to word an unknown flag.
"""

from __future__ import annotations


class Parsed:
    """Positionals, flags by canonical name, unknown flags, a flag left without value."""

    def __init__(
        self,
        positional: list[str] | None = None,
        flags: dict[str, str] | None = None,
        unknown: list[str] | None = None,
    ) -> None:
        self.positional = list(positional or [])
        self.flags = dict(flags or {})
        self.unknown = list(unknown or [])
        self.missing_value: str | None = None

    def has(self, *names: str) -> bool:
        return any(n in self.flags and self.flags[n] not in ("false", "0") for n in names)

    def get(self, *names: str) -> str | None:
        for n in names:
            if n in self.flags:
                return self.flags[n]
        return None


def parse(
    args: list[str],
    value_flags: set[str] | frozenset[str] = frozenset(),
    bool_flags: set[str] | frozenset[str] = frozenset(),
    aliases: dict[str, str] | None = None,
) -> Parsed:
    """Flags are named with their dashes (``--force``, ``-y``); ``aliases`` maps a short or
    alternative name to the canonical one."""
    aliases = aliases or {}
    out = Parsed()

    def canon(name: str) -> str:
        return aliases.get(name, name)

    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            out.positional.extend(args[i:])
            break
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg.partition("=")
            name = canon(name)
            if name in value_flags:
                if eq:
                    out.flags[name] = value
                elif i < len(args):
                    out.flags[name] = args[i]
                    i += 1
                else:
                    out.missing_value = name
            elif name in bool_flags:
                out.flags[name] = value.lower() if eq else "true"
            else:
                out.unknown.append(arg)
            continue
        if arg.startswith("-") and len(arg) > 1 and not arg[1].isdigit():
            j = 1
            while j < len(arg):
                name = canon("-" + arg[j])
                rest = arg[j + 1 :]
                if name in value_flags:
                    if rest:
                        out.flags[name] = rest[1:] if rest.startswith("=") else rest
                    elif i < len(args):
                        out.flags[name] = args[i]
                        i += 1
                    else:
                        out.missing_value = name
                    break
                if name in bool_flags:
                    out.flags[name] = "true"
                    j += 1
                    continue
                out.unknown.append(arg)
                break
            continue
        out.positional.append(arg)
    return out
