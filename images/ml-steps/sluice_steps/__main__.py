"""``sluice-step <name>``: run one step under contract v1."""

from __future__ import annotations

import importlib
import os
import sys
from datetime import UTC, datetime

from sluice_steps.contract import EXIT_USAGE, run_step

STEPS = (
    "ingest",
    "join",
    "validate",
    "featurize",
    "train",
    "evaluate",
    "champion",
    "publish",
    "batch",
    "score",
    "features",
    # the sharded pipeline (dags/sharded_training.py)
    "ingest_shard",
    "merge_stats",
    "featurize_shard",
    "train_sgd",
    "train_sample",
    "pick_champion",
    "score_shard",
)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in STEPS:
        print(f"usage: sluice-step {{{','.join(STEPS)}}}", file=sys.stderr)
        print(f"sluice-step: error: unknown step {' '.join(args)!r}; steps: {', '.join(STEPS)}", file=sys.stderr)
        return EXIT_USAGE
    name = args[0]
    started = datetime.now(UTC)  # before the step's imports: they are the step's time, not the launcher's
    module = importlib.import_module(f"sluice_steps.{name}")
    return run_step(name, module.run, started=started)


def run() -> None:
    """Console-script entry: exit without interpreter finalization once the result is written.

    Every output and the result JSON are closed by then; skipping finalization avoids a native thread-pool
    teardown race at exit (pyarrow) that aborted ~1 in 20 failing steps with SIGABRT instead of their code.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
