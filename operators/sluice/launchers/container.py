"""Run a step in its image on this machine (podman, or docker), with what its pod would get.

Everything comes from the pod the Kubernetes launcher would submit (``kubernetes.step_pod``), translated field
by field (``container_spec``), so the two cannot drift: the command and args, the contract env, the user and
group (``runAsUser``/``runAsGroup``/``fsGroup``), a read-only root with the pod's ``emptyDir`` volumes as the
only writable places, all capabilities dropped, no privilege escalation, the runtime's default seccomp profile,
memory and CPU limits, labels, the deadline and the grace period. What a laptop adds, and why:

- the artifact store is mounted at the same path (a local root); local files named by the step's inputs and
  params are mounted read-only at their own paths, so URIs mean the same inside and out;
- no network (``--network none``) unless the profile sets ``network: true`` or the artifact store is remote
  (``s3://``): then the host's network, and the ``AWS_*``/``FSSPEC_*`` variables the pod would get from
  ``artifacts.secretName``, taken from the launching process's environment;
- the engine never pulls: an image that is not here fails at once, naming ``make images``.

A container must not outlive its task: a guard process (own session, so a kill of the worker's process group
misses it) removes the container when the task process dies; the task process dies with its parent (the
worker's supervisor) through ``PR_SET_PDEATHSIG``; ``sweep()`` removes what a dead task left (run at worker
start and by ``sluice up``/``down``), and ``remove_for_home()`` what a stack started.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from sluice import artifacts
from sluice.code_identity import CodeIdentity
from sluice.contract import ENV_INPUTS, ENV_PARAMS
from sluice.launchers.base import FailureKind, LaunchResult, StepFailed, StepLog, StepRun
from sluice.launchers.engine import Engine, EngineMissing, find_engine
from sluice.launchers.local import POLL_SECONDS, TAIL_LINES, exit_result, pump_lines
from sluice.lifetime import die_with_parent
from sluice.platform import Platform
from sluice.quantity import parse_quantity

LABEL_MANAGED = "sluice.io/launcher=container"
LABEL_OWNER = "sluice.io/owner"  # host/pid/start time of the task process that launched it
LABEL_HOME = "sluice.io/home"  # $SLUICE_HOME of the launching process: the stack that started it
LABEL_SCRATCH = "sluice.io/scratch"  # host directory behind the pod's emptyDir volumes, removed with it
DEFAULT_GRACE_SECONDS = 30  # a pod's terminationGracePeriodSeconds when unset
PASSED_ENV_PREFIXES = ("AWS_", "FSSPEC_")  # what artifacts.secretName holds on a cluster (S3 credentials)
ENGINE_ERROR = 125  # podman/docker run: the engine itself failed (bad flag, image not known, ...)
MISSING_IMAGE = ("image not known", "No such image", "Unable to find image")
CGROUP_PARENT = "/sluice"  # with the cgroupfs manager, each step container's cgroup has a parent of its own here
# Run by the guard: once its stdin closes (the task process ended or died), remove the container, then the
# cgroup parent the step had (argv[1]: a glob of its directories; rmdir, deepest first).
GUARD = (
    "import glob, os, subprocess, sys\n"
    "sys.stdin.buffer.read()\n"
    "subprocess.run(sys.argv[2:], capture_output=True)\n"
    "for top in glob.glob(sys.argv[1]) if sys.argv[1] else []:\n"
    "    for path in sorted((w[0] for w in os.walk(top)), key=len, reverse=True):\n"
    "        try:\n"
    "            os.rmdir(path)\n"
    "        except OSError:\n"
    "            pass\n"
)


@dataclass(frozen=True)
class ContainerSpec:
    """The parts of a step pod a container engine can honour, read from the pod (see ``container_spec``)."""

    name: str
    image: str
    entrypoint: list[str]
    args: list[str]
    env: dict[str, str]
    labels: dict[str, str]
    user: str | None  # "uid:gid" from runAsUser/runAsGroup
    group_add: list[str]  # fsGroup and supplementalGroups
    read_only_root: bool
    cap_drop: list[str]
    cap_add: list[str]
    no_new_privileges: bool
    seccomp_unconfined: bool
    memory_bytes: int | None
    cpus: float | None
    devices: list[str]  # GPUs by CDI name: "<resource>=all"
    writable: dict[str, str | None]  # emptyDir mount path → tmpfs size for medium Memory, None for disk
    workdir: str | None
    deadline_seconds: int | None
    grace_seconds: int
    secret_env: bool  # envFrom a Secret: off the cluster, the launching process's AWS_/FSSPEC_ variables
    ignored: list[str] = field(default_factory=list)  # pod fields a laptop cannot honour, said in the task log


def container_spec(pod: Any) -> ContainerSpec:
    """Translate a step pod (a ``V1Pod``) into the container that runs it; refuse what cannot be honoured."""
    spec = pod.spec
    if len(spec.containers) != 1 or spec.init_containers:
        raise StepFailed("the container launcher runs step pods with exactly one container and no init containers")
    main = spec.containers[0]
    pod_security = spec.security_context
    security = main.security_context
    env: dict[str, str] = {}
    for var in main.env or []:
        if var.value_from is not None:
            raise StepFailed(f"step env {var.name} comes from {var.value_from}; the container launcher takes values")
        env[var.name] = var.value or ""
    secret_env = False
    for source in main.env_from or []:
        if source.secret_ref is None:
            raise StepFailed(f"step envFrom {source}: the container launcher honours only the artifact store Secret")
        secret_env = True
    run_as_user = (security and security.run_as_user) or (pod_security and pod_security.run_as_user)
    run_as_group = (security and security.run_as_group) or (pod_security and pod_security.run_as_group)
    user = None if run_as_user is None else f"{run_as_user}:{run_as_group if run_as_group is not None else 0}"
    non_root = (security and security.run_as_non_root) or (pod_security and pod_security.run_as_non_root)
    if non_root and run_as_user == 0:
        raise StepFailed("the step pod says runAsNonRoot but runAsUser is 0")
    groups = [pod_security.fs_group, *(pod_security.supplemental_groups or [])] if pod_security else []
    capabilities = security.capabilities if security else None
    seccomp = (security and security.seccomp_profile) or (pod_security and pod_security.seccomp_profile)
    if seccomp is not None and seccomp.type not in ("RuntimeDefault", "Unconfined"):
        raise StepFailed(f"seccomp profile {seccomp.type!r}: the container launcher honours RuntimeDefault only")
    limits = (main.resources.limits if main.resources else None) or {}
    ignored = ["resources.limits.ephemeral-storage"] if "ephemeral-storage" in limits else []
    devices = [f"{name}=all" for name in limits if name not in ("cpu", "memory", "ephemeral-storage")]
    volumes = {volume.name: volume for volume in spec.volumes or []}
    writable: dict[str, str | None] = {}
    for mount in main.volume_mounts or []:
        volume = volumes.get(mount.name)
        empty_dir = volume.empty_dir if volume is not None else None
        if empty_dir is None:
            raise StepFailed(f"volume {mount.name!r}: the container launcher mounts emptyDir volumes only")
        memory_backed = empty_dir.medium == "Memory"
        writable[mount.mount_path] = (empty_dir.size_limit or "64m") if memory_backed else None
    ignored += [f"nodeSelector {spec.node_selector}"] if spec.node_selector else []
    ignored += ["tolerations"] if spec.tolerations else []
    ignored += [f"priorityClassName {spec.priority_class_name}"] if spec.priority_class_name else []
    return ContainerSpec(
        name=pod.metadata.name,
        image=main.image,
        entrypoint=list(main.command or []),
        args=list(main.args or []),
        env=env,
        labels=dict(pod.metadata.labels or {}),
        user=user,
        group_add=[str(group) for group in groups if group is not None],
        read_only_root=bool(security and security.read_only_root_filesystem),
        cap_drop=list(capabilities.drop or []) if capabilities else [],
        cap_add=list(capabilities.add or []) if capabilities else [],
        no_new_privileges=bool(security and security.allow_privilege_escalation is False),
        seccomp_unconfined=seccomp is not None and seccomp.type == "Unconfined",
        memory_bytes=int(parse_quantity(limits["memory"])) if "memory" in limits else None,
        cpus=float(parse_quantity(limits["cpu"])) if "cpu" in limits else None,
        devices=devices,
        writable=writable,
        workdir=main.working_dir,
        deadline_seconds=spec.active_deadline_seconds,
        grace_seconds=(
            spec.termination_grace_period_seconds
            if spec.termination_grace_period_seconds is not None
            else DEFAULT_GRACE_SECONDS
        ),
        secret_env=secret_env,
        ignored=ignored,
    )


def local_paths(value: Any) -> list[Path]:
    """Absolute local paths named in an input or param (plain, ``file://`` or a ``sqlite:///`` URL) that exist."""
    if isinstance(value, dict):
        return [path for item in value.values() for path in local_paths(item)]
    if isinstance(value, list):
        return [path for item in value for path in local_paths(item)]
    if not isinstance(value, str):
        return []
    for prefix in ("file://", "sqlite:///", "sqlite+pysqlite:///"):
        if value.startswith(prefix):
            value = "/" + value.removeprefix(prefix).lstrip("/")
    if not value.startswith("/"):
        return []
    path = Path(value)
    return [path] if path.exists() else []


def read_only_mounts(step: StepRun, root: str) -> list[Path]:
    """Local files and folders the step's inputs and params name, outside the artifact root (mounted read-only)."""
    named = [
        *local_paths(json.loads(step.env.get(ENV_INPUTS, "{}"))),
        *local_paths(json.loads(step.env.get(ENV_PARAMS, "{}"))),
    ]
    inside = Path(root) if root else None
    paths = sorted({p.resolve() for p in named if inside is None or not p.resolve().is_relative_to(inside.resolve())})
    return [p for p in paths if not any(p != other and p.is_relative_to(other) for other in paths)]


def owner_label() -> str:
    """Who launched the container: this host, this process and its start time (a pid can be reused)."""
    me = psutil.Process()
    return f"{socket.gethostname()}/{me.pid}/{me.create_time():.2f}"


def _owner_alive(label: str) -> bool:
    host, _, rest = label.partition("/")
    pid, _, started = rest.partition("/")
    if host != socket.gethostname():
        return True  # not ours to judge
    try:
        return f"{psutil.Process(int(pid)).create_time():.2f}" == started
    except (psutil.NoSuchProcess, ValueError):
        return False


def _listed(engine: Engine, *filters: str) -> list[dict[str, Any]]:
    args = ["ps", "-a", "--format", "json"]
    for item in filters:
        args += ["--filter", f"label={item}"]
    done = engine.run(*args)
    if done.returncode != 0 or not done.stdout.strip():
        return []
    listed: list[dict[str, Any]] = json.loads(done.stdout)
    return listed


def _remove(engine: Engine, containers: list[dict[str, Any]], grace: int = 0) -> list[str]:
    names = [c["Names"][0] if isinstance(c.get("Names"), list) else str(c.get("Names")) for c in containers]
    if names:
        engine.run("rm", "-f", "-t", str(grace), *names, timeout=120 + grace)
    for name in names:
        remove_cgroups(cgroup_parent(engine, name))
    for container in containers:
        scratch = (container.get("Labels") or {}).get(LABEL_SCRATCH)
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return names


def sweep(engine: Engine | None = None) -> list[str]:
    """Remove step containers whose launching task process on this host is gone; returns their names."""
    try:
        engine = engine or find_engine()
    except EngineMissing:
        return []
    listed = _listed(engine, LABEL_MANAGED)
    return _remove(engine, [c for c in listed if not _owner_alive((c.get("Labels") or {}).get(LABEL_OWNER, ""))])


def remove_for_home(home: Path, grace: int = DEFAULT_GRACE_SECONDS) -> list[str]:
    """Stop (SIGTERM, then SIGKILL after ``grace``) and remove every step container started under ``home``."""
    try:
        engine = find_engine()
    except EngineMissing:
        return []
    return _remove(engine, _listed(engine, LABEL_MANAGED, f"{LABEL_HOME}={home.resolve()}"), grace)


CGROUP_PATTERNS = (  # where podman (cgroupfs or systemd manager) and docker put a container's memory cgroup
    "/sys/fs/cgroup/memory/*/libpod-{id}",
    "/sys/fs/cgroup/memory/*/docker-{id}.scope",
    "/sys/fs/cgroup/memory/docker/{id}",
    "/sys/fs/cgroup/*/libpod-{id}*",
    "/sys/fs/cgroup/*/docker-{id}.scope",
    "/sys/fs/cgroup/docker/{id}",
)


def container_cgroup(container_id: str) -> Path | None:
    """The memory cgroup of a running container (cgroup v1 memory controller or the v2 unified tree)."""
    import glob

    for pattern in CGROUP_PATTERNS:
        found = [Path(p) for p in glob.glob(pattern.format(id=container_id)) if (Path(p) / "memory.stat").exists()]
        if found:
            return found[0]
    return None


def cgroup_parent(engine: Engine, name: str) -> str | None:
    """A cgroup parent of the step's own, where the engine manages cgroups itself (podman with cgroupfs): it
    outlives the container, so its high-water mark says how much memory the step reached, however briefly."""
    if engine.name == "podman" and "cgroupfs" in engine.global_args:
        return f"{CGROUP_PARENT}/{name}"
    return None


def parent_glob(parent: str | None) -> str:
    return f"/sys/fs/cgroup/*{parent}" if parent else ""


def high_water(parent: str | None) -> int | None:
    """The most memory the step's cgroup parent ever held (cgroup v1 ``max_usage_in_bytes``, v2 ``memory.peak``):
    cache included, so it is used to recognise an out-of-memory kill, not reported as the step's peak."""
    if parent is None:
        return None
    for path in (f"/sys/fs/cgroup/memory{parent}/memory.max_usage_in_bytes", f"/sys/fs/cgroup{parent}/memory.peak"):
        with contextlib.suppress(OSError, ValueError):
            return int(Path(path).read_text())
    return None


def remove_cgroups(parent: str | None) -> None:
    import glob

    for top in glob.glob(parent_glob(parent)) if parent else []:
        for path in sorted((walked[0] for walked in os.walk(top)), key=len, reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(path)


def working_set(cgroup: Path) -> int | None:
    """Memory in use less inactive file cache: what the kubelet reports and what the limit is enforced on."""
    try:
        stat = dict(line.split() for line in (cgroup / "memory.stat").read_text().splitlines())
        usage_file = cgroup / "memory.usage_in_bytes"
        usage = int((usage_file if usage_file.exists() else cgroup / "memory.current").read_text())
    except (OSError, ValueError):
        return None
    inactive = int(stat.get("total_inactive_file", stat.get("inactive_file", 0)))
    return max(0, usage - inactive)


def out_of_memory(engine: Engine, spec: ContainerSpec, code: int | None, reached: list[int | None]) -> bool:
    """Whether the kernel killed the container at its memory limit: the engine says so, or (podman on cgroup v1
    does not) it died of SIGKILL having reached within 10 % of its limit (sampled, or the cgroup's high water)."""
    if code != 128 + signal.SIGKILL:
        return False
    if engine.run("inspect", "--format", "{{.State.OOMKilled}}", spec.name).stdout.strip() == "true":
        return True
    limit = spec.memory_bytes
    return limit is not None and any(value is not None and value >= 0.9 * limit for value in reached)


def image_content_id(engine: Engine, ref: str) -> str | None:
    """What names the image's code: a hash of its layers and how it runs (entrypoint, command, env, user, workdir).
    Labels are left out, so a rebuild that only stamps a new revision label keeps its cache; None: not built."""
    done = engine.run("image", "inspect", "--format", "{{json .RootFS.Layers}}|{{json .Config}}", ref)
    if done.returncode != 0:
        return None
    layers, _, config_json = done.stdout.strip().partition("|")
    config = json.loads(config_json or "{}") or {}
    runs = {key: config.get(key) for key in ("Entrypoint", "Cmd", "Env", "User", "WorkingDir")}
    digest = hashlib.sha256(f"{layers}\0{json.dumps(runs, sort_keys=True)}".encode()).hexdigest()
    return f"sha256:{digest}"


def give(path: Path, run_as: tuple[int, int] | None) -> None:
    """Hand a host path to the step's user (as root only: a rootless engine maps this user's files instead)."""
    if run_as is None or os.geteuid() != 0:
        return
    stat = path.stat()
    if (stat.st_uid, stat.st_gid) != run_as:
        os.chown(path, *run_as)


def run_as_ids(spec: ContainerSpec) -> tuple[int, int] | None:
    uid, _, gid = (spec.user or "").partition(":")
    return (int(uid), int(gid or 0)) if uid else None


def engine_args(
    engine: Engine,
    spec: ContainerSpec,
    *,
    scratch: Path,
    network: bool,
    mounts: list[tuple[str, str]],
    host_env: dict[str, str],
) -> tuple[list[str], dict[str, str]]:
    """The engine's ``run`` arguments for a container spec, and the environment to start the engine with: the
    container's env values travel through it, by name, rather than on a command line anyone can read.

    ``scratch`` (a host directory removed with the container) holds the pod's disk-backed emptyDir volumes and
    the container id file; ``mounts`` are host paths mounted at the same path (``rw`` or ``ro``); ``host_env``
    is what the pod would take from its Secret (``envFrom``), passed the same way."""
    run_as = run_as_ids(spec)
    args = ["--name", spec.name, "--cidfile", str(scratch / "cid"), "--pull", "never", *engine.limit_args]
    parent = cgroup_parent(engine, spec.name)
    if parent:
        args += ["--cgroup-parent", parent]
    labels = {
        **spec.labels,
        "sluice.io/launcher": "container",
        LABEL_OWNER: owner_label(),
        LABEL_HOME: str(Path(os.environ.get("SLUICE_HOME", ".")).resolve()),
        LABEL_SCRATCH: str(scratch),
    }
    for key, value in labels.items():
        args += ["--label", f"{key}={value}"]
    if spec.entrypoint:
        args += ["--entrypoint", json.dumps(spec.entrypoint)]
    if spec.user:
        args += ["--user", spec.user]
    if engine.name == "podman" and os.geteuid() != 0 and run_as is not None:
        # Rootless: this user's files appear as the step's user inside, as a pod's volumes would with fsGroup.
        args += ["--userns", f"keep-id:uid={run_as[0]},gid={run_as[1]}"]
    for group in spec.group_add:
        args += ["--group-add", group]
    if spec.read_only_root:
        args += ["--read-only"] + (["--read-only-tmpfs=false"] if engine.name == "podman" else [])
    args += [arg for cap in spec.cap_drop for arg in ("--cap-drop", cap)]
    args += [arg for cap in spec.cap_add for arg in ("--cap-add", cap)]
    if spec.no_new_privileges:
        args += ["--security-opt", "no-new-privileges"]
    if spec.seccomp_unconfined:
        args += ["--security-opt", "seccomp=unconfined"]
    if spec.memory_bytes is not None:
        args += ["--memory", str(spec.memory_bytes), "--memory-swap", str(spec.memory_bytes)]
    if spec.cpus is not None:
        args += ["--cpus", f"{min(spec.cpus, os.cpu_count() or 1):g}"]
    args += [arg for device in spec.devices for arg in ("--device", device)]
    if spec.workdir:
        args += ["--workdir", spec.workdir]
    args += ["--network", "host" if network else "none"]
    for index, (path, tmpfs_size) in enumerate(sorted(spec.writable.items())):
        if tmpfs_size is not None:
            args += ["--tmpfs", f"{path}:rw,size={tmpfs_size},mode=1777"]
            continue
        volume = scratch / f"volume-{index}"
        volume.mkdir(mode=0o770)
        give(volume, run_as)
        args += ["--volume", f"{volume}:{path}:rw"]
    for source, mode in mounts:
        args += ["--volume", f"{source}:{source}:{mode}"]
    env = {**os.environ, **host_env, **spec.env}
    args += [arg for name in [*spec.env, *host_env] for arg in ("--env", name)]
    args += [spec.image, *spec.args]
    return args, env


class ContainerLauncher:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self._engine: Engine | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._name: str | None = None
        self._grace = DEFAULT_GRACE_SECONDS
        self._killed = False

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            try:
                self._engine = find_engine()
            except EngineMissing as exc:
                raise StepFailed(str(exc), FailureKind.START) from None
        return self._engine

    def code_identity(self, step: StepRun, cache_version: str | None) -> CodeIdentity:
        """The image's content (layers and run config); an image that is not here turns caching off."""
        content = image_content_id(self.engine, step.image)
        if content is None:
            return CodeIdentity(None, f"image {step.image} is not built here (make images)")
        value = content if not cache_version else f"{content} cache_version={cache_version}"
        return CodeIdentity(value, f"image {step.image} (content {content[7:19]})")

    def run(self, step: StepRun, log: StepLog, context: Any | None = None) -> LaunchResult:
        from sluice.launchers.kubernetes import step_pod

        spec = container_spec(step_pod(step, self.platform))
        engine = self.engine
        local_root = artifacts.local_path(self.platform.artifacts.root)
        network = local_root is None or step.profile.network
        scratch = Path(tempfile.mkdtemp(prefix=f"sluice-{spec.name}-"))
        run_as = run_as_ids(spec)
        args, env = self._args(spec, step, scratch, network, run_as, local_root)
        log.info(
            "container launcher: %s %s in %s (profile %s: %s cpu, memory limit %s, network %s, user %s)",
            " ".join(spec.entrypoint),
            " ".join(spec.args),
            step.image,
            step.profile_name,
            spec.cpus,
            step.profile.memory,
            "host" if network else "none",
            spec.user or "the image's",
        )
        if spec.ignored:
            log.info("container launcher: not enforced off the cluster: %s", "; ".join(spec.ignored))
        die_with_parent()
        self._name, self._grace = spec.name, spec.grace_seconds
        parent = cgroup_parent(engine, spec.name)
        guard = subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-S",
                "-c",
                GUARD,
                parent_glob(parent),
                *engine.command("rm", "-f", "-t", "0", spec.name),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        stderr_tail: deque[str] = deque(maxlen=TAIL_LINES)
        peak: int | None = None
        failure: FailureKind | None = None
        reason = ""
        try:
            self._proc = proc = subprocess.Popen(
                engine.command("run", *args),
                env=env,
                cwd=scratch,  # podman 4.3 + runc leaves an `oom` file in its working directory after an OOM kill
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                bufsize=1,
                start_new_session=True,
            )
            readers = [
                threading.Thread(target=pump_lines, args=(proc.stdout, log, logging.INFO, None), daemon=True),
                threading.Thread(target=pump_lines, args=(proc.stderr, log, logging.WARNING, stderr_tail), daemon=True),
            ]
            for reader in readers:
                reader.start()
            peak, failure, reason = self._watch(proc, spec, scratch / "cid", parent)
            for reader in readers:
                reader.join(timeout=5)
            reached = [peak, high_water(parent)]
            if failure is None and not self._killed and out_of_memory(engine, spec, proc.returncode, reached):
                failure = FailureKind.OUT_OF_MEMORY
                reason = f"the container was killed at its limit (peak {(peak or 0) / 2**20:.0f} MiB sampled)"
        except BaseException:
            self.stop()  # the task timed out or was killed around us: the container goes with it
            raise
        finally:
            # The guard removes the stopped container in the background (the task need not wait for it).
            with contextlib.suppress(OSError):
                assert guard.stdin is not None
                guard.stdin.close()
            shutil.rmtree(scratch, ignore_errors=True)
        shown = f"{peak / 2**20:.1f} MiB" if peak is not None else "not sampled: the step ended first"
        log.info("container exited with code %s (peak memory %s)", proc.returncode, shown)
        if proc.returncode == ENGINE_ERROR and failure is None:
            return self._engine_error(step, stderr_tail)
        return exit_result(step, proc.returncode, peak, failure, reason, stderr_tail, self._killed)

    def _engine_error(self, step: StepRun, stderr_tail: deque[str]) -> LaunchResult:
        said = " ".join(stderr_tail) or "(nothing on stderr)"
        if any(marker in said for marker in MISSING_IMAGE):
            return LaunchResult(
                ENGINE_ERROR,
                FailureKind.IMAGE_MISSING,
                f"image {step.image} is not on this machine and the container launcher never pulls: "
                "run `make images` (or build and tag your step image with that name)",
            )
        return LaunchResult(ENGINE_ERROR, FailureKind.START, f"{self.engine.name} could not run the step: {said}")

    def _args(
        self,
        spec: ContainerSpec,
        step: StepRun,
        scratch: Path,
        network: bool,
        run_as: tuple[int, int] | None,
        local_root: str | None,
    ) -> tuple[list[str], dict[str, str]]:
        """The engine's ``run`` arguments for this step, and the environment to start the engine with."""
        mounts: list[tuple[str, str]] = []
        if local_root is not None:
            Path(local_root).mkdir(parents=True, exist_ok=True)
            self._writable_for_step(step, local_root, run_as)
            mounts.append((local_root, "rw"))
        mounts += [(str(source), "ro") for source in read_only_mounts(step, local_root or "")]
        passed = [name for name in os.environ if name.startswith(PASSED_ENV_PREFIXES)]
        return engine_args(
            self.engine,
            spec,
            scratch=scratch,
            network=network,
            mounts=mounts,
            host_env={name: os.environ[name] for name in passed} if spec.secret_env or network else {},
        )

    def _writable_for_step(self, step: StepRun, root: str, run_as: tuple[int, int] | None) -> None:
        """Give the step's user its own prefix and the contract's shared places under the root (``models/``,
        ``tables/``) to write in, as fsGroup gives a pod its volumes. Only root can (and must) do this here;
        rootless engines map this user's files to the step's user instead."""
        if run_as is None or os.geteuid() != 0:
            return
        prefix = Path(artifacts.local_path(step.artifact_prefix) or step.artifact_prefix)
        prefix.mkdir(parents=True, exist_ok=True)
        give(prefix, run_as)
        for shared in ("models", "tables"):
            place = Path(root) / shared
            place.mkdir(exist_ok=True)
            for directory, _, files in os.walk(place):
                for entry in [Path(directory), *(Path(directory) / name for name in files)]:
                    give(entry, run_as)

    def _watch(
        self, proc: subprocess.Popen[str], spec: ContainerSpec, cidfile: Path, parent: str | None
    ) -> tuple[int | None, FailureKind | None, str]:
        """Wait for the container, sampling its memory (working set: of its own cgroup parent where it has one,
        which holds the container and its engine monitor, else of the container) and enforcing the deadline."""
        started = time.monotonic()
        peak: int | None = None
        cgroup: Path | None = None
        while proc.poll() is None:
            if cgroup is None and parent is not None:
                found = [Path(f"/sys/fs/cgroup/memory{parent}"), Path(f"/sys/fs/cgroup{parent}")]
                cgroup = next((path for path in found if (path / "memory.stat").exists()), None)
            if cgroup is None and cidfile.exists():
                cgroup = container_cgroup(cidfile.read_text().strip())
            used = working_set(cgroup) if cgroup is not None else None
            if used is not None:
                peak = max(peak or 0, used)
            if spec.deadline_seconds and time.monotonic() - started > spec.deadline_seconds:
                self.stop()
                return peak, FailureKind.TIMEOUT, f"still running after {spec.deadline_seconds}s: stopped"
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=POLL_SECONDS)
        return peak, None, ""

    def stop(self) -> None:
        """SIGTERM to the step, SIGKILL after the pod's grace period, as the kubelet does."""
        if self._name is None or self._engine is None:
            return
        self._engine.run("stop", "-t", str(self._grace), self._name, timeout=self._grace + 30)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=30)

    def resume(self, step: StepRun, log: StepLog, context: Any, event: dict[str, Any]) -> LaunchResult:
        raise StepFailed("the container launcher never defers, so it has nothing to resume; check launcher.type")

    def on_kill(self) -> None:
        self._killed = True
        self.stop()


def preflight(platform: Platform) -> list[str]:
    """What stops steps from running in containers here: no engine, or a step image that is not built. Empty
    when ready; each line says what to do."""
    try:
        engine = find_engine()
    except EngineMissing as exc:
        return [str(exc)]
    refs = sorted({platform.image_ref(name) for name in platform.step_images})
    return [
        f"step image {ref} is not built on this machine: run `make images` (the container launcher never pulls)"
        for ref in refs
        if not engine.image_exists(ref)
    ]
