"""What a local stack is made of (persisted in its home) and the Airflow environment every component shares."""

from __future__ import annotations

import json
import os
import secrets
import sys
from enum import StrEnum
from pathlib import Path

import yaml
from pydantic import BaseModel, Field

from sluice.atomic import SECRET, write_atomic
from sluice.platform import Platform, chart_values_file, default_dags_folder, load_platform

# The chart's ``recovery`` values → Airflow settings; the local stack uses the chart's own defaults, so a
# lost task is noticed as fast on a laptop as on a cluster (docs/operations.md, "When something dies").
RECOVERY_KEYS = {
    "taskInstanceHeartbeatTimeout": "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT",
    "taskQueuedTimeout": "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT",
    "schedulerHealthCheckThreshold": "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD",
}
# How often the scheduler looks for such tasks; not chart values (Airflow's defaults suit a cluster). A new
# DAG file (or one that stopped importing) shows within 10 s instead of Airflow's 5 minutes: the local loop.
LOCAL_CHECK_INTERVALS = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "15",
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "30",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
}
# The chart's ``celery`` values the stack shares: Redis hands an unacknowledged task to another worker after
# the visibility timeout (the chart's 6 h, not Celery's 24 h default).
CELERY_KEYS = {"visibilityTimeout": "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT"}


def chart_settings(section: str, keys: dict[str, str]) -> dict[str, str]:
    """The chart's default ``section`` values as the environment variables ``keys`` maps them to (lists
    joined with commas), so the local stack runs with what the chart renders."""
    values = yaml.safe_load(chart_values_file().read_text())[section]
    return {env: _env_value(values[key]) for key, env in keys.items()}


def _env_value(value: object) -> str:
    """As Helm renders it: lists joined with commas, booleans lower-case."""
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def recovery_settings() -> dict[str, str]:
    return chart_settings("recovery", RECOVERY_KEYS) | chart_settings("celery", CELERY_KEYS) | LOCAL_CHECK_INTERVALS


# The chart's ``tuning`` values → Airflow settings (measured in bench/throughput.py; docs/performance.md).
TUNING_KEYS = {
    "minHeartbeatInterval": "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL",
    "maxTisPerQuery": "AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY",
    "workerPreload": "SLUICE_WORKER_PRELOAD",  # a list, joined with commas (sluice.worker.preload)
    "workerDagCache": "SLUICE_WORKER_DAG_CACHE",  # sluice.worker.dag_cache
    "workerExitWakeup": "SLUICE_WORKER_EXIT_WAKEUP",  # sluice.worker.exit_wakeup
    "workerStartHeartbeat": "SLUICE_WORKER_START_HEARTBEAT",  # sluice.worker.start_heartbeat
    "taskTrackStarted": "AIRFLOW__CELERY__TASK_TRACK_STARTED",
}


class Tuning(StrEnum):
    """``sluice up --tuning``: Airflow's own defaults, or the chart's measured ``tuning`` values."""

    sluice = "sluice"
    stock = "stock"


TUNING_NAMES = tuple(Tuning)


def tuning_settings(tuning: str) -> dict[str, str]:
    """ "stock" leaves Airflow's defaults; "sluice" applies the chart's measured ``tuning`` values."""
    if tuning == "stock":
        return {}
    return chart_settings("tuning", TUNING_KEYS)


DEFAULT_DB_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/sluice"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"


class StackConfig(BaseModel):
    """Everything ``sluice up`` was asked for; stored so status, down and the autoscaler agree."""

    db_url: str = DEFAULT_DB_URL
    broker_url: str = DEFAULT_BROKER_URL
    # Start a throwaway server when nothing answers at the URL: only for URLs the user did not name.
    fallback_db: bool = True
    fallback_broker: bool = True
    dags_folder: str = Field(default_factory=lambda: str(default_dags_folder()))
    platform_file: str | None = None
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    autoscale: bool = False
    tuning: Tuning = Tuning.sluice
    artifact_root: str | None = None
    launcher: str = "local"  # how the workers run steps: local processes, or containers (sluice up --launcher)
    # The supervisor's first restart delay, doubled per restart within 10 minutes (CrashLoopBackOff); the fault
    # bench sets 0 so that its trials are independent of each other.
    restart_backoff_seconds: float = Field(10.0, ge=0)
    airflow_env: dict[str, str] = Field(default_factory=dict)  # extra/overriding AIRFLOW__* settings

    def platform(self) -> Platform:
        return load_platform(self.platform_file)

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"


