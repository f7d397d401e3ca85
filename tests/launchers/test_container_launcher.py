"""The container launcher on a real engine (podman here; no mocks): each step runs in the step image that
``make images`` built, with what its pod would get.

The pod the Kubernetes launcher would submit is the only source of the container's settings; the first
tests compare the two field by field without an engine, the rest run real containers.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from sluice.contract import step_env
from sluice.launchers import FailureKind, LaunchResult, StepRun, launcher_for
from sluice.launchers.container import (
    LABEL_OWNER,
    ContainerLauncher,
    container_spec,
    image_content_id,
    read_only_mounts,
    sweep,
)
from sluice.launchers.engine import Engine
from sluice.launchers.kubernetes import step_pod
from sluice.platform import Platform, current_platform, parse_platform
from sluice.quantity import parse_quantity

from tests.support.containers import INLINE_STEP, require_image

LOG = __import__("logging").getLogger("test.container_launcher")
STEP_IMAGE = "ml-steps"
_runs = iter(range(10**6))


def platform_for(root: Path, profiles: dict | None = None) -> Platform:
    return parse_platform(
        {
            "pools": [{"name": "default", "queues": ["default"]}],
            "profiles": {"default": {"cpu": "1", "memory": "1Gi"}, **(profiles or {})},
            "artifacts": {"root": str(root)},
            "launcher": {"type": "container"},
            "stepImages": current_platform().model_dump(by_alias=True)["stepImages"],
        },
        Path("test"),
    )


def inline_step(
    platform: Platform, mode: str = "ok", params: dict | None = None, profile: str = "default", task: str = "probe"
) -> StepRun:
    run_id = f"run{next(_runs)}"
    prefix = f"{platform.artifacts.root}/container_test/{run_id}/{task}"
    env = step_env({}, {"seen": f"{prefix}/seen.json"}, params or {}, prefix, root=platform.artifacts.root)
    return StepRun(
        dag_id="container_test",
        task_id=task,
        run_id=run_id,
        try_number=1,
        map_index=-1,
        image=platform.image_ref(STEP_IMAGE),
        command=["python3", "-c", INLINE_STEP, mode],
        env=env,
        profile_name=profile,
        profile=platform.profile(profile),
        artifact_prefix=prefix,
    )


def seen(step: StepRun) -> dict:
    return json.loads(Path(json.loads(step.env["SLUICE_STEP_OUTPUTS"])["seen"]).read_text())


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    return platform_for(tmp_path / "artifacts")


@pytest.fixture(scope="module")
def engine() -> Engine:
    return require_image(current_platform().image_ref(STEP_IMAGE))


# ---- the pod is the source: no engine needed -------------------------------------------------------------


def test_the_container_is_the_pod_field_by_field(platform: Platform) -> None:
    from kubernetes.client import ApiClient

    step = inline_step(platform, params={"k": "v"})
    pod = step_pod(step, platform)
    manifest = ApiClient().sanitize_for_serialization(pod)
    container, pod_security = manifest["spec"]["containers"][0], manifest["spec"]["securityContext"]
    spec = container_spec(pod)
    assert spec.image == container["image"] == platform.image_ref(STEP_IMAGE)
    assert spec.entrypoint == container["command"] and spec.args == container["args"]
    assert spec.env == {var["name"]: var["value"] for var in container["env"]}
    assert spec.user == f"{pod_security['runAsUser']}:{pod_security['runAsGroup']}" == "10001:10001"
    assert spec.group_add == [str(pod_security["fsGroup"])]
    assert spec.read_only_root is container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec.cap_drop == container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert spec.no_new_privileges is (container["securityContext"]["allowPrivilegeEscalation"] is False)
    assert spec.seccomp_unconfined is False and pod_security["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec.memory_bytes == parse_quantity(container["resources"]["limits"]["memory"])
    assert spec.cpus == float(parse_quantity(container["resources"]["limits"]["cpu"]))
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert set(spec.writable) == mounts == {"/tmp"}
    assert spec.labels == manifest["metadata"]["labels"]
    assert spec.name == manifest["metadata"]["name"]


def test_engine_flags_carry_every_pod_setting(platform: Platform, tmp_path: Path) -> None:
    launcher = ContainerLauncher(platform)
    launcher._engine = Engine("podman", "/usr/bin/podman")  # flags only: nothing runs
    step = inline_step(platform)
    spec = container_spec(step_pod(step, platform))
    args, env = launcher._args(spec, step, tmp_path, network=False, run_as=None, local_root=platform.artifacts.root)
    joined = " ".join(args)
    for expected in (
        "--user 10001:10001",
        "--group-add 10001",
        "--read-only --read-only-tmpfs=false",
        "--cap-drop ALL",
        "--security-opt no-new-privileges",
        f"--memory {2**30} --memory-swap {2**30}",
        "--cpus 1",
        "--network none",
        "--pull never",
        f"--volume {platform.artifacts.root}:{platform.artifacts.root}:rw",
        ":/tmp:rw",
    ):
        assert expected in joined, expected
    assert args[args.index(spec.image) :] == [spec.image, *spec.args]
    for name, value in spec.env.items():  # values travel in the engine's environment, by name only
        assert f"--env {name}" in joined and env[name] == value and f"{name}={value}" not in args


def test_local_files_named_by_params_are_mounted_read_only(platform: Platform, tmp_path: Path) -> None:
    source = tmp_path / "sources" / "table.csv"
    source.parent.mkdir()
    source.write_text("a,b\n")
    db = tmp_path / "db.sqlite"
    db.write_text("")
    step = inline_step(platform, params={"source": str(source), "sql": f"sqlite:///{db}", "other": "/no/such/file"})
    assert read_only_mounts(step, platform.artifacts.root) == sorted([source, db])


def test_an_unknown_launcher_type_lists_the_valid_ones(tmp_path: Path) -> None:
    from sluice.platform import PlatformError

    with pytest.raises(
        PlatformError, match=r"unknown launcher type 'podman'; valid types: container, kubernetes, local"
    ):
        parse_platform(
            {
                "pools": [{"name": "default", "queues": ["default"]}],
                "profiles": {"default": {}},
                "launcher": {"type": "podman"},
                "artifacts": {"root": str(tmp_path)},
            },
            Path("platform.yaml"),
        )


def test_the_registry_builds_the_container_launcher(platform: Platform) -> None:
    assert isinstance(launcher_for(platform), ContainerLauncher)


# ---- real containers -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_step_runs_as_the_image_user_with_a_read_only_root(engine: Engine, platform: Platform) -> None:
    step = inline_step(platform)
    result = ContainerLauncher(platform).run(step, LOG)
    assert result.succeeded, result
    got = seen(step)
    assert (got["uid"], got["gid"]) == (10001, 10001) and 10001 in got["groups"]
    assert got["root_writable"] is False and got["root_error"] == "Read-only file system"
    assert got["tmp_writable"] is True
    outputs = Path(step.artifact_prefix)
    assert outputs.stat().st_uid == 10001, "the step's prefix is given to the step's user, as fsGroup would"


@pytest.mark.slow
def test_no_network_unless_the_profile_asks(engine: Engine, tmp_path: Path) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    threading.Thread(target=lambda: [server.accept() for _ in range(4)], daemon=True).start()
    platform = platform_for(tmp_path / "artifacts", {"online": {"cpu": "1", "memory": "1Gi", "network": True}})
    closed = inline_step(platform, "connect", {"port": port})
    assert ContainerLauncher(platform).run(closed, LOG).succeeded
    assert seen(closed)["connected"] is False
    opened = inline_step(platform, "connect", {"port": port}, profile="online")
    assert ContainerLauncher(platform).run(opened, LOG).succeeded
    assert seen(opened)["connected"] is True
    server.close()


@pytest.mark.slow
def test_a_source_outside_the_store_is_readable_but_not_writable(
    engine: Engine, platform: Platform, tmp_path: Path
) -> None:
    source = tmp_path / "in" / "source.txt"
    source.parent.mkdir()
    source.write_text("measurements")
    step = inline_step(platform, "read", {"source": str(source)})
    assert ContainerLauncher(platform).run(step, LOG).succeeded
    assert seen(step)["read"] == "measurements"


@pytest.mark.slow
def test_exceeding_the_memory_limit_is_an_out_of_memory_failure(engine: Engine, tmp_path: Path) -> None:
    platform = platform_for(tmp_path / "artifacts", {"tiny": {"cpu": "1", "memory": "64Mi"}})
    step = inline_step(platform, "hog", {"bytes": 256 * 2**20}, profile="tiny")
    result = ContainerLauncher(platform).run(step, LOG)
    assert result.failure is FailureKind.OUT_OF_MEMORY, result
    assert result.exit_code == 137


@pytest.mark.slow
def test_a_missing_image_fails_at_once_naming_make_images(engine: Engine, platform: Platform) -> None:
    step = inline_step(platform)
    step = StepRun(**{**step.__dict__, "image": "localhost/sluice/never-built:0.0.0"})
    started = time.monotonic()
    result = ContainerLauncher(platform).run(step, LOG)
    assert result.failure is FailureKind.IMAGE_MISSING and result.failure.permanent
    assert "make images" in result.message and "never pulls" in result.message
    assert time.monotonic() - started < 60, "no pull attempt"


@pytest.mark.slow
def test_an_unknown_step_is_a_permanent_failure(engine: Engine, platform: Platform) -> None:
    step = inline_step(platform)
    step = StepRun(**{**step.__dict__, "command": ["sluice-step", "teleport"]})
    result = ContainerLauncher(platform).run(step, LOG)
    assert result.failure is FailureKind.UNKNOWN_STEP and result.failure.permanent
    assert result.exit_code == 64 and "unknown step 'teleport'" in result.message


def _containers(engine: Engine, run_id: str) -> list[str]:
    done = engine.run("ps", "-a", "--format", "{{.Names}}", "--filter", f"label=run_id={run_id}")
    return done.stdout.split()


def _wait_started(engine: Engine, step: StepRun, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = engine.run("ps", "--format", "{{.Names}}", "--filter", f"label=run_id={step.run_id}")
        if done.stdout.strip():
            return
        time.sleep(0.2)
    raise AssertionError("the step container never started")


@pytest.mark.slow
def test_cancelling_the_task_stops_its_container(engine: Engine, platform: Platform) -> None:
    step = inline_step(platform, "sleep", {"seconds": 600})
    launcher = ContainerLauncher(platform)
    results: list[LaunchResult] = []
    runner = threading.Thread(target=lambda: results.append(launcher.run(step, LOG)), daemon=True)
    runner.start()
    _wait_started(engine, step)
    started = time.monotonic()
    launcher.on_kill()
    runner.join(timeout=60)
    assert results and results[0].failure is FailureKind.KILLED, results
    assert time.monotonic() - started < 15, "SIGTERM first: a step that exits on it is not waited for"
    deadline = time.monotonic() + 20
    while _containers(engine, step.run_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _containers(engine, step.run_id) == []


@pytest.mark.slow
def test_the_profile_timeout_stops_its_container(engine: Engine, tmp_path: Path) -> None:
    platform = platform_for(tmp_path / "artifacts", {"quick": {"cpu": "1", "memory": "1Gi", "timeoutSeconds": 2}})
    step = inline_step(platform, "sleep", {"seconds": 600}, profile="quick")
    started = time.monotonic()
    result = ContainerLauncher(platform).run(step, LOG)
    assert result.failure is FailureKind.TIMEOUT, result
    assert time.monotonic() - started < 20, "SIGTERM first, then SIGKILL only after the grace period"


WORKER = textwrap.dedent(
    """
    # A worker stand-in that launches like Airflow's task supervisor: the task process is forked from this
    # process's main thread into its own process group, and there the container launcher runs the step.
    import json, logging, os, sys, time
    from sluice.launchers.base import StepRun
    from sluice.launchers.container import ContainerLauncher
    from sluice.platform import parse_platform
    from pathlib import Path
    platform = parse_platform(json.loads(sys.argv[1]), Path("test"))
    step = StepRun(**{**json.loads(sys.argv[2]), "profile": platform.profile("default")})
    pid = os.fork()
    if pid == 0:
        os.setpgid(0, 0)
        ContainerLauncher(platform).run(step, logging.getLogger("task"))
        os._exit(0)
    print(pid, flush=True)
    time.sleep(3600)
    """
)


@pytest.mark.slow
def test_sigkill_of_the_worker_leaves_no_container(engine: Engine, platform: Platform) -> None:
    step = inline_step(platform, "sleep", {"seconds": 600})
    fields = {key: value for key, value in step.__dict__.items() if key != "profile"}
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, json.dumps(platform.model_dump(by_alias=True)), json.dumps(fields)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    task_pid = int(worker.stdout.readline())
    _wait_started(engine, step)
    os.killpg(worker.pid, signal.SIGKILL)  # the worker and its group; the task process is in its own group
    worker.wait()
    deadline = time.monotonic() + 30
    while (_containers(engine, step.run_id) or _alive(task_pid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(task_pid), "the task process dies with its worker"
    assert _containers(engine, step.run_id) == [], "its container is removed, running or not"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.mark.slow
def test_sweep_removes_containers_whose_task_is_gone(engine: Engine) -> None:
    image = current_platform().image_ref(STEP_IMAGE)
    gone = f"{socket.gethostname()}/{2**22 + 17}/1.00"  # no such process
    name = f"sluice-sweep-test-{os.getpid()}"
    done = engine.run(
        "run", "-d", "--name", name, *engine.limit_args, "--network", "none",
        "--label", "sluice.io/launcher=container", "--label", f"{LABEL_OWNER}={gone}",
        "--entrypoint", '["sleep"]', image, "600",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert name in sweep(engine)
    assert engine.run("container", "exists", name).returncode != 0


@pytest.mark.slow
def test_cache_key_follows_the_image_content(engine: Engine, tmp_path: Path) -> None:
    """A rebuild that only stamps labels keeps the key; a rebuild with changed code gets a new one."""
    base = current_platform().image_ref(STEP_IMAGE)
    keys = {}
    for variant, line in (("label", "LABEL org.opencontainers.image.revision=other"), ("code", "COPY extra.py /opt/")):
        context = tmp_path / variant
        context.mkdir()
        (context / "extra.py").write_text("print('changed')\n")
        (context / "Containerfile").write_text(f"FROM {base}\n{line}\n")
        tag = f"localhost/sluice/cache-test-{variant}:{os.getpid()}"
        built = engine.run("build", *engine.limit_args, "-t", tag, str(context), timeout=300)
        assert built.returncode == 0, built.stderr
        keys[variant] = image_content_id(engine, tag)
        engine.run("rmi", tag)
    assert keys["label"] == image_content_id(engine, base)
    assert keys["code"] != image_content_id(engine, base)
