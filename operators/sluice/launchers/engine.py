"""Which container engine runs step containers and builds images here, and the flags this host needs.

podman first (daemonless, rootless or as root), else docker where its daemon answers. Found once per process.
``SLUICE_CONTAINER_ENGINE`` names one (``podman``, ``docker`` or a path) to skip the search.

Host flags, measured on the hosts Sluice is developed on (../docs/containers.md): runc where crun is absent
or refuses a hybrid cgroup hierarchy; the cgroupfs manager where systemd is not running; resource limits no
higher than the host's own hard limits (the engines default to 1,048,576 open files, which runc may not set).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from sluice.errors import SluiceError

ENV_ENGINE = "SLUICE_CONTAINER_ENGINE"
NOFILE_CAP = 65536
NPROC_CAP = 4096
INSTALL_HINT = (
    "install podman (Debian/Ubuntu: `apt-get install podman runc`; `make images` does it when run as root) "
    f"or start a docker daemon, or name one in ${ENV_ENGINE}"
)


class EngineMissing(SluiceError, RuntimeError):
    """No container engine answers on this machine; the message says what to install."""


@dataclass(frozen=True)
class Engine:
    name: str  # "podman" or "docker"
    path: str
    global_args: tuple[str, ...] = ()  # before the subcommand: runtime and cgroup manager (podman)
    limit_args: tuple[str, ...] = ()  # for `run` and `build`: resource limits this host lets a container have

    def command(self, *args: str) -> list[str]:
        return [self.path, *self.global_args, *args]

    def run(self, *args: str, timeout: float | None = 60, check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args), capture_output=True, text=True, timeout=timeout, check=check)

    def image_exists(self, ref: str) -> bool:
        return self.run("image", "exists" if self.name == "podman" else "inspect", ref).returncode == 0

    def image_id(self, ref: str) -> str | None:
        """The image's content id (sha256:…), which changes exactly when a rebuild changes its content."""
        done = self.run("image", "inspect", "--format", "{{.Id}}", ref)
        if done.returncode != 0:
            return None
        value = done.stdout.strip()
        return value if value.startswith("sha256:") else f"sha256:{value}"


def _limits() -> tuple[str, ...]:
    _, nofile_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    _, nproc_hard = resource.getrlimit(resource.RLIMIT_NPROC)
    nofile = NOFILE_CAP if nofile_hard == resource.RLIM_INFINITY else min(nofile_hard, NOFILE_CAP)
    nproc = NPROC_CAP if nproc_hard == resource.RLIM_INFINITY else min(nproc_hard, NPROC_CAP)
    return ("--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}")


def _podman(path: str) -> Engine:
    args: list[str] = []
    if shutil.which("runc") and (not shutil.which("crun") or _cgroup_hybrid()):
        args += ["--runtime", "runc"]
    if not Path("/run/systemd/system").is_dir():
        args += ["--cgroup-manager", "cgroupfs"]
    return Engine("podman", path, tuple(args), _limits())


def _cgroup_hybrid() -> bool:
    """cgroup v1 (or hybrid): no unified cgroup2 mount at /sys/fs/cgroup."""
    return not Path("/sys/fs/cgroup/cgroup.controllers").exists()


def _docker_answers(path: str) -> bool:
    try:
        return subprocess.run([path, "version"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@lru_cache(maxsize=4)
def find_engine(wanted: str | None = None) -> Engine:
    """The engine to use: ``wanted`` (or $SLUICE_CONTAINER_ENGINE), else podman, else docker with a daemon."""
    wanted = wanted or os.environ.get(ENV_ENGINE) or None
    candidates = [wanted] if wanted else ["podman", "docker"]
    for candidate in candidates:
        path = shutil.which(candidate)
        if path is None:
            continue
        name = Path(path).name
        if "podman" in name:
            return _podman(path)
        if _docker_answers(path):
            return Engine("docker", path, (), _limits())
    if wanted:
        raise EngineMissing(
            f"container engine {wanted!r} (from ${ENV_ENGINE} or the caller) is not usable here: {INSTALL_HINT}"
        )
    raise EngineMissing(f"no container engine found (podman, or docker with a running daemon): {INSTALL_HINT}")
