"""Step launch overhead: the local launcher vs a bare subprocess running the same no-op step, and (where an
engine and the step image are here) the container launcher vs a bare `podman run` of it in the step image.

Interleaved runs in one process (this machine is noisy), medians printed. Targets: local launcher ≤ 1.5× a bare
subprocess; the container launcher adds ≤ 0.5 s per step over the local launcher (warm image).

The warm-runner columns (issue #29) run ``sluice-step`` commands through the local launcher as a process
(``SLUICE_WARM_STEPS=0``) and in the warm step runner, interleaved: a no-op step (a stand-in step package on the
step's PYTHONPATH, so only start-up is measured), ``sluice-step --describe`` (imports every step, scikit-learn
included) and the real ``ingest`` step on a 3-row CSV. The runner's own start (the first warm step) is shown
apart: it is paid once per runner, not per step.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sluice.contract import step_env
from sluice.launchers.base import StepRun
from sluice.launchers.container import ContainerLauncher, preflight
from sluice.launchers.engine import find_engine
from sluice.launchers.local import LocalLauncher
from sluice.platform import load_platform

NOOP_FILE = Path(__file__).with_name("noop_step.py")
NOOP = [sys.executable, str(NOOP_FILE)]
NOOP_STEP_PACKAGE = """
import os, sys


def run():
    os.makedirs(os.environ["SLUICE_ARTIFACT_PREFIX"], exist_ok=True)
    with open(os.environ["SLUICE_RESULT_URI"], "w") as handle:
        handle.write('{"contract_version": 1, "step": "noop", "status": "succeeded", "outputs": {}, "metrics": {}}')
    os._exit(0)
