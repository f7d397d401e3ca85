"""The model registry under the artifact root, read side (DAGs, ``sluice demo``).

Steps write it (``sluice_steps.registry``); both sides spell out the layout, as with the step contract:
``{root}/models/{name}/{version}/`` + ``{root}/models/{name}/current``. Which model an example trains or scores
with is the example's choice (its DAG file names it), not the platform's.
"""

from __future__ import annotations

import json
from typing import Any

from sluice import artifacts
from sluice.platform import current_platform

POINTER = "current"


def _root(root: str | None) -> str:
    return root or current_platform().artifacts.root


def model_uri(name: str, root: str | None = None) -> str:
    return artifacts.join(_root(root), "models", name)


def model_asset(name: str) -> Any:
    """The Airflow asset a registration updates.

    Its URI names the model, not where the registry happens to live: the artifact root differs between a
    laptop, a test session and a cluster, and Airflow deactivates an asset whose name is declared with two
    different URIs (a producer would then fail with AirflowInactiveAssetInInletOrOutletException). The
    registry's location is ``model_uri(name)`` under the platform's artifact root.
    """
    from airflow.sdk import Asset

    return Asset(name=f"model/{name}", uri=f"sluice://models/{name}", group="model")


def current(name: str, root: str | None = None) -> dict[str, Any] | None:
    """The ``current`` pointer of a model ({"version": …, "uri": …}), or None before the first version."""
    pointer = artifacts.join(model_uri(name, root), POINTER)
    if not artifacts.exists(pointer):
        return None
    found: dict[str, Any] = json.loads(artifacts.read_text(pointer))
    return found
