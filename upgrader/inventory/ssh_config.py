"""The operator's ssh_config: what it says about one host, and whether it said it for that host.

Owns reading ``~/.ssh/config`` through ``paramiko.SSHConfig`` (HostName, User, Port,
IdentityFile, ProxyJump, validated) and labelling each value by the kind of block that
supplied it, so that ``targets`` can rank a ``Host *`` default below the inventory:

* **generic** -- a block that applies to every host: the lines before the first
  ``Host``/``Match``; a ``Host`` line with a catch-all pattern (``*``, ``?*``), exclusions
  included (``Host * !bastion``); a ``Match`` with no positive ``host``/``originalhost``
  criterion naming particular hosts (``Match all``, ``Match user ops``, ``Match !host x``,
  ``Match host *``, ``Match exec ...``).
* **specific** -- a block that singles out some hosts: ``Host w-1``, ``Host *.corp``,
  ``Match host w-*``.

The value itself is ssh's (the first value obtained wins); only its label depends on the
block. paramiko has no API naming the block a value came from, so the file is parsed twice:
whole, and with the generic blocks cut out (block boundaries are the ``Host``/``Match``
lines, recognised with paramiko's own line syntax). A value is specific when the cut-down
file gives the host the same value, generic otherwise. Unlike comparing against a made-up
host name, this keeps ``%h`` values of ``Host *`` generic, and keeps a value that a host's
own block repeats from ``Host *`` specific. Approximate only where a ``Match host`` depends on
a ``HostName`` that a generic block set.

``Include`` is honoured as ``ssh`` honours it (:func:`expand_includes`): each argument a
glob (``~`` expanded; relative paths under ``~/.ssh``, as for a user configuration),
matches read in lexical order, a pattern matching nothing skipped, nesting limited to 16
levels, an included file refused unless owned by you or root and writable by no one else
(ssh's own rule). An Include inside a ``Host``/``Match`` block applies only where that
block does: the included text is inlined with each of its own ``Host``/``Match`` headers
rewritten as a ``Match`` that also requires the enclosing block's conditions, and the
enclosing block re-opened after it. ``%`` tokens and ``${VAR}`` in Include paths are refused
(one line naming file and line), never ignored.

Must not: decide precedence against the inventory (``targets`` does), open connections or
read keys. (paramiko runs a ``Match exec`` command, as ssh does, and canonicalisation
resolves names: both only when the operator's file asks for them.)
"""

from __future__ import annotations

import glob
import os
import shlex
from dataclasses import dataclass, replace
from io import StringIO
from pathlib import Path
from typing import cast

import paramiko

from upgrader.errors import ConfigError
from upgrader.inventory.problems import one_line
from upgrader.inventory.schema import check_user, normalize_address

DEFAULT_SSH_CONFIG = Path("~/.ssh/config")

# ssh_config key -> HostConfig field
_KEYS = {
    "hostname": "hostname",
    "user": "user",
    "port": "port",
    "identityfile": "identity_file",
    "proxyjump": "proxy_jump",
}
_HOST_CRITERIA = ("host", "originalhost")
MAX_INCLUDE_DEPTH = 16  # OpenSSH's READCONF_MAX_DEPTH
USER_CONFIG_DIR = Path("~/.ssh")
_NO_PARAM_CRITERIA = ("all", "canonical", "final")


@dataclass(frozen=True)
class HostConfig:
    """What ssh_config says about one Host alias; ``None`` means "not set"."""

    hostname: str | None = None
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    proxy_jump: str | None = None  # "none" when ProxyJump is explicitly disabled


@dataclass(frozen=True)
class HostLayers:
    """ssh_config's answer for one host split by origin; each setting is in at most one."""

    specific: HostConfig = HostConfig()  # from blocks that single out this host
    generic: HostConfig = HostConfig()  # from blocks that apply to every host


def is_catch_all(pattern: str) -> bool:
    """True for an ssh_config host pattern that matches every host name (``*``, ``?*``)."""
    rest = pattern.replace("*", "")
    return rest != pattern and rest in ("", "?")


