"""Build a Kubernetes ``ApiClient`` from a kubeconfig file and context (TLS verified).

Owns the one place a kubeconfig is read: the file named by the inventory, else
``$KUBECONFIG``, else ``~/.kube/config``; the context given, else the file's
current-context. A kubeconfig that cannot be read or used is a one-line
:class:`~upgrader.errors.ConfigError` naming the file (and context). A kubeconfig that
turns TLS verification off (``insecure-skip-tls-verify: true``) is refused unless the
caller explicitly allows it.

Credentials never touch the disk: inline ``certificate-authority-data``,
``client-certificate-data`` and ``client-key-data`` of the chosen context are handed to
TLS as memory-backed paths (:mod:`upgrader.kube.credfiles`) before the ``kubernetes``
loader sees them (it would write them to ``/tmp`` files that a SIGKILL leaves behind),
and what an ``exec`` plugin returns is moved there too. :func:`exec_plugin_notice` names
the ``exec`` credential plugin a kubeconfig's user runs (its command only: arguments and
environment values may be secrets), for ``plan`` and ``apply`` to say so before it runs;
:func:`credential_values` gives the redaction the token and client key in use.

Must not: print, write the kubeconfig back (token refreshes stay in memory), write a
credential to a file, or talk to the API server (building a client does no network I/O;
an ``exec`` plugin the kubeconfig names does run).
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client import ApiClient, Configuration
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.kube_config import KubeConfigLoader

from upgrader.errors import ConfigError
from upgrader.kube import credfiles

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
    missing_hint: str | None = None,
) -> ApiClient:
    """An ``ApiClient`` for ``context`` (None: current-context) of ``kubeconfig`` (None:
    :func:`default_kubeconfig_path`). ``missing_hint``: where the user names another
    kubeconfig, said when the file does not exist."""
    path = (kubeconfig or default_kubeconfig_path()).expanduser()
    where = f"kubeconfig {path}" + (f" (context {context})" if context else "")
    if not path.exists():
        raise ConfigError(
            f"{where}: no such file" + (f" (give {missing_hint})" if missing_hint else "")
        )
    if not path.is_file():
        raise ConfigError(f"{where}: not a regular file")
    try:
        path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{where}: cannot read: {_one_line(e.strerror or e)}") from None
    credfiles.sweep()  # what a SIGKILLed run may have left (only without memfd, or mid-exec)
    config = Configuration()
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        exec_user = _in_memory(doc, context, where)
        loader = KubeConfigLoader(  # type: ignore[no-untyped-call]
            config_dict=doc,
            active_context=context,
            config_base_path=str(path.parent.resolve()),
            # what the loader still writes itself (an exec plugin's client key): our 0700
            # directory, moved into memory below
            temp_file_path=str(credfiles.private_dir()) if exec_user else None,
        )
        loader.load_and_set(config)  # type: ignore[no-untyped-call]
        for attr in ("ssl_ca_cert", "cert_file", "key_file"):
            setattr(config, attr, credfiles.absorb(getattr(config, attr, None)))
        client = ApiClient(configuration=config)
    except ConfigException as e:
        raise ConfigError(f"{where}: {_one_line(e)}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML: {_one_line(e)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 text") from None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise ConfigError(f"{where}: unusable: {_one_line(e)}") from None
    if not config.verify_ssl and not allow_insecure_tls:
        raise ConfigError(
            f"{where}: sets insecure-skip-tls-verify; refusing to talk to the API server "
            "without TLS verification (give the cluster's certificate-authority instead)"
        )
    return client


# --------------------------------------------------------------------------- credentials

_INLINE = {
    "cluster": (("certificate-authority-data", "certificate-authority"),),
    "user": (
        ("client-certificate-data", "client-certificate"),
        ("client-key-data", "client-key"),
    ),
}


def _named(doc: dict[str, Any], section: str, name: object, key: str) -> dict[str, Any] | None:
    """``doc[section][i][key]`` of the entry named ``name`` (a dict), or None."""
    entries = doc.get(section)
    if not isinstance(entries, list):
        return None
    for entry in entries:
        if isinstance(entry, dict) and entry.get("name") == name:
            value = entry.get(key)
            return value if isinstance(value, dict) else None
    return None


def _selected(
    doc: object, context: str | None
) -> tuple[object, dict[str, Any] | None, dict[str, Any] | None]:
    """(user name, cluster, user) of ``context`` (None: current-context), as dicts of
    ``doc`` (mutable: the loader reads the same objects); None where missing (the loader
    then says what is missing)."""
    if not isinstance(doc, dict):
        return None, None, None
    ctx = _named(doc, "contexts", context or doc.get("current-context"), "context")
    if ctx is None:
        return None, None, None
    user_name = ctx.get("user")
    return (
        user_name,
        _named(doc, "clusters", ctx.get("cluster"), "cluster"),
        _named(doc, "users", user_name, "user"),
    )


def _in_memory(doc: object, context: str | None, where: str) -> bool:
    """Replace the chosen context's inline ``*-data`` credentials in ``doc`` by paths to
    memory-backed copies (so that the loader never writes them to a file); True when its
    user runs an ``exec`` plugin (which may return a client key the loader writes)."""
    _user_name, cluster, user = _selected(doc, context)
    for kind, obj in (("cluster", cluster), ("user", user)):
        if obj is None:
            continue
        for data_key, file_key in _INLINE[kind]:
            if data_key not in obj:
                continue
            value = obj[data_key]
            if not value:
                continue
            try:
                content = base64.standard_b64decode(
                    value.encode() if isinstance(value, str) else value
                )
            except (binascii.Error, ValueError, TypeError, AttributeError):
                raise ConfigError(f"{where}: {kind} {data_key} is not base64") from None
            obj[file_key] = credfiles.path_for(content)
            del obj[data_key]
    return user is not None and "exec" in user


def _printable(text: str) -> str:
    return text if text.isprintable() else ascii(text)


def exec_plugin_notice(kubeconfig: Path | None, context: str | None) -> str | None:
    """``kubeconfig user 'x' runs an exec credential plugin: CMD`` when the context's user
    has an ``exec`` section, else None (also when the file cannot be read: building the
    client says why). Names the command only, never its arguments or environment."""
    path = (kubeconfig or default_kubeconfig_path()).expanduser()
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return None
    user_name, _cluster, user = _selected(doc, context)
    if user is None or "exec" not in user:
        return None
    spec = user.get("exec")
    command = spec.get("command") if isinstance(spec, dict) else None
    shown = _printable(str(command)) if command else "(no command given)"
    return f"kubeconfig user {_printable(str(user_name))!r} runs an exec credential plugin: {shown}"


def credential_values(api_client: object) -> tuple[str, ...]:
    """The client's secrets as they could show in text: the bearer token, and the client
    key's PEM body lines (16+ characters) and its base64 (a kubeconfig's
    ``client-key-data``), for :mod:`upgrader.redact` to mask."""
    cfg = getattr(api_client, "configuration", None)
    found: list[str] = []
    for v in (getattr(cfg, "api_key", None) or {}).values():
        if isinstance(v, str) and v:
            found.append(v.removeprefix("Bearer ").strip())
    key_file = getattr(cfg, "key_file", None)
    if key_file:
        try:
            pem = Path(key_file).read_bytes()
        except OSError:
            pem = b""
        text = pem.decode("ascii", "replace")
        found.extend(
            line.strip()
            for line in text.splitlines()
            if len(line.strip()) >= 16 and not line.startswith("-----")
        )
        if pem:
            found.append(base64.standard_b64encode(pem).decode())
    return tuple(dict.fromkeys(v for v in found if v))