"""


def median_ms(values: list[float]) -> float | None:
    return round(statistics.median(values) * 1000, 1) if values else None


def warm_figures(runs: int, log: logging.Logger) -> dict[str, Any]:
    """Cold (a process) vs warm (the warm runner) medians of ``sluice-step`` commands through the local launcher."""
    with tempfile.TemporaryDirectory(prefix="sw-", dir="/tmp") as home:
        os.environ["SLUICE_HOME"] = home  # a runner of the bench's own, gone with the directory
        platform = load_platform()
        profile = platform.profile("default")
        package = Path(home) / "noop-package" / "sluice_steps"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "__main__.py").write_text(NOOP_STEP_PACKAGE)
        source = Path(home) / "rows.csv"
        source.write_text("a,b\n1,x\n2,y\n3,z\n")

        def step(name: str, command: list[str], extra: dict[str, str], mode: str) -> StepRun:
            prefix = str(Path(home) / f"{name}-{mode}")
            params = {"source": str(source)} if name == "ingest" else {}
            outputs = {"data": f"{prefix}/data.parquet"} if name == "ingest" else {}
            env = {**step_env({}, outputs, params, prefix), **extra, "SLUICE_WARM_STEPS": mode}
            return StepRun("bench", name, "r", 1, -1, "ml-steps", command, env, "default", profile, prefix)

        cases = {
            "noop": (["sluice-step", "noop"], {"PYTHONPATH": str(package.parent)}),
            "describe": (["sluice-step", "--describe"], {}),
            "ingest": (["sluice-step", "ingest"], {}),
        }
        started = time.perf_counter()
        first = LocalLauncher(platform).run(step("noop", *cases["noop"], "1"), log)
        runner_start = time.perf_counter() - started
        assert first.succeeded, first
        timings: dict[str, dict[str, list[float]]] = {name: {"0": [], "1": []} for name in cases}
        for _ in range(runs):
            for name, (command, extra) in cases.items():
                for mode in ("0", "1"):
                    run = step(name, command, extra, mode)
                    started = time.perf_counter()
                    outcome = LocalLauncher(platform).run(run, log)
                    timings[name][mode].append(time.perf_counter() - started)
                    assert outcome.succeeded, outcome
    figures: dict[str, Any] = {"warm_runs": runs, "warm_runner_start_ms": round(runner_start * 1000, 1)}
    for name, by_mode in timings.items():
        figures[f"{name}_process_median_ms"] = median_ms(by_mode["0"])
        figures[f"{name}_warm_median_ms"] = median_ms(by_mode["1"])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warm-runs", type=int, default=20, help="runs of each warm-runner case (0: skip them)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    platform = load_platform()
    profile = platform.profile("default")
    log = logging.getLogger("bench")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    bare, launcher = [], []
    containers = not preflight(platform)
    image = platform.image_ref("ml-steps")
    raw, contained = [], []
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as boxed:
        os.chmod(boxed, 0o777)  # the container's user writes its result here
        os.environ["SLUICE_ARTIFACT_ROOT"] = boxed  # the container launcher mounts the store: this is it
        platform = load_platform()
        env, boxed_env = step_env({}, {}, {}, tmp), step_env({}, {}, {}, boxed)
        full_env = {**os.environ, **env}
        step = StepRun("bench", "noop", "r", 1, -1, "noop", NOOP, env, "default", profile, tmp)
        inline = ["python3", "-c", NOOP_FILE.read_text()]
        in_image = StepRun("bench", "noop", "r", 1, -1, image, inline, boxed_env, "default", profile, boxed)
        if containers:
            ContainerLauncher(platform).run(in_image, log)  # warm: the pod machinery imported, the image cached
        for _ in range(args.runs):
            started = time.perf_counter()
            subprocess.run(NOOP, env=full_env, check=True)
            bare.append(time.perf_counter() - started)
            started = time.perf_counter()
            LocalLauncher(platform).run(step, log)
            launcher.append(time.perf_counter() - started)
            if not containers:
                continue
            engine = find_engine()
            started = time.perf_counter()
            volume = ["--volume", f"{boxed}:{boxed}", *(a for k in boxed_env for a in ("--env", k))]
            flags = ["--rm", *engine.limit_args, "--network", "none", "--entrypoint", '["python3"]', *volume]
            engine_env = {**os.environ, **boxed_env}
            subprocess.run(engine.command("run", *flags, image, *inline[1:]), env=engine_env, check=True)
            raw.append(time.perf_counter() - started)
            started = time.perf_counter()
            outcome = ContainerLauncher(platform).run(in_image, log)
            assert outcome.succeeded, outcome
            contained.append(time.perf_counter() - started)
    figures: dict[str, Any] = {
        "runs": args.runs,
        "bare_subprocess_median_ms": median_ms(bare),
        "local_launcher_median_ms": median_ms(launcher),
        "ratio": round(statistics.median(launcher) / statistics.median(bare), 2),
        "target_ratio": 1.5,
        "bare_engine_run_median_ms": median_ms(raw),
        "container_launcher_median_ms": median_ms(contained),
        "container_added_over_local_ms": (
            round((statistics.median(contained) - statistics.median(launcher)) * 1000, 1) if contained else None
        ),
        "target_container_added_ms": 500,
    }
    print(f"{'':28}{'median ms':>10}")
    for label, key in (
        ("bare subprocess", "bare_subprocess_median_ms"),
        ("local launcher", "local_launcher_median_ms"),
        (f"bare `{find_engine().name if containers else 'engine'} run --rm`", "bare_engine_run_median_ms"),
        ("container launcher", "container_launcher_median_ms"),
    ):
        print(f"{label:28}{figures[key] if figures[key] is not None else 'n/a':>10}")
    print(f"local launcher / bare subprocess: {figures['ratio']}× (target ≤ {figures['target_ratio']}×)")
    if containers:
        print(
            f"container launcher adds {figures['container_added_over_local_ms']} ms per step over the local launcher "
            f"(target ≤ {figures['target_container_added_ms']} ms)"
        )
    else:
        print(f"container column skipped: {'; '.join(preflight(platform))}")
    if args.warm_runs:
        figures.update(warm_figures(args.warm_runs, log))
        heading = f"{'sluice-step via the local launcher':36}{'process ms':>11}{'warm ms':>9}"
        print(f"\n{heading}  (medians of {args.warm_runs})")
        for name, label in (
            ("noop", "no-op step"),
            ("describe", "--describe (imports scikit-learn)"),
            ("ingest", "ingest, 3-row CSV"),
        ):
            cold, hot = figures[f"{name}_process_median_ms"], figures[f"{name}_warm_median_ms"]
            print(f"{label:36}{cold:>11}{hot:>9}")
        print(f"warm runner start (first warm step, once per runner): {figures['warm_runner_start_ms']} ms")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
