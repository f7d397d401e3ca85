"""Launchers run a step: ``local`` (a process), ``container`` (podman/docker) or ``kubernetes`` (a pod).

Chosen by the platform config's ``launcher.type``, never by a DAG. One registry names them all: the built-in
table below plus the ``sluice.launchers`` entry-point group, where a package registers its own
(``mylauncher = "my_pkg.launch:MyLauncher"``, a class taking the Platform), or ``register_launcher`` at run time.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import lru_cache
from importlib.metadata import entry_points

from sluice.launchers.base import FailureKind, Launcher, LaunchResult, StepFailed, StepRun
from sluice.platform import Platform

ENTRY_POINT_GROUP = "sluice.launchers"
LauncherFactory = Callable[[Platform], Launcher]

BUILTIN: dict[str, str] = {
    "local": "sluice.launchers.local:LocalLauncher",
    "container": "sluice.launchers.container:ContainerLauncher",
    "kubernetes": "sluice.launchers.kubernetes:KubernetesLauncher",
}
_registered: dict[str, LauncherFactory | str] = {}


@lru_cache(maxsize=1)
def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def register_launcher(name: str, factory: LauncherFactory | str) -> None:
    """Add (or replace) a launcher type: a factory taking the Platform, or ``"module:attribute"``."""
    _registered[name] = factory


def launcher_types() -> list[str]:
    """Every launcher type this process can start, sorted."""
    return sorted({*BUILTIN, *_entry_points(), *_registered})


def _load(target: str) -> LauncherFactory:
    module, _, attribute = target.partition(":")
    factory: LauncherFactory = getattr(importlib.import_module(module), attribute)
    return factory


def launcher_for(platform: Platform) -> Launcher:
    """A new launcher of the platform's type (one per task try: launchers hold the running step)."""
    name = platform.launcher.type
    factory = _registered.get(name) or _entry_points().get(name) or BUILTIN.get(name)
    if factory is None:
        raise StepFailed(
            f"unknown launcher type {name!r}; valid types: {', '.join(launcher_types())}", FailureKind.START
        )
    return (_load(factory) if isinstance(factory, str) else factory)(platform)


__all__ = [
    "FailureKind",
    "LaunchResult",
    "Launcher",
    "StepFailed",
    "StepRun",
    "launcher_for",
    "launcher_types",
    "register_launcher",
]
