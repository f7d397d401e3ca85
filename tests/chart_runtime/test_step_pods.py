"""Step pods fail here as they would on a cluster: they run in the built step image through the container engine,
with the pod's securityContext and limits (see kubelet.py), not as host processes run as root.

Each probe is the pod the kubernetes launcher submits for a step (``kubernetes.step_pod`` with the installed
platform config: its profile's limits, user, read-only root, ``/tmp`` emptyDir, artifact Secret), with the step's
command replaced by a few lines of Python, created through the API stand-in as the launcher creates it; its end
is read back as the launcher reads it: the pod's phase, its container's exit code and reason, its log.
Run as a host process, every probe below would pass where it must fail, and fail where it must pass.
"""

from __future__ import annotations

import textwrap
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kubernetes.client import ApiClient
from sluice import artifacts
from sluice.contract import step_env
from sluice.launchers import StepRun
from sluice.launchers.engine import Engine
from sluice.launchers.kubernetes import step_pod
from sluice.quantity import parse_quantity

from tests.chart_runtime.install import NAMESPACE, Installed
from tests.support.containers import STEP_IMAGE, require_image

pytestmark = pytest.mark.integration
END_BOUND = 180.0  # seconds for a probe pod to start and end on a loaded 2-core machine
# Writable in the image for every user (mode 1777) but on no volume of the pod: only a read-only root refuses it.
OUTSIDE_VOLUMES = "/var/tmp/sluice-probe"
PROBE = textwrap.dedent(
    f"""
    import os, sys
    print("uid", os.getuid(), "gid", os.getgid(), "groups", sorted(os.getgroups()), flush=True)
    with open("/tmp/sluice-probe", "w") as out:  # the pod's emptyDir volume
        out.write("x")
    print("wrote /tmp/sluice-probe", flush=True)
    if sys.argv[1] == "write-outside":
        with open({OUTSIDE_VOLUMES!r}, "w") as out:
            out.write("x")
        os.remove({OUTSIDE_VOLUMES!r})
        print("wrote {OUTSIDE_VOLUMES}", flush=True)
    if sys.argv[1] == "hog":
        blob = b"x" * int(sys.argv[2])  # written, so resident: every byte counts against the limit
        print("held", len(blob), "bytes", flush=True)
    """
)


@pytest.fixture(scope="module")
def engine(installed: Installed) -> Engine:
    engine = require_image(STEP_IMAGE)
    assert installed.step_engine is not None, f"{STEP_IMAGE} is built, yet step pods run {installed.steps_in}"
    return engine


