"""Reads of the model registry and the tables under the artifact root that only tests make.

The layout is the step side's (``sluice_steps.registry``, ``sluice_steps.tables``), spelt out here as
``sluice.registry`` spells out the read side the platform needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sluice import artifacts
from sluice.demo import declared
from sluice.platform import current_platform
from sluice.registry import model_uri

REPO = Path(__file__).resolve().parents[2]
MARKER = "_VERSION.json"  # each version's metadata, written by the publish step


def example_model() -> str:
    """The model the examples share: the one batch_scoring declares it scores with (ml_training_pipeline
    publishes it)."""
    model = declared(REPO / "dags" / "batch_scoring.py").requires_model
    assert model, "dags/batch_scoring.py declares no required model"
    return model


def table_uri(table: str, *parts: str, root: str | None = None) -> str:
    return artifacts.join(root or current_platform().artifacts.root, "tables", table, *parts)


def version_metadata(name: str, version: str, root: str | None = None) -> dict[str, Any] | None:
    marker = artifacts.join(model_uri(name, root), version, MARKER)
    return artifacts.read_json(marker) if artifacts.exists(marker) else None
