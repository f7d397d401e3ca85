"""evaluate: score the model on held-out data; the quality gate fails the run below a threshold."""

from __future__ import annotations

from typing import Any

from sklearn import metrics

from sluice_steps.contract import StepContext, StepError
from sluice_steps.spec import Artifact, Param, StepSpec

SPEC = StepSpec(
    name="evaluate",
    summary="score a model on held-out rows; a quality gate fails the step below a threshold",
    params={
        "target": Param("string", "the target column of the test set", required=True),
        "metric": Param("string", "the metric the gate compares", default="roc_auc"),
        "threshold": Param(("number", "null"), "the gate: fail when the metric is below it (null: no gate)"),
    },
    inputs={"model": Artifact("the model (joblib)"), "test": Artifact("Parquet: the held-out rows")},
    outputs={"metrics": Artifact("JSON: the metric, the threshold and every score")},
)


def score(model: Any, x: Any, y: Any) -> dict[str, float]:
    """The classification scores every evaluating step reports (rounded to 6 digits)."""
    predicted = model.predict(x)
    average = "binary" if y.nunique() == 2 else "macro"
    scores = {
        "accuracy": metrics.accuracy_score(y, predicted),
        "f1": metrics.f1_score(y, predicted, average=average, zero_division=0),
        "precision": metrics.precision_score(y, predicted, average=average, zero_division=0),
        "recall": metrics.recall_score(y, predicted, average=average, zero_division=0),
    }
    if hasattr(model, "predict_proba") and y.nunique() == 2:
        scores["roc_auc"] = metrics.roc_auc_score(y, model.predict_proba(x)[:, 1])
    return {name: round(float(value), 6) for name, value in scores.items()}


def run(ctx: StepContext) -> None:
    model = ctx.read_joblib("model")
    test = ctx.read_parquet("test")
    target = ctx.param("target")
    if target not in test.columns:
        raise StepError(f"input 'test': target column {target!r} is missing")
    scores = score(model, test.drop(columns=[target]), test[target])
    metric = ctx.param("metric")
    if metric not in scores:
        raise StepError(f"param 'metric': {metric!r} is not computed; metrics: {', '.join(sorted(scores))}")
    threshold = ctx.param("threshold")
    if threshold is not None:
        threshold = float(threshold)
        if scores[metric] < threshold:
            raise StepError(f"quality gate failed: {metric} {scores[metric]:.4f} < threshold {threshold:.4f}")
    ctx.write_json("metrics", {"metric": metric, "threshold": threshold, "scores": scores, "test_rows": len(test)})
    ctx.metrics.update(scores, test_rows=len(test))