class Probe:
    """A step pod created through the API stand-in, and its end as the API reports it."""

    def __init__(self, installed: Installed, mode: str, *args: str, profile: str = "default") -> None:
        self.installed = installed
        self.pods = f"{installed.api.url}/api/v1/namespaces/{NAMESPACE}/pods"
        self.admin = installed.api.admin_headers  # the harness creates it as an admin would (kubectl)
        platform = installed.platform
        run_id = f"probe-{uuid.uuid4().hex[:8]}"
        prefix = artifacts.task_prefix(platform.artifacts.root, "chart_probe", run_id, mode, -1)
        step = StepRun(
            dag_id="chart_probe",
            task_id=mode,
            run_id=run_id,
            try_number=1,
            map_index=-1,
            image=platform.image_ref("ml-steps"),
            command=["python3", "-c", PROBE, mode, *args],
            env=step_env({}, {}, {}, prefix, root=platform.artifacts.root),
            profile_name=profile,
            profile=platform.profile(profile),
            artifact_prefix=prefix,
        )
        self.manifest: dict[str, Any] = ApiClient().sanitize_for_serialization(step_pod(step, platform))
        self.name = self.manifest["metadata"]["name"]
        self.limit = self.manifest["spec"]["containers"][0]["resources"]["limits"]["memory"]

    def run(self) -> dict[str, Any]:
        """Create the pod and wait for it to end: its ``terminated`` state, with the pod's phase and log."""
        created = httpx.post(self.pods, json=self.manifest, headers=self.admin, timeout=60)
        assert created.status_code == 201, created.text
        deadline = time.monotonic() + END_BOUND
        while True:
            pod = httpx.get(f"{self.pods}/{self.name}", headers=self.admin, timeout=30).json()
            if pod["status"]["phase"] in ("Succeeded", "Failed"):
                break
            assert time.monotonic() < deadline, f"not ended in {END_BOUND:.0f} s:\n{self.describe()}"
            time.sleep(0.5)
        statuses = pod["status"].get("containerStatuses") or [{}]
        assert "terminated" in statuses[0].get("state", {}), f"{pod['status']}\n{self.describe()}"
        log = httpx.get(f"{self.pods}/{self.name}/log", headers=self.admin, timeout=30).text
        return {"phase": pod["status"]["phase"], **statuses[0]["state"]["terminated"], "log": log}

    def describe(self) -> str:
        pod = self.installed.kubelet.pods.get(self.name)
        return pod.describe() if pod else f"pod {self.name}: never reached the kubelet"

    def in_engine(self, engine: Engine) -> str:
        """Check the pod ran in the step image through the engine and left no container; returns the image id."""
        box = self.installed.kubelet.pods[self.name].containers[0].in_engine
        assert box is not None and box.container_id, f"not run in a container:\n{self.describe()}"
        assert box.image == STEP_IMAGE, f"ran {box.image}, not {STEP_IMAGE}"
        assert engine.run("container", "exists", self.name).returncode != 0, f"container {self.name} was not removed"
        return box.image_id[:12]

    def delete(self) -> None:
        httpx.delete(f"{self.pods}/{self.name}", headers=self.admin, timeout=120)


@pytest.fixture
def probe(installed: Installed) -> Iterator[Any]:
    made: list[Probe] = []

    def make(mode: str, *args: str, profile: str = "default") -> Probe:
        made.append(Probe(installed, mode, *args, profile=profile))
        return made[-1]

    yield make
    for one in made:
        one.delete()


def test_a_step_pod_runs_as_its_pod_user_not_root(engine: Engine, probe, prove) -> None:
    pod = probe("whoami")
    ended = pod.run()
    assert (ended["phase"], ended["exitCode"]) == ("Succeeded", 0), f"{ended}\n{pod.describe()}"
    assert "uid 10001 gid 10001 groups [10001]" in ended["log"], ended["log"]
    assert "wrote /tmp/sluice-probe" in ended["log"], ended["log"]
    image = pod.in_engine(engine)
    prove(f"uid 10001, gid 10001, groups [10001] (runAsUser/runAsGroup/fsGroup); /tmp writable; image {image}")


def test_a_step_pod_writing_outside_its_volumes_fails(engine: Engine, probe, prove) -> None:
    pod = probe("write-outside")
    ended = pod.run()
    assert (ended["phase"], ended["exitCode"], ended["reason"]) == ("Failed", 1, "Error"), ended
    assert "wrote /tmp/sluice-probe" in ended["log"], ended["log"]  # its volume is writable: the root is not
    assert f"Read-only file system: '{OUTSIDE_VOLUMES}'" in ended["log"], ended["log"]
    pod.in_engine(engine)
    prove(f"write to {OUTSIDE_VOLUMES} (mode 1777, no volume): EROFS, pod Failed, exit 1; /tmp (emptyDir) writable")


def test_a_step_pod_beyond_its_profiles_memory_is_oom_killed(
    installed: Installed, engine: Engine, probe, prove
) -> None:
    limit = installed.platform.profile("default").memory
    pod = probe("hog", str(int(parse_quantity(limit)) + 512 * 2**20))
    assert pod.limit == limit  # the profile's memory is the pod's limit
    ended = pod.run()
    assert (ended["phase"], ended["exitCode"], ended["reason"]) == ("Failed", 137, "OOMKilled"), (
        f"{ended}\n{pod.describe()}"
    )
    assert "held" not in ended["log"], ended["log"]
    pod.in_engine(engine)
    prove(f"profile default (limit {pod.limit}) + 512 MiB written: pod Failed, exit 137, reason OOMKilled")