def is_generic_header(keyword: str, value: str) -> bool:
    """Whether a ``Host``/``Match`` line (``keyword`` lower-case) opens a block that
    applies to every host rather than to hosts it names. ``value`` is already known to
    parse (paramiko accepted the file)."""
    tokens = shlex.split(value)
    if keyword == "host":
        return any(is_catch_all(p) for p in tokens)
    while tokens:
        criterion = tokens.pop(0)
        negated, kind = criterion.startswith("!"), criterion.lstrip("!").lower()
        if kind in _NO_PARAM_CRITERIA or not tokens:
            continue
        patterns = tokens.pop(0).split(",")
        if kind in _HOST_CRITERIA and not negated and not any(map(is_catch_all, patterns)):
            return False
    return True


def specific_blocks(text: str) -> str:
    """``text`` without its generic blocks (nor the lines before its first Host/Match)."""
    kept: list[str] = []
    keep = False  # the implicit first block applies to every host
    for line in StringIO(text):  # split exactly as paramiko's parser does
        match = paramiko.SSHConfig.SETTINGS_REGEX.match(line.strip())
        keyword = match.group(1).lower() if match else ""
        if match and keyword in ("host", "match"):
            keep = not is_generic_header(keyword, match.group(2))
        if keep:
            kept.append(line if line.endswith("\n") else line + "\n")
    return "".join(kept)


def _raw(found: paramiko.SSHConfigDict, key: str) -> str | None:
    """One setting as paramiko returns it (IdentityFile: the first one, the one we use)."""
    value = cast(object, found.get(key))
    if isinstance(value, list):
        value = value[0] if value else None
    return None if value is None else str(value)


# --------------------------------------------------------------------------- Include

Criteria = tuple[str, ...] | None  # Match criteria tokens; None: every host


def _criteria(keyword: str, value: str) -> Criteria:
    """The Match criteria equivalent to a ``Host``/``Match`` header (``all`` dropped)."""
    tokens = shlex.split(value)
    if keyword == "host":
        return ("originalhost", ",".join(tokens))
    out: list[str] = []
    while tokens:
        criterion = tokens.pop(0)
        kind = criterion.lstrip("!").lower()
        if kind in _NO_PARAM_CRITERIA:
            if kind != "all":
                out.append(criterion)
            continue
        out += [criterion, tokens.pop(0)] if tokens else [criterion]
    return tuple(out) or None


def _combine(outer: Criteria, own: Criteria) -> Criteria:
    if outer is None:
        return own
    return outer if own is None else (*outer, *own)


def _match_line(criteria: Criteria) -> str:
    if criteria is None:
        return "Match all\n"
    return "Match " + " ".join(shlex.quote(t) for t in criteria) + "\n"


def _read_included(path: Path, where: str) -> str:
    """An included file's text, after ssh's ownership and permission rule."""
    try:
        st = path.stat()
        if st.st_uid not in (0, os.getuid()) or st.st_mode & 0o022:
            raise ConfigError(
                f"{where}: Include {path}: bad owner or permissions (must be owned by you "
                "or root and writable by no one else, as ssh requires)"
            )
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(one_line(f"{where}: Include {path}: cannot read: {exc}")) from None


def _include_paths(value: str, where: str) -> list[Path]:
    try:
        args = shlex.split(value)
    except ValueError as exc:
        raise ConfigError(one_line(f"{where}: Include {value!r}: {exc}")) from None
    found: list[Path] = []
    for arg in args:
        if "%" in arg or "${" in arg:
            raise ConfigError(
                f"{where}: Include {arg!r}: %-tokens and ${{VAR}} in Include are not "
                "supported; write the path out"
            )
        pattern = Path(arg).expanduser()
        if not pattern.is_absolute():
            pattern = USER_CONFIG_DIR.expanduser() / pattern
        found += [Path(p) for p in sorted(glob.glob(str(pattern)))]
    return found


def expand_includes(path: Path, text: str) -> str:
    """``text`` (the file ``path``) with every ``Include`` replaced by what it includes,
    conditions kept (see the module docstring). Raises ConfigError naming file and line."""
    out: list[str] = []
    _expand(path, text, None, 0, out)
    return "".join(out)


