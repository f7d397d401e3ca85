"""pick_champion: the best of the candidates' held-out evaluations (by ROC AUC), written as this step's
``model``, with the leaderboard as ``evaluation``.

Each training step scored itself on the held-out shards (``shards.write_evaluation``), side by side; this step
only reads their small JSON files and copies one model.
"""

from __future__ import annotations

import json
import math
from typing import Any

from sluice_steps.contract import StepContext, StepError
from sluice_steps.spec import Artifact, StepSpec

SPEC = StepSpec(
    name="pick_champion",
    summary="the best of the candidates' held-out evaluations by ROC AUC: its model and the leaderboard",
    inputs={"evaluations": Artifact("the evaluation JSONs of the training steps (a fan-in)", many=True)},
    outputs={
        "model": Artifact("the champion's model (joblib)"),
        "evaluation": Artifact("JSON: the champion and the leaderboard"),
    },
)


def run(ctx: StepContext) -> None:
    board: list[dict[str, Any]] = []
    for uri in ctx.input_list("evaluations"):
        with ctx.open_uri(uri, "r", what="input 'evaluations'") as handle:
            entry = json.load(handle)
        if not isinstance(entry, dict) or "scores" not in entry or "model" not in entry:
            raise StepError(f"input 'evaluations': {uri} is not an evaluation written by train_sgd or train_sample")
        board.append({"candidate": entry["candidate"], "model": entry["model"], **entry["scores"]})
    board.sort(key=lambda entry: -entry["roc_auc"] if not math.isnan(entry["roc_auc"]) else math.inf)
    champion = board[0]
    with ctx.open_uri(champion["model"], what="the champion's model") as handle:
        ctx.write_bytes("model", handle.read())
    ctx.write_json("evaluation", {"champion": champion["candidate"], "leaderboard": board})
    ctx.metrics.update(
        champion=champion["candidate"],
        holdout_rows=champion["rows"],
        **{name: champion[name] for name in ("roc_auc", "log_loss", "accuracy")},
        **{f"roc_auc_{entry['candidate']}": entry["roc_auc"] for entry in board},
    )
