"""Plan -> the brief text ``upgrader plan`` and ``upgrader apply`` print by default.

A plan that fits a change ticket: the header (current -> target, hops, strategy), the order
of the run (per hop and phase, one line per node naming its steps; a node whose steps are
those of the node above says so), then every distinct command once with the nodes it runs
on (a long command folded at its top-level ``&&``, and an overlong piece at spaces outside
quotes, with ``\\`` continuations, so what is shown still runs when pasted; prose wrapped at
:data:`WIDTH`), what each API step does, the findings (one entry for a
finding several nodes share, naming them) and the verdict. The
skip checks and the per-node repetition are left to ``plan --detail``
(:func:`upgrader.core.render.render_text`).

Size: one line per node and about two per distinct command, so a 7-node single-hop plan is
about 75 lines and each further worker adds one (tests/golden/brief-*.txt).

Must not: print, colour, do I/O, or import paramiko, kubernetes, typer or rich.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field, replace

from upgrader.core.model import Plan, PlanEntry, Step
from upgrader.core.render import describe_step, header_lines, tail_lines, unreached_nodes

WIDTH = 120  # wrap step-name lists and fold commands longer than this (a change ticket's width)
# a piece of a command between two top-level ``&&`` is folded again at spaces only when it is
# longer than this: a slightly long piece reads better whole than broken inside an awk program
OVERLONG = 160
NAMES_SHOWN = 6  # a node list longer than this is shortened (``--detail`` has every name)

PHASE_TITLES = {
    "prestage": "prestage: every node at once, before the first drain (downloads only)",
    "first-control-plane": "first control-plane node: kubeadm upgrade apply",
    "control-plane": "other control-plane nodes, one at a time: kubeadm upgrade node",
    "control-plane-kubelet": "control-plane kubelets, one node at a time",
    "worker": "workers, one at a time",
}


@dataclass
class _Use:
    """One distinct command (or API action): the step names that run it and where."""

    text: str
    shell: bool
    names: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)  # ``nodes`` as a set: one lookup per step


@dataclass(frozen=True)
class _NodeSets:
    """A plan's nodes once (in order of first entry), its workers and control planes, so a
    node list is named in time proportional to its own length, not the plan's."""

    every: frozenset[str]
    workers: frozenset[str]
    cps: frozenset[str]


def _node_sets(plan: Plan) -> _NodeSets:
    every = dict.fromkeys(e.node for e in plan.entries)
    workers = {e.node for e in plan.entries if e.role == "worker"}
    return _NodeSets(
        every=frozenset(every),
        workers=frozenset(workers),
        cps=frozenset(n for n in every if n not in workers),
    )


def _split_outside_quotes(text: str, sep: str, *, top_level: bool) -> list[str]:
    """``text`` split at ``sep`` outside quotes and backquotes (and, when ``top_level``,
    outside ``$(...)`` and ``{...}``), so that ``sep.join(result) == text`` always holds."""
    parts: list[str] = []
    depth = 0
    quote = ""
    start = 0
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 2
                continue
            if c == quote:
                quote = ""
        elif c in "'\"`":
            quote = c
        elif c == "\\":
            i += 2
            continue
        elif top_level and c in "({":
            depth += 1
        elif top_level and c in ")}":
            depth = max(0, depth - 1)
        elif depth == 0 and text.startswith(sep, i) and i > start:
            parts.append(text[start:i])
            i += len(sep)
            start = i
            continue
        i += 1
    parts.append(text[start:])
    return parts


def _split_top_level_and(command: str) -> list[str]:
    """``a && b && c`` -> ``[a, b, c]``, splitting only at ``&&`` outside quotes, ``$(...)``,
    ``{...}`` and backquotes."""
    return _split_outside_quotes(command, " && ", top_level=True)


def _split_words(text: str) -> list[str]:
    """``text`` split at single spaces outside quotes and backquotes: where a
    backslash-newline may go without changing the command (the shell removes it outside
    single quotes)."""
    return _split_outside_quotes(text, " ", top_level=False)


def _pack(pieces: list[str], sep: str, lead: str, width: int) -> list[str]:
    """Greedy lines of ``pieces`` joined by ``sep``; each line after the first starts with
    ``lead`` (``"&& "`` for a fold at ``&&``)."""
    lines: list[str] = []
    current = pieces[0]
    for piece in pieces[1:]:
        if len(current) + len(sep) + len(piece) <= width:
            current += sep + piece
        else:
            lines.append(current)
            current = lead + piece
    lines.append(current)
    return lines


def fold_command(command: str, width: int = WIDTH, overlong: int = OVERLONG) -> list[str]:
    """A shell command as display lines: one line when it fits in ``width``, else folded at
    its top-level ``&&`` (as many pieces on a line as fit) and, where a piece is longer than
    ``overlong``, at spaces outside quotes, with backslash continuations, so the lines
    pasted together are still the same command."""
    if len(command) <= width:
        return [command]
    room = width - len(" \\")  # each folded line but the last ends with a continuation
    lines: list[str] = []
    for line in _pack(_split_top_level_and(command), " && ", "&& ", room):
        lines += [line] if len(line) <= overlong else _pack(_split_words(line), " ", "", room)
    return [line + " \\" for line in lines[:-1]] + [lines[-1]]


