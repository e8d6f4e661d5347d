"""Build a Kubernetes ``ApiClient`` from a kubeconfig file and context (TLS verified).

Owns the one place a kubeconfig is read: the file named by the inventory, else
``$KUBECONFIG``, else ``~/.kube/config``; the context given, else the file's
current-context. A kubeconfig that cannot be read or used is a one-line
:class:`~upgrader.errors.ConfigError` naming the file (and context). A kubeconfig that
turns TLS verification off (``insecure-skip-tls-verify: true``) is refused unless the
caller explicitly allows it.

Must not: print, write the kubeconfig back (token refreshes stay in memory), or talk to
the API server (building a client does no network I/O).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from kubernetes.client import ApiClient, Configuration
from kubernetes.config import new_client_from_config
from kubernetes.config.config_exception import ConfigException

from upgrader.errors import ConfigError

DEFAULT_KUBECONFIG = "~/.kube/config"


def default_kubeconfig_path() -> Path:
    """``$KUBECONFIG`` (its first entry) or ``~/.kube/config``."""
    env = os.environ.get("KUBECONFIG", "")
    first = next((p for p in env.split(os.pathsep) if p), None)
    return Path(first or DEFAULT_KUBECONFIG).expanduser()


def _one_line(text: object) -> str:
    return " ".join(str(text).split()) or type(text).__name__


def make_api_client(
    kubeconfig: Path | None,
    context: str | None,
    *,
    allow_insecure_tls: bool = False,
) -> ApiClient:
    """An ``ApiClient`` for ``context`` (None: current-context) of ``kubeconfig`` (None:
    :func:`default_kubeconfig_path`)."""
    path = (kubeconfig or default_kubeconfig_path()).expanduser()
    where = f"kubeconfig {path}" + (f" (context {context})" if context else "")
    if not path.exists():
        raise ConfigError(f"{where}: no such file")
    if not path.is_file():
        raise ConfigError(f"{where}: not a regular file")
    try:
        path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{where}: cannot read: {_one_line(e.strerror or e)}") from None
    config = Configuration()
    try:
        client: ApiClient = new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(path),
            context=context,
            persist_config=False,
            client_configuration=config,
        )
    except ConfigException as e:
        raise ConfigError(f"{where}: {_one_line(e)}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML: {_one_line(e)}") from None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise ConfigError(f"{where}: unusable: {_one_line(e)}") from None
    if not config.verify_ssl and not allow_insecure_tls:
        raise ConfigError(
            f"{where}: sets insecure-skip-tls-verify; refusing to talk to the API server "
            "without TLS verification (give the cluster's certificate-authority instead)"
        )
    return client
