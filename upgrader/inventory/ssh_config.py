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

Must not: decide precedence against the inventory (``targets`` does), open connections or
read keys. (paramiko runs a ``Match exec`` command, as ssh does, and canonicalisation
resolves names: both only when the operator's file asks for them.)
"""

from __future__ import annotations

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
        """Parse ssh_config ``text``; ``path`` names it in errors."""
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