def _expand(path: Path, text: str, outer: Criteria, depth: int, out: list[str]) -> bool:
    """Append ``text`` to ``out`` inside the block ``outer``; True when it opened blocks."""
    if depth > MAX_INCLUDE_DEPTH:
        raise ConfigError(
            f"{path}: Include nested more than {MAX_INCLUDE_DEPTH} levels deep (a loop?)"
        )
    current: Criteria = outer  # the conditions of the block open at this line
    reopen = _match_line(outer)  # the line that re-opens it after an Include
    opened = False
    for lineno, line in enumerate(StringIO(text), 1):  # split as paramiko splits
        line = line if line.endswith("\n") else line + "\n"
        match = paramiko.SSHConfig.SETTINGS_REGEX.match(line.strip())
        keyword = match.group(1).lower() if match else ""
        value = match.group(2) if match else ""
        if keyword in ("host", "match"):
            try:
                own = _criteria(keyword, value)
            except ValueError as exc:
                raise ConfigError(one_line(f"{path} line {lineno}: {exc}")) from None
            opened = True
            current = _combine(outer, own)
            reopen = line if outer is None else _match_line(current)
            out.append(reopen)
        elif keyword == "include":
            where = f"{path} line {lineno}"
            for included in _include_paths(value, where):
                body = _read_included(included, where)
                if _expand(included, body, current, depth + 1, out):
                    out.append(reopen)
        else:
            out.append(line)
    return opened


class SSHConfigFile:
    """A parsed ssh_config file. Lookups validate what they return."""

    def __init__(self, path: Path, config: paramiko.SSHConfig, specific: paramiko.SSHConfig):
        self.path = path
        self._config = config
        self._specific = specific  # the same file, generic blocks cut out

    @classmethod
    def load(cls, path: Path) -> SSHConfigFile | None:
        """Parse ``path``; ``None`` when it does not exist (an ssh_config is optional)."""
        path = path.expanduser()
        if not path.exists():
            return None
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(one_line(f"{path}: cannot read ssh_config: {exc}")) from None
        return cls.from_text(path, text)

    @classmethod
    def from_text(cls, path: Path, text: str) -> SSHConfigFile:
        """Parse ssh_config ``text``; ``path`` names it in errors and its Includes are
        read."""
        text = expand_includes(path, text)
        try:
            config = paramiko.SSHConfig.from_text(text)
            specific = paramiko.SSHConfig.from_text(specific_blocks(text))
        except Exception as exc:  # paramiko raises ConfigParseError and plain errors
            raise ConfigError(one_line(f"{path}: not a valid ssh_config: {exc}")) from None
        return cls(path, config, specific)

    def layers(self, alias: str) -> HostLayers:
        """What ssh itself would use for ``alias``, split into the host's specific settings
        and the generic ones."""
        full = self._evaluate(self._config, alias)
        narrow = self._evaluate(self._specific, alias)
        found = self._validate(alias, full)
        generic = {field for key, field in _KEYS.items() if _raw(full, key) != _raw(narrow, key)}
        specific = set(_KEYS.values()) - generic
        return HostLayers(
            specific=replace(found, **dict.fromkeys(generic)),
            generic=replace(found, **dict.fromkeys(specific)),
        )

    def _evaluate(self, config: paramiko.SSHConfig, alias: str) -> paramiko.SSHConfigDict:
        try:
            return config.lookup(alias)
        except Exception as exc:  # Match exec, bad tokens, ...
            where = f"{self.path}: Host {alias}"
            raise ConfigError(one_line(f"{where}: cannot evaluate: {exc}")) from None

    def _validate(self, alias: str, found: paramiko.SSHConfigDict) -> HostConfig:
        where = f"{self.path}: Host {alias}"
        try:
            hostname = _raw(found, "hostname")
            host = normalize_address(hostname) if hostname and hostname != alias else None
            user = _raw(found, "user")
            checked_user = check_user(user) if user is not None else None
            port_text = _raw(found, "port")
            port: int | None = None
            if port_text is not None:
                if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
                    raise ValueError(f"Port {port_text!r} is not a number from 1 to 65535")
                port = int(port_text)
        except ValueError as exc:
            raise ConfigError(one_line(f"{where}: {exc}")) from None
        identity = _raw(found, "identityfile")
        jump = _raw(found, "proxyjump")
        return HostConfig(
            hostname=host,
            user=checked_user,
            port=port,
            identity_file=str(Path(identity).expanduser()) if identity else None,
            proxy_jump=jump.strip() if jump else None,
        )
