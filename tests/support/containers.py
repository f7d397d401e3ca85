"""Container engine and images for tests: what `make test` built (tools/images.py), or a skip that says why.

Where containers are required (``SLUICE_REQUIRE_CONTAINERS=1``, which .ci/run sets), a missing engine or image
fails the test instead of skipping it: CI must not go green by skipping what it exists to run.

    engine = require_image(STEP_IMAGE)       # in a test or fixture; skips (or fails) when it cannot run
    engine.run("run", "--rm", *engine.limit_args, STEP_IMAGE, "--help")
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest
from sluice.launchers.engine import Engine, EngineMissing, find_engine

from tools.images import images

REQUIRE_ENV = "SLUICE_REQUIRE_CONTAINERS"
# The refs `make images` builds: the chart's values, which the platform config resolves (ml-steps -> ...:0.1.0).
IMAGE_REFS = {image.key: image.ref for image in images()}
STEP_IMAGE = IMAGE_REFS["ml-steps"]
PLATFORM_IMAGE = IMAGE_REFS["airflow"]


def containers_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str) -> NoReturn:
    """Skip with ``reason``; fail with it where containers are required."""
    if containers_required():
        pytest.fail(f"{reason} ({REQUIRE_ENV} is set: containers are required here)", pytrace=False)
    pytest.skip(reason)


def require_engine() -> Engine:
    try:
        return find_engine()
    except EngineMissing as exc:
        unavailable(f"no container engine: {exc}")


def require_image(ref: str) -> Engine:
    """The engine, once ``ref`` is in its image store (built by `make images` / `make test`)."""
    engine = require_engine()
    if not engine.image_exists(ref):
        unavailable(f"image {ref} is not built here: run `make images` (`make test` builds it first)")
    return engine
