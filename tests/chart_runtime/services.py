"""The bundled services' images (postgres, redis, statsd-exporter), modelled on this machine's binaries.

The chart's default values run PostgreSQL (a StatefulSet), Redis and a statsd exporter (Deployments) from public
images. No registry is reachable here and there is no container runtime for them, so each image is modelled the way
``kubelet.Image`` models the platform image: its ENV, its ENTRYPOINT's semantics (``entrypoints/*.sh``: the official
images' docker-entrypoint.sh, as far as the chart uses them) and its WORKDIR, run with the host's binaries of the
same program. The versions differ from the chart's tags; ``ServiceImages.versions`` says by how much, and the install
prints it.

Where a binary's compiled-in default is a port or a path (PostgreSQL's socket directory and port, Redis' port), the
model passes it as an environment variable, so the kubelet maps it to the pod's host port and root like any rendered
value: PGHOST and PGPORT (which libpq's clients and the server read), HARNESS_REDIS_PORT (which the redis model's
entrypoint and redis-cli are given). In a cluster each pod has its own network namespace and filesystem, where the
defaults are the pod's own.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.chart_runtime.kubelet import Image

HERE = Path(__file__).parent
VALUES = HERE.parents[1] / "charts" / "sluice" / "values.yaml"
ENTRYPOINTS = HERE / "entrypoints"
# Where Debian's package would put the exporter (none is packaged for Debian 12); the image's is /bin/statsd_exporter.
STATSD_EXPORTER_NAMES = ("statsd_exporter", "prometheus-statsd-exporter")
APT_PACKAGE = "prometheus-statsd-exporter"


@dataclass
class ServiceImages:
    """The bundled services' image models by repository, and what is missing here (repository → why)."""

    images: dict[str, Image] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)  # repository → "chart's image tag → what runs here"


def chart_images() -> dict[str, dict[str, str]]:
    """The chart's default ``images`` (repository, tag) by key."""
    return dict(yaml.safe_load(VALUES.read_text())["images"])


def postgres_bindir() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian's /usr/lib/postgresql/<major>/bin), or the PATH's."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    return Path(on_path).parent if on_path else None


@functools.cache  # asking apt takes seconds on a loaded machine: once per process
def statsd_exporter() -> str | None:
    """The exporter's binary: on PATH, else installed from apt where apt knows the package (as tools/images.py
    installs podman: root with apt-get). Debian 12 has no such package, so here it is None."""
    for name in STATSD_EXPORTER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    if os.geteuid() == 0 and shutil.which("apt-cache"):
        known = subprocess.run(["apt-cache", "show", APT_PACKAGE], capture_output=True, timeout=60).returncode == 0
        if known:
            from tools.images import _apt_install

            if _apt_install([APT_PACKAGE]):
                return next(filter(None, map(shutil.which, STATSD_EXPORTER_NAMES)), None)
    return None


def _version(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr).strip() else "?"


def service_images(tmp: Path) -> ServiceImages:
    """The three images modelled on this machine, each where its binary is installed (else why not)."""
    out = ServiceImages()
    chart = chart_images()
    system = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    postgres = chart["postgres"]
    bindir = postgres_bindir()
    if bindir is None:
        out.missing[postgres["repository"]] = "no PostgreSQL server binaries here (apt-get install postgresql)"
    else:
        baked = tmp / "image-postgres"
        out.images[postgres["repository"]] = Image(
            {
                # The image's ENV (its PATH names its own PostgreSQL's bin directory: host_env below).
                "PGDATA": "/var/lib/postgresql/data",
                # The image's LANG (it generates en_US.UTF-8); C.UTF-8 where this machine has no such locale.
                "LANG": "en_US.utf8" if _has_locale("en_US.utf8") else "C.UTF-8",
                # Not ENV of the image: the binaries' compiled-in socket directory and port, as libpq and the
                # server read them, so the kubelet maps both to this pod's (see the module docstring).
                "PGHOST": "/var/run/postgresql",
                "PGPORT": "5432",
            },
            lambda args: ["bash", str(ENTRYPOINTS / "postgres.sh"), *(args or ["postgres"])],
            # Directories the image has (VOLUME /var/lib/postgresql/data; the socket directory): the pod's mounts
            # replace them, as in a container.
            {"/var/lib/postgresql/data": _dir(baked / "data"), "/var/run/postgresql": _dir(baked / "run")},
            "/",
            {"PATH": f"{bindir}:{system}"},
            stop_signal=signal.SIGINT,  # STOPSIGNAL SIGINT: PostgreSQL's fast shutdown
        )
        here = _version([str(bindir / "postgres"), "--version"])
        out.versions[postgres["repository"]] = f"{postgres['tag']} → this machine's {here}"

    redis = chart["redis"]
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if not server or not cli:
        out.missing[redis["repository"]] = "no redis-server/redis-cli here (apt-get install redis-server)"
    else:
        bin_dir = _dir(tmp / "image-redis-bin")
        # redis-cli's compiled-in default (127.0.0.1:6379) is the pod's own Redis in its network namespace; here the
        # kubelet's mapping of that port (the readiness probe runs `redis-cli ping`).
        wrapper = bin_dir / "redis-cli"
        wrapper.write_text(f'#!/bin/sh\nexec {cli} -p "$HARNESS_REDIS_PORT" "$@"\n')
        wrapper.chmod(0o755)
        out.images[redis["repository"]] = Image(
            {"HARNESS_REDIS_PORT": "6379"},  # not ENV of the image: its compiled-in port (module docstring)
            lambda args: ["bash", str(ENTRYPOINTS / "redis.sh"), *(args or ["redis-server"])],
            {"/data": _dir(tmp / "image-redis-data")},  # VOLUME /data, WORKDIR /data
            "/data",
            {"PATH": f"{bin_dir}:{system}"},
        )
        here = _version([server, "--version"])
        out.versions[redis["repository"]] = f"{redis['tag']} → this machine's {here}"

    statsd = chart["statsd"]
    exporter = statsd_exporter()
    if exporter is None:
        out.missing[statsd["repository"]] = (
            f"no statsd exporter binary here ({' or '.join(STATSD_EXPORTER_NAMES)} on PATH), and apt has no "
            f"{APT_PACKAGE} (Debian 12 does not package prometheus/statsd_exporter; no reachable registry ships it)"
        )
    else:
        out.images[statsd["repository"]] = Image(
            {},
            # ENTRYPOINT ["/bin/statsd_exporter"]. Its TCP statsd listener (default :9125) is made explicit, so the
            # kubelet maps it with the UDP one; the rendered args come after and win.
            lambda args: [exporter, "--statsd.listen-tcp=:9125", *args],
            {},
            "/",
            {"PATH": system},
        )
        here = _version([exporter, "--version"])
        out.versions[statsd["repository"]] = f"{statsd['tag']} → this machine's {here}"
    return out


@functools.cache
def missing_images() -> dict[str, str]:
    """The bundled services' images this machine cannot model (repository → why)."""
    with tempfile.TemporaryDirectory() as tmp:
        return service_images(Path(tmp)).missing


def _has_locale(name: str) -> bool:
    done = subprocess.run(["locale", "-a"], capture_output=True, text=True, timeout=30)
    return name.lower() in done.stdout.lower().split()


def _dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o755)
    return path
