"""Container engine and images for tests: what `make test` built (tools/images.py), or a skip that says why.

Where containers are required (``SLUICE_REQUIRE_CONTAINERS=1``, meant for CI), a missing engine or image
fails the test instead of skipping it: CI must not go green by skipping what it exists to run.

    engine = require_image(STEP_IMAGE)       # in a test or fixture; skips (or fails) when it cannot run
    engine.run("run", "--rm", *engine.limit_args, STEP_IMAGE, "--help")
"""

from __future__ import annotations

import os
import textwrap
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


# A step written inline, so it runs in the step image with no file from this checkout: contract v1 by hand.
INLINE_STEP = textwrap.dedent(
    """
    import json, os, signal, socket, sys, time
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # PID 1 in a container: no default action
    mode = sys.argv[1]
    outputs = json.loads(os.environ["SLUICE_STEP_OUTPUTS"])
    params = json.loads(os.environ["SLUICE_STEP_PARAMS"])
    seen = {"uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups())}
    for name, path in (("root", "/sluice-probe"), ("tmp", "/tmp/sluice-probe")):
        try:
            open(path, "w").write("x")
            seen[name + "_writable"] = True
        except OSError as exc:
            seen[name + "_writable"] = False
            seen[name + "_error"] = exc.strerror
    if mode == "connect":
        try:
            socket.create_connection(("127.0.0.1", int(params["port"])), timeout=3).close()
            seen["connected"] = True
        except OSError as exc:
            seen["connected"], seen["connect_error"] = False, exc.strerror
    if mode == "read":
        seen["read"] = open(params["source"]).read()
    if mode == "hog":
        blob = bytearray(int(params["bytes"]))
        for i in range(0, len(blob), 4096):
            blob[i] = 1
        time.sleep(float(params.get("hold", 0)))
    if mode == "sleep":
        print("sleeping", flush=True)
        time.sleep(float(params.get("seconds", 600)))
    for path in outputs.values():
        open(path, "w").write(json.dumps(seen))
    result = {"contract_version": 1, "outputs": outputs, "metrics": {k: v for k, v in seen.items()}}
    open(os.environ["SLUICE_RESULT_URI"], "w").write(json.dumps(result))
    """
)
