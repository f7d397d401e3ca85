"""What every launcher is given and what it promises."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from sluice.code_identity import CodeIdentity
from sluice.platform import Profile


class StepFailed(RuntimeError):
    """The step ran and failed; the message is what the user needs to see in the task."""


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


class Launcher(Protocol):
    # The last run's peak resident memory where the launcher measures it (local: the step's process tree);
    # None where it cannot (a pod: its peak is the node's metrics, not the launcher's to read).
    peak_memory_bytes: int | None

    def code_identity(self, step: StepRun, cache_version: str | None) -> CodeIdentity:
        """What names the code this launcher would run for the step (the step cache keys on it;
        ``sluice.code_identity`` has each launcher's rule). A value of None turns caching off for the step."""

    def run(self, step: StepRun, log: logging.Logger, context: Any | None = None) -> None:
        """Run the step to completion; raise StepFailed with the step's own error on failure."""

    def resume(self, step: StepRun, log: logging.Logger, context: Any, event: dict[str, Any]) -> None:
        """Finish a step whose launch deferred to the triggerer (only launchers that defer implement it)."""

    def on_kill(self) -> None:
        """Stop the running step (the task was killed or timed out)."""
