"""One source of truth for pools, profiles, launcher and artifact store.

The chart renders its values into ``platform.yaml`` (mounted in every Airflow component, named by
``SLUICE_PLATFORM_FILE``). On a laptop no file is needed: the chart's own ``values.yaml`` is read,
with the launcher switched to ``local`` and artifacts kept under ``$SLUICE_HOME``. Either way every pool is
merged over ``poolDefaults`` the same way (the chart renders the merged pools into platform.yaml).
"""

from __future__ import annotations

import copy
import os
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from sluice.errors import SluiceError
from sluice.quantity import parse_quantity

PLATFORM_VERSION = 1
# What the chart's values.schema.json allows, so that a platform file used outside the chart is refused as
# early, with the field's name (tests/chart/test_platform_parity.py runs one table of bad values through both).
# A pool name is a DNS label of at most 56 characters: the worker's label is worker-<name>, at most 63. With KEDA
# the chart bounds it further by the release's names (keda-hpa-<fullname>-worker-<name>, at most 63): a template
# `fail`, since the release is not in the platform file.
POOL_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
POOL_NAME_MAX = 56
# A queue name is written into the KEDA query's SQL ('...') and `celery --queues a,b`.
QUEUE_NAME = re.compile(r"^[^'\",\s]+$")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$")
# A GPU's vendor resource is a Kubernetes extended resource name: <domain>/<name>, outside kubernetes.io.
EXTENDED_RESOURCE = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$"
)
PLATFORM_KEYS = ("executor", "routing", "launcher", "artifacts", "stepImages", "poolDefaults", "pools", "profiles")


class PlatformError(SluiceError, ValueError):
    """The platform file is missing or invalid; the message names the field and the fix."""


def _json_integer(value: Any) -> Any:
    """A JSON-schema integer, as the chart's schema takes it: 8 or 8.0, never "8" or true."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not an integer; write a number, e.g. 8")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{value!r} is not a whole number")
        return int(value)
    return value


def _quantity(value: Any) -> str:
    """A Kubernetes quantity as the chart's schema takes it (500m, 2, 1.5Gi, or a number >= 0), as text."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return str(int(value)) if float(value).is_integer() else str(value)
    if isinstance(value, str) and QUANTITY.match(value):
        return value
    raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 2, 1.5Gi)")


def _positive(value: str) -> str:
    """A quantity a step needs some of (a profile's cpu, memory, ephemeral storage): 0 is refused, as by the chart."""
    if parse_quantity(value) <= 0:
        raise ValueError(f"{value!r} is zero; a step needs some of it: give a quantity above 0 (e.g. 500m, 1Gi)")
    return value


def _extended_resource(value: str | None) -> str | None:
    if value and (not EXTENDED_RESOURCE.match(value) or "kubernetes.io/" in value or value.startswith("requests.")):
        raise ValueError(
            f"{value!r} is not an extended resource name: use the vendor's <domain>/<name> (outside kubernetes.io), "
            "e.g. nvidia.com/gpu or amd.com/gpu"
        )
    return value


def _queue_name(value: str) -> str:
    if not QUEUE_NAME.match(value):
        raise ValueError(
            f"queue name {value!r} is empty or has a quote, a comma or whitespace; it is written into the pool's "
            "KEDA query and `celery --queues`: use letters, digits and e.g. - _ . :"
        )
    return value


Integer = Annotated[int, BeforeValidator(_json_integer)]
Quantity = Annotated[str, BeforeValidator(_quantity)]
QueueName = Annotated[str, AfterValidator(_queue_name)]
PositiveQuantity = Annotated[str, BeforeValidator(_quantity), AfterValidator(_positive)]
ResourceList = dict[Literal["cpu", "memory", "ephemeral-storage"], Quantity]


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ScaleDown(_Model):
    stabilization_window_seconds: Integer = Field(300, ge=0)
    pods_per_period: Integer = Field(1, ge=1)
    period_seconds: Integer = Field(60, ge=1)


