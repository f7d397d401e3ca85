"""Step launch overhead: the local launcher vs a bare subprocess running the same no-op step.

Interleaved runs in one process (this machine is noisy), medians and the ratio printed. Target ≤ 1.5×.
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

from sluice.contract import step_env
from sluice.launchers.base import StepRun
from sluice.launchers.local import LocalLauncher
from sluice.platform import load_platform

NOOP = [sys.executable, str(Path(__file__).with_name("noop_step.py"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    platform = load_platform()
    profile = platform.profile("default")
    log = logging.getLogger("bench")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    bare, launcher = [], []
    with tempfile.TemporaryDirectory() as tmp:
        env = step_env({}, {}, {}, tmp)
        full_env = {**os.environ, **env}
        step = StepRun("bench", "noop", "r", 1, -1, "noop", NOOP, env, "default", profile, tmp)
        for _ in range(args.runs):
            started = time.perf_counter()
            subprocess.run(NOOP, env=full_env, check=True)
            bare.append(time.perf_counter() - started)
            started = time.perf_counter()
            LocalLauncher(platform).run(step, log)
            launcher.append(time.perf_counter() - started)
    figures = {
        "runs": args.runs,
        "bare_subprocess_median_ms": round(statistics.median(bare) * 1000, 1),
        "local_launcher_median_ms": round(statistics.median(launcher) * 1000, 1),
        "ratio": round(statistics.median(launcher) / statistics.median(bare), 2),
        "target_ratio": 1.5,
    }
    print(f"{'':24}{'median ms':>10}")
    print(f"{'bare subprocess':24}{figures['bare_subprocess_median_ms']:>10}")
    print(f"{'local launcher':24}{figures['local_launcher_median_ms']:>10}")
    print(f"ratio {figures['ratio']}× (target ≤ {figures['target_ratio']}×)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
