"""From inventory settings to an SSHTarget per node, with ``~/.ssh/config`` honoured.

Owns the reading of the operator's ssh_config (through ``paramiko.SSHConfig``: Host
aliases' HostName, User, Port, IdentityFile, ProxyJump) and the merge order
``inventory ssh defaults < ssh_config for the address < the node's own overrides``. A jump
host (``user@host:port``, or a comma-separated chain) becomes nested ``SSHTarget.jump``
values, each hop also looked up in ssh_config.

Must not: open network connections, read keys or secrets, or run anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import paramiko

from upgrader.errors import ConfigError
from upgrader.inventory.problems import one_line
from upgrader.inventory.schema import (
    NodeSpec,
    SSHDefaults,
    check_user,
    normalize_address,
    parse_jump_host,
)
from upgrader.transport.base import SSHTarget

DEFAULT_SSH_CONFIG = Path("~/.ssh/config")
_MAX_JUMP_HOPS = 8


@dataclass(frozen=True)
class HostConfig:
    """What ssh_config says about one Host alias; ``None`` means "not set"."""

    hostname: str | None = None
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    proxy_jump: str | None = None  # "none" when ProxyJump is explicitly disabled


class SSHConfigFile:
    """A parsed ssh_config file. Lookups validate what they return."""

    def __init__(self, path: Path, config: paramiko.SSHConfig) -> None:
        self.path = path
        self._config = config

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
        try:
            config = paramiko.SSHConfig.from_text(text)
        except Exception as exc:  # paramiko raises ConfigParseError and plain errors
            raise ConfigError(one_line(f"{path}: not a valid ssh_config: {exc}")) from None
        return cls(path, config)

    def lookup(self, alias: str) -> HostConfig:
        where = f"{self.path}: Host {alias}"
        try:
            found = self._config.lookup(alias)
        except Exception as exc:  # Match exec, bad tokens, ...
            raise ConfigError(one_line(f"{where}: cannot evaluate: {exc}")) from None
        try:
            hostname = found.get("hostname")
            host = normalize_address(hostname) if hostname and hostname != alias else None
            user = check_user(found["user"]) if "user" in found else None
            port: int | None = None
            if "port" in found:
                text = str(found["port"])
                if not text.isdigit() or not 1 <= int(text) <= 65535:
                    raise ValueError(f"Port {text!r} is not a number from 1 to 65535")
                port = int(text)
        except ValueError as exc:
            raise ConfigError(one_line(f"{where}: {exc}")) from None
        identity = found.get("identityfile")
        identity_file = str(Path(identity[0]).expanduser()) if identity else None
        jump = found.get("proxyjump")
        return HostConfig(host, user, port, identity_file, jump.strip() if jump else None)


def _first(*values: str | None) -> str | None:
    for value in values:
        if value is not None:
            return value
    return None


def build_target(
    node: NodeSpec,
    ssh: SSHDefaults,
    ssh_config: SSHConfigFile | None,
    source: str,
) -> SSHTarget:
    """The merged SSHTarget for ``node``. ``source`` names the inventory in errors."""
    found = ssh_config.lookup(node.address) if ssh_config is not None else HostConfig()
    port = node.port if node.port is not None else (found.port or ssh.port)
    identity = node.identity_file or found.identity_file or ssh.identity_file
    where = f"{source}: node {node.name}: jump_host"
    jump_spec = node.jump_host
    if jump_spec is None and found.proxy_jump is not None and ssh_config is not None:
        jump_spec, where = found.proxy_jump, f"{ssh_config.path}: Host {node.address}: ProxyJump"
    if jump_spec is None:
        jump_spec, where = ssh.jump_host, f"{source}: ssh.jump_host"
    jump: SSHTarget | None = None
    if jump_spec is not None and jump_spec.lower() != "none":
        jump = _jump_chain(jump_spec, ssh, ssh_config, where)
    return SSHTarget(
        node=node.name,
        host=found.hostname or node.address,
        port=port,
        user=_first(node.user, found.user, ssh.user),
        identity_file=str(identity) if identity is not None else None,
        known_hosts=str(ssh.known_hosts) if ssh.known_hosts is not None else None,
        host_key_policy=ssh.host_key_policy,
        sudo=node.sudo if node.sudo is not None else ssh.sudo,
        sudo_password_env=ssh.sudo_password_env,
        connect_timeout=ssh.connect_timeout,
        keepalive=ssh.keepalive,
        jump=jump,
    )


def _jump_chain(
    spec: str, ssh: SSHDefaults, ssh_config: SSHConfigFile | None, where: str
) -> SSHTarget:
    """``a,b`` (connect to a, then b, then the node) -> target b whose jump is a."""
    hops = [h.strip() for h in spec.split(",")]
    if len(hops) > _MAX_JUMP_HOPS or not all(hops):
        raise ConfigError(f"{where}: {spec!r} is not a list of user@host:port hops")
    previous: SSHTarget | None = None
    for hop in hops:
        try:
            user, alias, port = parse_jump_host(hop)
        except ValueError as exc:
            raise ConfigError(one_line(f"{where}: {exc}")) from None
        found = ssh_config.lookup(alias) if ssh_config is not None else HostConfig()
        identity = found.identity_file or ssh.identity_file
        previous = SSHTarget(
            node=f"jump {alias}",
            host=found.hostname or alias,
            port=port or found.port or 22,
            user=_first(user, found.user, ssh.user),
            identity_file=str(identity) if identity is not None else None,
            known_hosts=str(ssh.known_hosts) if ssh.known_hosts is not None else None,
            host_key_policy=ssh.host_key_policy,
            sudo=False,
            connect_timeout=ssh.connect_timeout,
            keepalive=ssh.keepalive,
            jump=previous,
        )
    assert previous is not None
    return previous