class Autoscaling(_Model):
    enabled: StrictBool = True
    min_replicas: Integer = Field(1, ge=0)
    max_replicas: Integer = Field(4, ge=1)
    cooldown_period: Integer = Field(300, ge=0)
    polling_interval: Integer = Field(15, ge=1)
    scale_down: ScaleDown = Field(default_factory=ScaleDown)

    @model_validator(mode="after")
    def _min_le_max(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"minReplicas ({self.min_replicas}) is greater than maxReplicas ({self.max_replicas}); "
                "lower minReplicas or raise maxReplicas"
            )
        return self


class PoolSettings(_Model):
    """Everything about a pool but its name and queues. These defaults are the chart's ``poolDefaults``
    (values.yaml; a test keeps the two equal); a platform file's own ``poolDefaults`` replaces them."""

    concurrency: Integer = Field(8, ge=1)
    resources: dict[Literal["requests", "limits"], ResourceList] = Field(default_factory=dict)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    affinity: dict[str, Any] = Field(default_factory=dict)
    termination_grace_period_seconds: Integer = Field(600, ge=0)
    max_task_duration_seconds: Integer | None = Field(None, ge=1)
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)

    @model_validator(mode="after")
    def _requests_within_limits(self) -> PoolSettings:
        requests, limits = self.resources.get("requests", {}), self.resources.get("limits", {})
        for key, requested in requests.items():
            if key in limits and parse_quantity(requested) > parse_quantity(limits[key]):
                raise ValueError(
                    f"resources.requests.{key} ({requested}) exceeds resources.limits.{key} ({limits[key]}); "
                    "lower the request or raise the limit (Kubernetes refuses a container whose request is above "
                    "its limit)"
                )
        return self

    @model_validator(mode="after")
    def _grace_covers_the_longest_task(self) -> PoolSettings:
        grace, longest = self.termination_grace_period_seconds, self.max_task_duration_seconds
        if longest is not None and grace < longest:
            raise ValueError(
                f"terminationGracePeriodSeconds ({grace}) is shorter than maxTaskDurationSeconds ({longest}): "
                "scale-in would kill running tasks; raise the grace period to at least the longest task"
            )
        return self


class Pool(PoolSettings):
    """A Celery worker pool: the queues it serves and how it scales."""

    name: str
    queues: list[QueueName] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not POOL_NAME.match(value):
            raise ValueError(
                f"pool name {value!r} is not a DNS label: use lowercase letters, digits and '-', starting and "
                "ending with a letter or digit"
            )
        if len(value) > POOL_NAME_MAX:
            raise ValueError(
                f"pool name {value!r} has {len(value)} characters; use at most {POOL_NAME_MAX}: the worker's label "
                "app.kubernetes.io/component is worker-<name>, and a label value may have at most 63"
            )
        return value

    @field_validator("queues")
    @classmethod
    def _each_queue_once(cls, value: list[str]) -> list[str]:
        twice = sorted({queue for queue in value if value.count(queue) > 1})
        if twice:
            raise ValueError(f"queue(s) {', '.join(map(repr, twice))} listed twice; list each queue once")
        return value


class Gpu(_Model):
    count: Integer = Field(0, ge=0)
    resource: Annotated[str | None, AfterValidator(_extended_resource)] = Field(None, max_length=253)

    @model_validator(mode="after")
    def _resource_named(self) -> Gpu:
        if self.count and not self.resource:
            raise ValueError("gpu.count is set but gpu.resource is empty: name it, e.g. nvidia.com/gpu")
        return self


class Profile(_Model):
    """Resources a step gets, as a pod on the cluster and as a local process on a laptop."""

    cpu: PositiveQuantity = "1"
    memory: PositiveQuantity = "1Gi"
    ephemeral_storage: PositiveQuantity | None = None
    gpu: Gpu = Field(default_factory=Gpu)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    priority_class_name: str | None = None
    timeout_seconds: Integer | None = Field(None, ge=1)
    # Off the cluster, whether the step may reach the network: the container launcher gives a step none unless
    # this is true or the artifact store is remote (s3://). Pods always have one, limited by NetworkPolicies.
    network: StrictBool = False