class Secrets(BaseModel):
    fernet_key: str
    jwt_secret: str
    api_secret_key: str
    admin_password: str

    @classmethod
    def load_or_create(cls, path: Path) -> Secrets:
        """Generated once per stack home and reused, like the chart's kept Secrets."""
        if path.exists():
            return cls.model_validate_json(path.read_text())
        from cryptography.fernet import Fernet

        made = cls(
            fernet_key=Fernet.generate_key().decode(),
            jwt_secret=secrets.token_urlsafe(32),
            api_secret_key=secrets.token_urlsafe(32),
            admin_password=secrets.token_urlsafe(12),
        )
        try:
            write_atomic(path, made.model_dump_json(), mode=SECRET, replace=False)
        except FileExistsError:  # another process made them first: everyone uses those
            return cls.model_validate_json(path.read_text())
        return made


def airflow_command() -> list[str]:
    script = Path(sys.executable).with_name("airflow")
    return [str(script)] if script.exists() else [sys.executable, "-m", "airflow"]


def write_password_file(airflow_home: Path, password: str) -> Path:
    """Simple auth manager's password file, written by us so the login is known before start-up."""
    target = airflow_home / "simple_auth_manager_passwords.json.generated"
    return write_atomic(target, json.dumps({"admin": password}), mode=SECRET)


# CeleryExecutor alone: there is no Kubernetes API on a laptop (the chart adds KubernetesExecutor).
# `sluice check --target stack` checks DAGs against it.
EXECUTOR = "CeleryExecutor"


def airflow_env(config: StackConfig, home: Path, creds: Secrets) -> dict[str, str]:
    """The environment of every component: same executor, DB, broker, secrets and platform everywhere."""
    airflow_home = home / "airflow"
    bin_dir = str(Path(sys.executable).parent)
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW__")}
    env.update(
        {
            "PATH": bin_dir + os.pathsep + env.get("PATH", ""),
            "AIRFLOW_HOME": str(airflow_home),
            "SLUICE_HOME": str(home),
            "SLUICE_LAUNCHER": config.launcher,
            "SLUICE_ARTIFACT_ROOT": config.artifact_root or str(home / "artifacts"),
            "SLUICE_DEMO_DATA": str(home / "demo-data"),  # where `sluice demo --stack` makes an example's data
            "AIRFLOW__CORE__EXECUTOR": EXECUTOR,
            "AIRFLOW__CORE__DAGS_FOLDER": config.dags_folder,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__FERNET_KEY": creds.fernet_key,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{config.api_url}/execution/",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "sluice.hostname.worker_hostname",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__API__SECRET_KEY": creds.api_secret_key,
            "AIRFLOW__API__BASE_URL": config.api_url,
            "AIRFLOW__API_AUTH__JWT_SECRET": creds.jwt_secret,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": config.db_url,
            "AIRFLOW__CELERY__BROKER_URL": config.broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + config.db_url,
            "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "sluice.worker.celery_config.CELERY_CONFIG",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs" / "airflow"),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_stable_port(home, "triggerer")),
            **recovery_settings(),
            **tuning_settings(config.tuning),
        }
    )
    if config.platform_file:
        env["SLUICE_PLATFORM_FILE"] = config.platform_file
    else:
        env.pop("SLUICE_PLATFORM_FILE", None)
    env.update(config.airflow_env)
    return env


def _stable_port(home: Path, name: str, renew: bool = False) -> int:
    """A free port chosen once per stack home (kept across restarts of the component); ``renew`` picks a new
    one (``sluice up`` does when something else took it since)."""
    from sluice.stack.services import free_port

    ports_file = home / "ports.json"
    ports = json.loads(ports_file.read_text()) if ports_file.exists() else {}
    if name not in ports or renew:
        ports[name] = free_port()
        write_atomic(ports_file, json.dumps(ports))
    return int(ports[name])


def stable_ports(home: Path) -> dict[str, int]:
    """The components' ports chosen once per home (today: the triggerer's log server)."""
    return {"triggerer": _stable_port(home, "triggerer")}


def renew_port(home: Path, name: str) -> int:
    return _stable_port(home, name, renew=True)
