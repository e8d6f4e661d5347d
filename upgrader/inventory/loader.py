"""Reading an inventory file (native or Kubespray YAML) into a validated ``Inventory``.

Owns the file edge: reading bytes, strict YAML (safe loader, duplicate keys refused),
choosing the format, validating, and turning every failure into one ``ConfigError`` line
``<file>: <field path>: <problem>``.

Must not: connect anywhere, or let a traceback or a multi-line message escape.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from upgrader.errors import ConfigError
from upgrader.inventory import kubespray
from upgrader.inventory.model import Inventory
from upgrader.inventory.problems import LocRenderer, check_document, first_problem, one_line
from upgrader.inventory.schema import InventoryDocument
from upgrader.inventory.targets import DEFAULT_SSH_CONFIG, SSHConfigFile

_MAX_BYTES = 16 * 1024 * 1024


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML would keep the last)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Hashable, Any]:
    seen: set[object] = set()
    for key_node, _value in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, Hashable):
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def _yaml_error(label: str, exc: yaml.YAMLError) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "(file)"
    if "duplicate key" in str(problem):
        return ConfigError(one_line(f"{label}: {where}: {problem}"))
    return ConfigError(one_line(f"{label}: {where}: not valid YAML: {problem}"))


def read_yaml(path: Path, label: str) -> Any:
    """Parse ``path`` as YAML; one-line ConfigError for unreadable / empty / not YAML."""
    try:
        if path.is_dir():
            raise ConfigError(f"{label}: cannot read: is a directory")
        raw = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(one_line(f"{label}: cannot read: {reason}")) from None
    if len(raw) > _MAX_BYTES:
        raise ConfigError(f"{label}: file is larger than {_MAX_BYTES // (1024 * 1024)} MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{label}: cannot read: not UTF-8 text") from None
    if not text.strip():
        raise ConfigError(f"{label}: file is empty")
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise _yaml_error(label, exc) from None
    except RecursionError:
        raise ConfigError(f"{label}: not valid YAML: nested too deeply") from None


def _kind(data: object) -> str:
    if isinstance(data, list):
        return "a list"
    if isinstance(data, str):
        return "a string"
    return type(data).__name__


def inventory_from_data(
    data: object,
    source_path: str | Path,
    *,
    ssh_config_path: str | Path | None = None,
    label: str | None = None,
) -> Inventory:
    """Validate already-parsed inventory data as if it had been read from ``source_path``
    (relative paths resolve against its directory). ``label`` names the file in errors."""
    source = Path(source_path)
    name = label if label is not None else str(source_path)
    if data is None:
        raise ConfigError(f"{name}: file is empty")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{name}: top level must be a mapping, got {_kind(data)}")

    render: LocRenderer | None = None
    source_format = "native"
    document_data: Mapping[Any, Any] = data
    if kubespray.looks_like_ansible(data):
        converted = kubespray.convert(data, source.stem, name)
        document_data, render, source_format = converted.data, converted.render, "kubespray"

    base_dir = source.expanduser().resolve().parent
    try:
        document = InventoryDocument.model_validate(document_data, context={"base_dir": base_dir})
    except ValidationError as exc:
        problem = first_problem(exc)
        raise (problem.error(name, render) if render else problem.error(name)) from None
    problems = check_document(document)
    if problems:
        raise problems[0].error(name, render) if render else problems[0].error(name)

    ssh_config: SSHConfigFile | None = None
    if document.ssh.use_ssh_config:
        config_path = Path(ssh_config_path) if ssh_config_path is not None else DEFAULT_SSH_CONFIG
        ssh_config = SSHConfigFile.load(config_path)
    return Inventory(
        document,
        source_path=source.expanduser().resolve(),
        ssh_config=ssh_config,
        source_format=source_format,
        label=name,
    )


def load_inventory(
    path: str | Path,
    ssh_config_path: str | Path | None = None,
    *,
    kubeconfig: Path | None = None,
    known_hosts: Path | None = None,
) -> Inventory:
    """Read and validate an inventory file: native (``inventory.example.yaml``) or a
    Kubespray/Ansible YAML inventory, detected by its shape. ``ssh_config_path`` defaults
    to ``~/.ssh/config`` (read only when ``ssh.use_ssh_config`` is true; a missing file is
    fine). ``kubeconfig`` / ``known_hosts`` (the command line's ``--kubeconfig`` and
    ``--known-hosts``) win over the file. Every problem raises
    :class:`upgrader.errors.ConfigError` with one line."""
    label = str(path)
    data = read_yaml(Path(path).expanduser(), label)
    inv = inventory_from_data(data, path, ssh_config_path=ssh_config_path, label=label)
    if kubeconfig is not None and not kubeconfig.expanduser().is_file():
        raise ConfigError(f"--kubeconfig: {kubeconfig}: no such file")
    if known_hosts is not None and not known_hosts.expanduser().resolve().parent.is_dir():
        raise ConfigError(f"--known-hosts: {known_hosts}: its directory does not exist")
    return inv.with_access(
        kubeconfig.expanduser().resolve() if kubeconfig is not None else None,
        known_hosts.expanduser().resolve() if known_hosts is not None else None,
    )
