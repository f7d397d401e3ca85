"""One source of truth for pools, profiles, launcher and artifact store.

The chart renders its values into ``platform.yaml`` (mounted in every Airflow component, named by
``SLUICE_PLATFORM_FILE``). On a laptop no file is needed: the chart's own ``values.yaml`` is read,
with the launcher switched to ``local`` and artifacts kept under ``$SLUICE_HOME``.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

PLATFORM_VERSION = 1
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
PLATFORM_KEYS = ("executor", "routing", "launcher", "artifacts", "stepImages", "pools", "profiles")


class PlatformError(ValueError):
    """The platform file is missing or invalid; the message names the field and the fix."""


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ScaleDown(_Model):
    stabilization_window_seconds: int = Field(300, ge=0)
    pods_per_period: int = Field(1, ge=1)
    period_seconds: int = Field(60, ge=1)


class Autoscaling(_Model):
    enabled: bool = True
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(4, ge=1)
    cooldown_period: int = Field(300, ge=0)
    polling_interval: int = Field(15, ge=1)
    scale_down: ScaleDown = Field(default_factory=ScaleDown)

    @model_validator(mode="after")
    def _min_le_max(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"minReplicas ({self.min_replicas}) is greater than maxReplicas ({self.max_replicas}); "
                "lower minReplicas or raise maxReplicas"
            )
        return self


class Pool(_Model):
    """A Celery worker pool: the queues it serves and how it scales."""

    name: str
    queues: list[str] = Field(min_length=1)
    concurrency: int = Field(8, ge=1)
    resources: dict[str, Any] = Field(default_factory=dict)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    affinity: dict[str, Any] = Field(default_factory=dict)
    termination_grace_period_seconds: int = Field(600, ge=0)
    max_task_duration_seconds: int | None = Field(None, ge=1)
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)

    @field_validator("name")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not DNS_LABEL.match(value):
            raise ValueError(f"pool name {value!r} is not a DNS label: use lowercase letters, digits and '-'")
        return value


class Gpu(_Model):
    count: int = Field(0, ge=0)
    resource: str | None = None

    @model_validator(mode="after")
    def _resource_named(self) -> Gpu:
        if self.count and not self.resource:
            raise ValueError("gpu.count is set but gpu.resource is empty: name it, e.g. nvidia.com/gpu")
        return self


class Profile(_Model):
    """Resources a step gets, as a pod on the cluster and as a local process on a laptop."""

    cpu: str = "1"
    memory: str = "1Gi"
    ephemeral_storage: str | None = None
    gpu: Gpu = Field(default_factory=Gpu)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    priority_class_name: str | None = None
    timeout_seconds: int | None = Field(None, ge=1)


class Routing(_Model):
    kubernetes_queue: str = "kubernetes"


class Launcher(_Model):
    type: Literal["local", "kubernetes"] = "local"
    namespace: str | None = None
    service_account_name: str | None = None
    startup_timeout_seconds: int = Field(300, ge=1)
    on_finish_action: Literal["delete_pod", "delete_succeeded_pod", "keep_pod"] = "delete_succeeded_pod"
    deferrable: bool = False


class Cache(_Model):
    enabled: bool = True


class Artifacts(_Model):
    root: str = ""
    secret_name: str | None = None
    cache: Cache = Field(default_factory=Cache)


class StepImage(_Model):
    """A step image; ``digest`` pins its content (the step cache on a cluster keys on it, sluice.code_identity)."""

    repository: str
    tag: str
    digest: str | None = Field(None, pattern=r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")
    pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None

    @property
    def ref(self) -> str:
        """``repository:tag``, or ``repository:tag@digest`` when pinned (the kubelet then pulls by digest)."""
        return f"{self.repository}:{self.tag}" + (f"@{self.digest}" if self.digest else "")


class Platform(_Model):
    version: int = PLATFORM_VERSION
    executor: str = "CeleryExecutor,KubernetesExecutor"
    routing: Routing = Field(default_factory=Routing)
    launcher: Launcher = Field(default_factory=Launcher)
    artifacts: Artifacts = Field(default_factory=Artifacts)
    step_images: dict[str, StepImage] = Field(default_factory=dict)
    pools: list[Pool] = Field(min_length=1)
    profiles: dict[str, Profile] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_pool_per_queue(self) -> Platform:
        owner: dict[str, str] = {}
        for pool in self.pools:
            for queue in pool.queues:
                if queue == self.routing.kubernetes_queue:
                    raise ValueError(
                        f"pool {pool.name!r} claims queue {queue!r}, which routes to the KubernetesExecutor; "
                        "remove it from the pool or change routing.kubernetesQueue"
                    )
                if queue in owner:
                    raise ValueError(
                        f"queue {queue!r} is claimed by pools {owner[queue]!r} and {pool.name!r}: "
                        "give each queue to one pool"
                    )
                owner[queue] = pool.name
        return self

    def pool_for_queue(self, queue: str) -> Pool | None:
        return next((p for p in self.pools if queue in p.queues), None)

    @property
    def queues(self) -> list[str]:
        return [q for p in self.pools for q in p.queues]

    def profile(self, name: str) -> Profile:
        try:
            return self.profiles[name]
        except KeyError:
            raise PlatformError(
                f"unknown profile {name!r}; profiles that exist: {', '.join(sorted(self.profiles))}"
            ) from None

    def image_ref(self, image: str) -> str:
        """Resolve a step image's short name (``ml-steps``) to its pinned reference; refs pass through."""
        if image in self.step_images:
            return self.step_images[image].ref
        return image

    def image_pull_policy(self, image: str) -> str | None:
        """The step image's ``pullPolicy``, if its short name sets one (Kubernetes' default otherwise)."""
        known = self.step_images.get(image)
        return known.pull_policy if known else None


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def sluice_home() -> Path:
    """Where a laptop keeps Sluice state (Airflow home, artifacts, demo data)."""
    return Path(os.environ.get("SLUICE_HOME") or repo_root() / ".sluice").resolve()


