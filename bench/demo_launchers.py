"""The example demos with steps as local processes vs in containers of the step image, side by side.

Each run is `sluice demo DAG [--launcher container]` from a fresh SLUICE_HOME (nothing cached, a new SQLite DB),
the two launchers interleaved so a noisy machine hurts both alike. Prints each run's wall time and the median
ratio per DAG. Target: the container demo ≤ 1.5× the local one. Needs the images (`make images`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SLUICE = Path(sys.executable).with_name("sluice")


def run_demo(dag_id: str, launcher: str) -> float:
    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as home:
        started = time.perf_counter()
        done = subprocess.run(
            [str(SLUICE), "demo", dag_id, "--launcher", launcher],
            env={**os.environ, "SLUICE_HOME": home},
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(
            f"sluice demo {dag_id} --launcher {launcher} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dags", nargs="+", default=["ml_training_pipeline", "sharded_training"])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    figures: dict[str, dict[str, object]] = {}
    for dag_id in args.dags:
        times: dict[str, list[float]] = {"local": [], "container": []}
        for _ in range(args.repeat):
            for launcher in times:
                times[launcher].append(run_demo(dag_id, launcher))
        local, contained = statistics.median(times["local"]), statistics.median(times["container"])
        figures[dag_id] = {
            "local_s": [round(t, 1) for t in times["local"]],
            "container_s": [round(t, 1) for t in times["container"]],
            "ratio": round(contained / local, 2),
            "target_ratio": 1.5,
        }
    print(f"{'demo':24}{'local s':>18}{'container s':>18}{'ratio':>8}")
    for dag_id, row in figures.items():
        local_s = ", ".join(map(str, row["local_s"]))  # type: ignore[call-overload]
        container_s = ", ".join(map(str, row["container_s"]))  # type: ignore[call-overload]
        print(f"{dag_id:24}{local_s:>18}{container_s:>18}{row['ratio']:>7}×")
    print("target: container ≤ 1.5× local (fresh home each run, wall time of the whole `sluice demo`)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