class Routing(_Model):
    kubernetes_queue: str = "kubernetes"


def _launcher_type(value: str) -> str:
    from sluice.launchers import launcher_types  # the registry imports this module

    known = launcher_types()
    if value not in known:
        raise ValueError(f"unknown launcher type {value!r}; valid types: {', '.join(known)}")
    return value


class Launcher(_Model):
    type: Annotated[str, AfterValidator(_launcher_type)] = "local"
    namespace: str | None = None
    service_account_name: str | None = None
    startup_timeout_seconds: Integer = Field(300, ge=1)
    on_finish_action: Literal["delete_pod", "delete_succeeded_pod", "keep_pod"] = "delete_succeeded_pod"
    deferrable: StrictBool = False


class Cache(_Model):
    enabled: StrictBool = True


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
    # Already merged into ``pools`` by parse_platform (merge_pool_defaults); kept to validate it on its own.
    pool_defaults: PoolSettings = Field(default_factory=PoolSettings)
    pools: list[Pool] = Field(min_length=1)
    profiles: dict[str, Profile] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_pool_per_queue(self) -> Platform:
        owner: dict[str, str] = {}
        names: set[str] = set()
        for pool in self.pools:
            if pool.name in names:
                raise ValueError(f"pool name {pool.name!r} is used twice; give each pool its own name")
            names.add(pool.name)
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

    def larger_profile(self, name: str) -> str | None:
        """The profile with the least memory above ``name``'s (what to suggest after an out-of-memory kill)."""
        own = parse_quantity(self.profile(name).memory)
        larger = [(parse_quantity(p.memory), other) for other, p in self.profiles.items() if other != name]
        bigger = sorted((memory, other) for memory, other in larger if memory > own)
        return bigger[0][1] if bigger else None

    def image_ref(self, image: str) -> str:
        """Resolve a step image's short name (``ml-steps``) to its pinned reference; refs pass through."""
        if image in self.step_images:
            return self.step_images[image].ref
        return image

    def image_pull_policy(self, image: str) -> str | None:
        """The step image's ``pullPolicy``, if its short name sets one (Kubernetes' default otherwise)."""
        known = self.step_images.get(image)
        return known.pull_policy if known else None


def source_checkout() -> Path | None:
    """The Sluice source checkout this package is imported from (editable install: ``operators/sluice`` in it),
    or None when it is installed from a wheel. Defaults differ between the two: where state is kept
    (``sluice_home``), and where the chart's values and the example DAGs are read (the checkout's own files, or the
    wheel's: ``chart_values_file``, ``example_dags_folder``)."""
    package = Path(__file__).resolve().parent
    root = package.parents[1]
    if package.parent.name == "operators" and (root / "charts" / "sluice" / "Chart.yaml").is_file():
        return root
    return None


def package_file(*parts: str) -> Path:
    """A file the wheel ships inside the package, read with importlib.resources: ``sluice/data/values.yaml`` and
    ``sluice/examples/``, which the build adds from ``charts/sluice/values.yaml`` and ``dags/`` (setup.py)."""
    found = resources.files("sluice").joinpath(*parts)
    if not isinstance(found, Path):  # a zipped install: Airflow and the CLI need real paths
        raise PlatformError(f"sluice's {'/'.join(parts)} is not a file on disk ({found}); install sluice unzipped")
    return found


def sluice_home() -> Path:
    """Where a laptop keeps Sluice state (Airflow home, artifacts, demo data, the local stack): ``SLUICE_HOME``,
    else ``.sluice`` in the source checkout, else ``~/.sluice`` (installed from a wheel)."""
    checkout = source_checkout()
    default = checkout / ".sluice" if checkout else Path.home() / ".sluice"
    return Path(os.environ.get("SLUICE_HOME") or default).resolve()