def chart_values_file() -> Path:
    return repo_root() / "charts" / "sluice" / "values.yaml"


def _format_error(source: Path, exc: ValidationError) -> str:
    lines = [f"invalid platform config {source}:"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field; remove it or fix its spelling"
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def parse_platform(data: dict[str, Any], source: Path) -> Platform:
    try:
        return Platform.model_validate(data)
    except ValidationError as exc:
        raise PlatformError(_format_error(source, exc)) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise PlatformError(
            f"platform file {path} does not exist; set SLUICE_PLATFORM_FILE to the mounted platform.yaml"
        ) from None
    except yaml.YAMLError as exc:
        raise PlatformError(f"platform file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise PlatformError(f"platform file {path} must hold a mapping, got {type(data).__name__}")
    return data


def load_platform(path: str | os.PathLike[str] | None = None) -> Platform:
    """Load from ``path``, else ``SLUICE_PLATFORM_FILE``, else the chart's default values (laptop mode).

    ``SLUICE_LAUNCHER`` and ``SLUICE_ARTIFACT_ROOT`` override the file: that is how the same DAG runs
    its steps as pods on a cluster and as processes on a laptop with no edit.
    """
    explicit = path or os.environ.get("SLUICE_PLATFORM_FILE")
    if explicit:
        source = Path(explicit)
        data = _read_yaml(source)
    else:
        source = chart_values_file()
        values = _read_yaml(source)
        data = {key: values[key] for key in PLATFORM_KEYS if key in values}
        data["launcher"] = {**data.get("launcher", {}), "type": "local"}
        data["artifacts"] = {**data.get("artifacts", {}), "root": str(sluice_home() / "artifacts")}
    if os.environ.get("SLUICE_LAUNCHER"):
        data["launcher"] = {**data.get("launcher", {}), "type": os.environ["SLUICE_LAUNCHER"]}
    if os.environ.get("SLUICE_ARTIFACT_ROOT"):
        data["artifacts"] = {**data.get("artifacts", {}), "root": os.environ["SLUICE_ARTIFACT_ROOT"]}
    platform = parse_platform(data, source)
    if not platform.artifacts.root:
        raise PlatformError(f"{source}: artifacts.root is empty; set it to a directory or an s3:// URI")
    return platform


@lru_cache(maxsize=8)
def _cached(path: str | None, launcher: str | None, root: str | None, home: str | None) -> Platform:
    return load_platform(path)


def current_platform() -> Platform:
    """The platform for this process, cached per environment (DAG parsing calls this per task)."""
    env = os.environ
    return _cached(
        env.get("SLUICE_PLATFORM_FILE"),
        env.get("SLUICE_LAUNCHER"),
        env.get("SLUICE_ARTIFACT_ROOT"),
        env.get("SLUICE_HOME"),
    )
