"""``sluice-step <name>``: run one step under contract v1."""

from __future__ import annotations

import importlib
import sys

from sluice_steps.contract import run_step

STEPS = ("ingest", "join", "validate", "featurize", "train", "evaluate", "publish")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in STEPS:
        print(f"usage: sluice-step {{{','.join(STEPS)}}}", file=sys.stderr)
        print(f"sluice-step: error: unknown step {' '.join(args)!r}; steps: {', '.join(STEPS)}", file=sys.stderr)
        return 2
    name = args[0]
    module = importlib.import_module(f"sluice_steps.{name}")
    return run_step(name, module.run)


if __name__ == "__main__":
    sys.exit(main())