def chart_values_file() -> Path:
    """The chart's default values, laptop mode's platform: ``charts/sluice/values.yaml`` in a checkout, else the
    same file as the wheel ships it (``sluice/data/values.yaml``)."""
    checkout = source_checkout()
    found = checkout / "charts" / "sluice" / "values.yaml" if checkout else package_file("data", "values.yaml")
    if not found.is_file():
        raise PlatformError(
            f"{found} does not exist: this sluice was installed without the chart's values its build adds "
            "(setup.py); install it from a wheel built from the repository or its sdist, or set SLUICE_PLATFORM_FILE"
        )
    return found


def example_dags_folder() -> Path:
    """The example DAGs: the checkout's ``dags/`` (the ones you edit), else the same files as the wheel ships them
    (``sluice/examples/``)."""
    checkout = source_checkout()
    return checkout / "dags" if checkout else package_file("examples")


def default_dags_folder() -> Path:
    """The CLI's DAG folder when none is given: the example DAGs (``example_dags_folder``)."""
    return example_dags_folder()


def _format_error(source: Path, exc: ValidationError) -> str:
    lines = [f"invalid platform config {source}:"]
    for err in exc.errors():
        loc = list(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if len(loc) >= 2 and loc[-1] == "[key]":  # a mapping key outside its allowed set (resources.limits.memroy)
            msg = f"unknown key {loc[-2]!r}; {msg.replace('Input should be', 'use')}"
            loc = loc[:-2]
        where = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            msg = "unknown field; remove it or fix its spelling"
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def merge_pool_defaults(defaults: Any, pool: Any) -> Any:
    """A pool over ``poolDefaults``, as the chart's ``sluice.pool`` helper merges them: the pool's own value wins
    (0, false and null too), mappings merge key by key, anything else (lists included) is replaced."""
    if not isinstance(defaults, dict) or not isinstance(pool, dict):
        return copy.deepcopy(pool)
    merged = copy.deepcopy(defaults)
    for key, value in pool.items():
        merged[key] = merge_pool_defaults(merged[key], value) if key in merged else copy.deepcopy(value)
    return merged


def parse_platform(data: dict[str, Any], source: Path) -> Platform:
    """Validate a platform mapping; a ``poolDefaults`` key (the chart's values) is merged into every pool first."""
    defaults = data.get("poolDefaults")
    if isinstance(defaults, dict) and isinstance(data.get("pools"), list):
        data = {**data, "pools": [merge_pool_defaults(defaults, pool) for pool in data["pools"]]}
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
    its steps as pods on a cluster and as processes on a laptop with no edit. The values' ``poolDefaults``
    are merged into their pools, as the chart does.
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


FileVersion = tuple[int, int, int, int, int]


def _file_version(path: str | os.PathLike[str]) -> FileVersion | None:
    """(device, inode, size, mtime, ctime) of the file ``path`` resolves to, or None when it cannot be read.

    A ConfigMap mounted as a directory (the chart's platform volume) is updated by the kubelet swapping a
    ``..data`` symlink to a new directory: the path then resolves to another inode. An edit in place changes
    the size, mtime or ctime."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@lru_cache(maxsize=8)
def _cached(
    path: str | None, launcher: str | None, root: str | None, home: str | None, version: FileVersion | None
) -> Platform:
    return load_platform(path)


def current_platform() -> Platform:
    """The platform for this process, parsed once per version of its file and environment.

    DAG parsing calls this per task and the operator per try, so it costs one ``stat`` while the file is unchanged;
    a changed file (the chart's ConfigMap updated by ``helm upgrade``: a new step image tag, profile or pool) is read
    again by the next call, in every long-lived process (worker, dag-processor) and the task processes they fork,
    without a restart."""
    env = os.environ
    path = env.get("SLUICE_PLATFORM_FILE")
    try:
        source: str | Path = path or chart_values_file()
    except PlatformError:
        source = ""
    return _cached(
        path,
        env.get("SLUICE_LAUNCHER"),
        env.get("SLUICE_ARTIFACT_ROOT"),
        env.get("SLUICE_HOME"),
        _file_version(source) if source else None,
    )