def _node_list(names: list[str], plan: Plan, sets: _NodeSets | None = None) -> str:
    """The nodes a command runs on, as a change ticket wants them: "all 7 nodes", "all 4
    workers", or the names (the first few and how many more). ``sets``: the plan's
    :func:`_node_sets`, computed once by the caller that names many lists."""
    if sets is None:
        sets = _node_sets(plan)
    chosen = set(names)
    if len(names) > 1 and chosen == sets.every:
        return f"all {len(sets.every)} nodes"
    if len(names) > 1 and chosen == sets.workers:
        return f"all {len(sets.workers)} workers"
    if len(names) > 1 and chosen == sets.cps:
        return f"all {len(sets.cps)} control-plane nodes"
    if len(names) <= NAMES_SHOWN:
        return ", ".join(names)
    shown = ", ".join(names[: NAMES_SHOWN - 1])
    return f"{shown} and {len(names) - NAMES_SHOWN + 1} more ({len(names)} nodes)"


def _order_lines(plan: Plan, unreached: dict[str, str]) -> list[str]:
    out = ["Order:"]
    width = max((len(e.node) for e in plan.entries), default=0)
    block: tuple[str, str] | None = None
    previous: tuple[str, ...] | None = None
    prestage: list[PlanEntry] = []
    for e in plan.entries:
        if e.phase == "prestage":  # every node at once: one line for all of them
            prestage.append(e)
            continue
        if prestage:
            out += _prestage_lines(prestage, plan)
            prestage = []
        if block != (e.hop, e.phase):
            block = (e.hop, e.phase)
            previous = None
            title = PHASE_TITLES.get(e.phase, e.phase)
            sel = plan.selection
            if e.phase == "worker" and sel is not None and sel.group_by:
                title = (
                    f"workers, groups by {sel.group_by} side by side, at most "
                    f"{sel.per_group} of a group at once"
                )
            out.append(f"  [{e.hop}] {title}")
        lead = f"    {e.node:<{width}}  "
        if e.node in unreached:
            out.append(f"{lead}(not reached, {unreached[e.node]}: its steps are not listed)")
            previous = None
            continue
        names = tuple(s.name for s in e.steps)
        if names == previous:
            out.append(f"{lead}(the same steps)")
            continue
        previous = names
        out += textwrap.wrap(
            ", ".join(names),
            width=WIDTH,
            initial_indent=lead,
            subsequent_indent=" " * len(lead),
            break_on_hyphens=False,
        )
    if prestage:
        out += _prestage_lines(prestage, plan)
    return out


def _prestage_lines(entries: list[PlanEntry], plan: Plan) -> list[str]:
    names = list(dict.fromkeys(s.name for e in entries for s in e.steps))
    hops = ", ".join(dict.fromkeys(e.hop for e in entries))
    lead = f"    on {_node_list([e.node for e in entries], plan)}: "
    return [
        f"  [{hops}] {PHASE_TITLES['prestage']}",
        *textwrap.wrap(
            ", ".join(names),
            width=WIDTH,
            initial_indent=lead,
            subsequent_indent=" " * 6,
            break_on_hyphens=False,
        ),
    ]


def _uses(plan: Plan, unreached: dict[str, str]) -> list[_Use]:
    """Every distinct command and API action, in the order the run first meets it."""
    found: dict[tuple[bool, str], _Use] = {}
    for e in plan.entries:
        if e.node in unreached:
            continue
        for s in e.steps:
            key = _use_key(s)
            use = found.setdefault(key, _Use(text=key[1], shell=key[0]))
            if s.name not in use.names:
                use.names.append(s.name)
            if s.node not in use.seen:
                use.seen.add(s.node)
                use.nodes.append(s.node)
    return list(found.values())


def _use_key(step: Step) -> tuple[bool, str]:
    if step.kind == "shell":
        return True, describe_step(step)
    return False, describe_step(replace(step, node="the node"))


def _command_lines(plan: Plan, unreached: dict[str, str]) -> list[str]:
    uses = _uses(plan, unreached)
    if not uses:
        return []
    out = [
        "Commands (each once, with the nodes it runs on; `plan --detail` shows every step of "
        "every node with its skip check):"
    ]
    sets = _node_sets(plan)
    for u in uses:
        where = f"  {' / '.join(u.names)} on {_node_list(u.nodes, plan, sets)}:"
        if u.shell:
            folded = fold_command(u.text, width=WIDTH - len("        "), overlong=OVERLONG)
            out += _wrap_prose([where])
            out.append(f"    $ {folded[0]}")
            out += [f"        {line}" for line in folded[1:]]
        else:  # what an API step does fits beside its name
            out += _wrap_prose([f"{where} > {u.text}"])
    return out


def _wrap_prose(lines: list[str]) -> list[str]:
    """Lines of prose longer than :data:`WIDTH` wrapped at spaces, continuation lines
    indented four more than the line they continue (commands are folded, not wrapped)."""
    out: list[str] = []
    for line in lines:
        if len(line) <= WIDTH:
            out.append(line)
            continue
        indent = " " * (len(line) - len(line.lstrip(" ")) + 4)
        out += textwrap.wrap(
            line,
            width=WIDTH,
            subsequent_indent=indent,
            break_on_hyphens=False,
            break_long_words=False,
        )
    return out


def render_brief(plan: Plan) -> str:
    """The plan as a change-ticket summary, plain text ending with a newline."""
    out = _wrap_prose(header_lines(plan))
    if plan.entries:
        unreached = unreached_nodes(plan)
        out.append("")
        out += _order_lines(plan, unreached)
        commands = _command_lines(plan, unreached)
        if commands:
            out.append("")
            out += commands
    out += tail_lines(plan, merge_nodes=True)  # findings stay one line each: grep finds them whole
    return "\n".join(out) + "\n"
