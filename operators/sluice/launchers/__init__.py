"""Launchers run a step: ``local`` (a subprocess) or ``kubernetes`` (a pod). Chosen by platform config."""

from __future__ import annotations

from sluice.launchers.base import Launcher, StepFailed, StepRun
from sluice.platform import Platform


def launcher_for(platform: Platform) -> Launcher:
    if platform.launcher.type == "kubernetes":
        from sluice.launchers.kubernetes import KubernetesLauncher

        return KubernetesLauncher(platform)
    from sluice.launchers.local import LocalLauncher

    return LocalLauncher(platform)


__all__ = ["Launcher", "StepFailed", "StepRun", "launcher_for"]
