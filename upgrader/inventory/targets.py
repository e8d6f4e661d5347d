"""From inventory settings to an SSHTarget per node, with ``~/.ssh/config`` honoured.

Owns the merge of the inventory's ``ssh:`` defaults, the operator's ssh_config (read and
labelled by ``ssh_config``) and a node's own keys. Per setting (User, Port, IdentityFile,
ProxyJump), the first of these that gives a value wins:

1. the node's own key in the inventory (``nodes[].user`` ...);
2. ssh_config, from a block that singles this host out (``Host w-1``, ``Host *.corp``,
   ``Match host w-*``);
3. the inventory's ``ssh:`` defaults -- a key spelled out there (``ssh.port`` counts only
   when written, although it defaults to 22);
4. ssh_config, from a block that applies to every host (``Host *``, ``Host * !bastion``,
   lines before the first ``Host``, ``Match all``);
5. built-in defaults (port 22; user and key: paramiko's, i.e. the local user and the agent).

So a ``Host *`` in ~/.ssh/config fills gaps but never overrides what the inventory says for
its nodes. HostName is ssh_config's (any block) when set, else the node's address. A jump
host (``user@host:port``, or a comma-separated chain) becomes nested ``SSHTarget.jump``
values, each hop also looked up in ssh_config with the same order (its own ``user@`` and
``:port`` first; inventory ``ssh.port`` is not used for hops).

Must not: open network connections, read keys or secrets, or run anything.
"""

from __future__ import annotations

from typing import TypeVar

from upgrader.core.fields import built_from
from upgrader.errors import ConfigError
from upgrader.inventory.problems import one_line
from upgrader.inventory.schema import NodeSpec, SSHDefaults, parse_jump_host
from upgrader.inventory.ssh_config import (
    DEFAULT_SSH_CONFIG,
    HostConfig,
    HostLayers,
    SSHConfigFile,
)
from upgrader.transport.base import SSHTarget

__all__ = ["DEFAULT_SSH_CONFIG", "HostConfig", "SSHConfigFile", "build_target"]

_MAX_JUMP_HOPS = 8
_T = TypeVar("_T")


def _first(*values: _T | None) -> _T | None:
    for value in values:
        if value is not None:
            return value
    return None


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def _layers(ssh_config: SSHConfigFile | None, alias: str) -> HostLayers:
    return ssh_config.layers(alias) if ssh_config is not None else HostLayers()


def build_target(
    node: NodeSpec,
    ssh: SSHDefaults,
    ssh_config: SSHConfigFile | None,
    source: str,
    settings_form: str = "native",
    env: tuple[tuple[str, str], ...] = (),
) -> SSHTarget:
    """The merged SSHTarget for ``node``. ``source`` names the inventory in errors;
    ``settings_form`` (native or kubespray) is how the transport's hints name settings."""
    found = _layers(ssh_config, node.address)
    specific, generic = found.specific, found.generic
    ssh_port = ssh.port if "port" in ssh.model_fields_set else None
    port = _first(node.port, specific.port, ssh_port, generic.port) or ssh.port
    user = _first(node.user, specific.user, ssh.user, generic.user)
    identity = _first(
        _str(node.identity_file),
        specific.identity_file,
        _str(ssh.identity_file),
        generic.identity_file,
    )
    jump_spec, where = _pick_jump(node, specific, ssh, generic, ssh_config, source)
    jump: SSHTarget | None = None
    if jump_spec is not None and jump_spec.lower() != "none":
        jump = _jump_chain(jump_spec, ssh, ssh_config, where, settings_form)
    # host_key_policy, sudo_password_env, connect_timeout and keepalive: the defaults'
    return built_from(
        SSHTarget,
        ssh,
        node=node.name,
        host=specific.hostname or generic.hostname or node.address,
        port=port,
        user=user,
        identity_file=identity,
        known_hosts=_str(ssh.known_hosts),
        sudo=node.sudo if node.sudo is not None else ssh.sudo,
        jump=jump,
        env=env,
        settings_form=settings_form,
    )


def _pick_jump(
    node: NodeSpec,
    specific: HostConfig,
    ssh: SSHDefaults,
    generic: HostConfig,
    ssh_config: SSHConfigFile | None,
    source: str,
) -> tuple[str | None, str]:
    """The jump spec that wins for ``node`` and where it was written (for errors)."""
    in_ssh_config = f"{ssh_config.path if ssh_config else ''}: Host {node.address}: ProxyJump"
    candidates = (
        (node.jump_host, f"{source}: node {node.name}: jump_host"),
        (specific.proxy_jump, in_ssh_config),
        (ssh.jump_host, f"{source}: ssh.jump_host"),
        (generic.proxy_jump, in_ssh_config),
    )
    for spec, where in candidates:
        if spec is not None:
            return spec, where
    return None, ""


def _jump_chain(
    spec: str,
    ssh: SSHDefaults,
    ssh_config: SSHConfigFile | None,
    where: str,
    settings_form: str = "native",
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
        found = _layers(ssh_config, alias)
        specific, generic = found.specific, found.generic
        previous = SSHTarget(
            node=f"jump {alias}",
            host=specific.hostname or generic.hostname or alias,
            port=_first(port, specific.port, generic.port) or 22,
            user=_first(user, specific.user, ssh.user, generic.user),
            identity_file=_first(
                specific.identity_file, _str(ssh.identity_file), generic.identity_file
            ),
            known_hosts=_str(ssh.known_hosts),
            host_key_policy=ssh.host_key_policy,
            sudo=False,
            connect_timeout=ssh.connect_timeout,
            keepalive=ssh.keepalive,
            jump=previous,
            settings_form=settings_form,
        )
    assert previous is not None
    return previous
