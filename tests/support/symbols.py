"""Resolving the owner of a symbol a compat entry names, so tests can remove it (monkeypatch) and see it reported."""

from __future__ import annotations

import importlib
from typing import Any


def owner(path: str) -> Any:
    """``"package.module"`` → the module; ``"package.module:Class"`` → that class."""
    module, _, name = path.partition(":")
    found = importlib.import_module(module)
    return getattr(found, name) if name else found
