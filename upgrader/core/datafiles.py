"""The data files the product ships (``upgrader/data``), or an operator's copy of one.

Owns :func:`data_file_document`: the JSON document of the operator's file at a path, else
of the packaged file, and the origin its errors name; an unreadable file or one that is
not UTF-8 text or not JSON is one :class:`ConfigError` line naming it.

Must not: write anything, or validate a document (its format's parser does).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from upgrader.core.problems import json_document
from upgrader.errors import ConfigError


def data_file_document(packaged: str, path: Path | None, what: str) -> tuple[Any, str]:
    """The document of ``path`` (an operator's copy), else of ``upgrader/data/<packaged>``,
    and its origin. ``what`` names the data in errors (``release data``)."""
    if path is None:
        origin = f"upgrader/data/{packaged}"
        try:
            text = (resources.files("upgrader") / "data" / packaged).read_text("utf-8")
        except OSError as e:  # a broken installation
            raise ConfigError(f"{origin}: cannot read packaged {what}: {e}") from None
    else:
        origin = str(path)
        try:
            text = Path(path).read_text("utf-8")
        except OSError as e:
            raise ConfigError(f"{origin}: cannot read {what}: {e.strerror or e}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{origin}: not UTF-8 text") from None
    return json_document(text, origin), origin
