"""champion: pick the best grid candidate by a declared metric; write its model, a leaderboard and a plot.

Input ``candidates`` is a fan-in: the ``evaluation`` outputs of the mapped ``train`` instances that
succeeded (a failed candidate simply is not there). Ties go to the candidate listed first. With no
candidate to compare (an empty fan-in, or not one evaluation found) it fails saying that none succeeded.
"""

from __future__ import annotations

import io
import json
from typing import Any

from sluice_steps.contract import StepContext, StepError
from sluice_steps.spec import Artifact, Param, StepSpec

SPEC = StepSpec(
    name="champion",
    summary="the best grid candidate by a metric: its model, a leaderboard and a ROC plot",
    params={
        "target": Param("string", "the target column of the test set", required=True),
        "metric": Param("string", "the metric candidates are ranked by", default="roc_auc"),
        "higher_is_better": Param("boolean", "whether a higher metric is better", default=True),
    },
    inputs={
        "candidates": Artifact("the evaluation JSONs of the train instances (a fan-in)", many=True),
        "test": Artifact("Parquet: the held-out rows the plot is drawn on"),
    },
    outputs={
        "model": Artifact("the champion's model (joblib)"),
        "leaderboard": Artifact("JSON: every candidate ranked"),
        "plot": Artifact("PNG: the champion's ROC curve"),
    },
)

NONE_SUCCEEDED = (
    "no candidate succeeded, so there is no champion to pick; check the logs of the candidate (train) "
    "instances, where each failed candidate names its error (a failed fit writes no evaluation)"
)


def load_candidates(ctx: StepContext) -> list[dict[str, Any]]:
    """The candidates' evaluations; a step error naming that none succeeded when there is none to read."""
    if ctx.inputs.get("candidates") == []:
        raise StepError(f"input 'candidates' is empty: {NONE_SUCCEEDED}")
    uris = ctx.input_list("candidates")
    candidates, missing = [], []
    for uri in uris:
        try:
            handle = ctx.open_uri(uri, "r", what="input 'candidates'")
        except StepError:
            missing.append(uri)
            continue
        with handle:
            try:
                candidates.append(json.load(handle))
            except json.JSONDecodeError as exc:
                raise StepError(f"input 'candidates': {uri} is not a candidate evaluation JSON ({exc})") from None
    if not candidates:
        shown = ", ".join(uris[:3]) + (f" and {len(uris) - 3} more" if len(uris) > 3 else "")
        raise StepError(f"input 'candidates': none of the {len(uris)} evaluation(s) exists ({shown}): {NONE_SUCCEEDED}")
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise StepError(f"input 'candidates': {missing[0]} does not exist{more}")
    return candidates


def rank(candidates: list[dict[str, Any]], metric: str, higher_is_better: bool = True) -> list[dict[str, Any]]:
    """Candidates best first; the sort is stable, so ties keep their input order."""
    missing = [c.get("candidate", "?") for c in candidates if metric not in c.get("scores", {})]
    if missing:
        known = sorted({name for c in candidates for name in c.get("scores", {})})
        raise StepError(
            f"param 'metric': {metric!r} is not reported by candidate(s) {', '.join(missing)}; "
            f"metrics reported: {', '.join(known)}"
        )
    return sorted(candidates, key=lambda c: c["scores"][metric], reverse=higher_is_better)


def roc_plot(model: Any, x: Any, y: Any, title: str) -> bytes:
    """A PNG of the ROC curve on held-out data (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import RocCurveDisplay

    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    try:
        RocCurveDisplay.from_estimator(model, x, y, ax=ax)
        ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
        ax.set_title(title)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return buffer.getvalue()


def run(ctx: StepContext) -> None:
    metric = ctx.param("metric")
    higher_is_better = ctx.param("higher_is_better")
    target = ctx.param("target")
    ranked = rank(load_candidates(ctx), metric, higher_is_better)
    best = ranked[0]
    with ctx.open_uri(best["model"], what=f"model of candidate {best.get('candidate')!r}") as handle:
        model_bytes = handle.read()
    import joblib

    model = joblib.load(io.BytesIO(model_bytes))
    test = ctx.read_parquet("test")
    if target not in test.columns:
        raise StepError(f"input 'test': target column {target!r} is missing")
    ctx.write_bytes("model", model_bytes)
    ctx.write_json(
        "leaderboard",
        {"metric": metric, "higher_is_better": higher_is_better, "champion": best, "candidates": ranked},
    )
    ctx.write_bytes(
        "plot",
        roc_plot(model, test.drop(columns=[target]), test[target], f"ROC · champion {best.get('candidate')}"),
    )
    ctx.metrics.update(
        candidates=len(ranked),
        champion=str(best.get("candidate")),
        champion_algorithm=str(best.get("algorithm")),
        metric=metric,
        champion_score=best["scores"][metric],
    )
