"""What every launcher is given and what it promises."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

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


class Launcher(Protocol):
    def run(self, step: StepRun, log: logging.Logger, context: Any | None = None) -> None:
        """Run the step to completion; raise StepFailed with the step's own error on failure."""

    def resume(self, step: StepRun, log: logging.Logger, context: Any, event: dict[str, Any]) -> None:
        """Finish a step whose launch deferred to the triggerer (only launchers that defer implement it)."""

    def on_kill(self) -> None:
        """Stop the running step (the task was killed or timed out)."""
