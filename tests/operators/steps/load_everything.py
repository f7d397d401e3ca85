"""A step written the way that does not scale: every shard read into one pandas DataFrame, then summed.

Contract v1 through the step image's own helper (sluice_steps.contract); the memory bound test runs it under a
profile the streaming steps fit in, and expects the launcher to stop it naming the profile.
"""

import pandas as pd
from sluice_steps.contract import StepContext, run_step


def body(ctx: StepContext) -> None:
    frame = pd.concat([pd.read_parquet(uri) for uri in ctx.input_list("shards")], ignore_index=True)
    ctx.write_json("summary", {"rows": len(frame), "label_mean": float(frame["label"].mean())})


if __name__ == "__main__":
    raise SystemExit(run_step("load_everything", body))
