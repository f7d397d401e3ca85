"""What every launcher is given (a StepRun) and what it returns (a LaunchResult)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from sluice.code_identity import CodeIdentity
from sluice.errors import SluiceError
from sluice.platform import Profile


class FailureKind(StrEnum):
    """Why a step did not succeed, as the launcher saw it. The permanent kinds fail the task without retries:
    running the same step again cannot change them."""

    OUT_OF_MEMORY = "out_of_memory"
    TIMEOUT = "timeout"
    EXIT = "exit"  # the step exited non-zero on its own
    CONTRACT = "contract_violation"  # exited 0 without keeping the step contract, or refused its invocation
    IMAGE_MISSING = "image_missing"
    UNKNOWN_STEP = "unknown_step"
    KILLED = "killed"  # stopped from outside: the task was cancelled or the worker stopped it
    START = "start"  # could not be started (pod never scheduled, engine error)

    @property
    def permanent(self) -> bool:
        return self in PERMANENT


PERMANENT = frozenset({FailureKind.CONTRACT, FailureKind.IMAGE_MISSING, FailureKind.UNKNOWN_STEP})


class StepFailed(SluiceError, RuntimeError):
    """A launcher could not even try the step (it raises this rather than returning a result)."""

    def __init__(self, message: str, kind: FailureKind = FailureKind.START) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class StepRun:
    dag_id: str
    task_id: str
    run_id: str
    try_number: int
    map_index: int
    image: str
    command: list[str]
    env: dict[str, str]
    profile_name: str
    profile: Profile
    artifact_prefix: str
    labels: dict[str, str] = field(default_factory=dict)
    image_pull_policy: str | None = None


@dataclass(frozen=True)
class LaunchResult:
    """One try of a step, as its launcher saw it. ``peak_memory_bytes`` where the launcher measures it (local: the
    process tree's resident memory; container: the container's cgroup); None where it cannot (a pod's peak is the
    node's metrics). ``message``: the step's own last words or the launcher's reason, for the task's error."""

    exit_code: int | None
    failure: FailureKind | None = None
    message: str = ""
    peak_memory_bytes: int | None = None

    @property
    def succeeded(self) -> bool:
        return self.failure is None


class StepLog(Protocol):
    """What launchers log through: a ``logging.Logger`` or the task's own logger."""

    def info(self, msg: Any, /, *args: Any) -> Any: ...

    def warning(self, msg: Any, /, *args: Any) -> Any: ...

    def log(self, level: int, msg: Any, /, *args: Any) -> Any: ...


class Launcher(Protocol):
    def code_identity(self, step: StepRun, cache_version: str | None) -> CodeIdentity:
        """What names the code this launcher would run for the step (the step cache keys on it;
        ``sluice.code_identity`` has each launcher's rule). A value of None turns caching off for the step."""

    def run(self, step: StepRun, log: StepLog, context: Any | None = None) -> LaunchResult:
        """Run the step to its end and say how it ended; raise StepFailed only when it could not be tried."""

    def resume(self, step: StepRun, log: StepLog, context: Any, event: dict[str, Any]) -> LaunchResult:
        """Finish a step whose launch deferred to the triggerer (only launchers that defer implement it)."""

    def on_kill(self) -> None:
        """Stop the running step (the task was killed or timed out)."""
