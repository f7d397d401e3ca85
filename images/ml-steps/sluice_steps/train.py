"""train: fit a scikit-learn estimator chosen by name from a registry (easy to extend).

With an ``evaluation`` output (and a ``test`` input) it also scores the model on held-out data and writes
one grid candidate's evaluation (what the ``champion`` step compares): the training pipeline maps this step
over a grid of algorithms × hyperparameters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC

from sluice_steps.contract import StepContext, StepError
from sluice_steps.spec import Artifact, Param, StepSpec

ALGORITHMS: dict[str, Callable[..., Any]] = {
    "logistic_regression": lambda **hp: LogisticRegression(max_iter=1000, **hp),
    "random_forest": lambda **hp: RandomForestClassifier(**hp),
    "gradient_boosting": lambda **hp: GradientBoostingClassifier(**hp),
    "svc": lambda **hp: SVC(probability=True, **hp),
    "knn": lambda **hp: KNeighborsClassifier(**hp),
}
SEEDED = {"logistic_regression", "random_forest", "gradient_boosting", "svc"}
SPEC = StepSpec(
    name="train",
    summary="fit a scikit-learn estimator chosen by name; with an evaluation output, score it on the test set",
    params={
        "target": Param("string", "the target column", required=True),
        "algorithm": Param("string", f"one of {', '.join(sorted(ALGORITHMS))}", required=True),
        "hyperparams": Param("object", "keyword arguments of the estimator", default={}),
        "random_state": Param("integer", "seed of the seeded estimators", default=0),
        "candidate": Param(("string", "null"), "the candidate's name in its evaluation (default: the algorithm)"),
    },
    inputs={
        "train": Artifact("Parquet: the training rows"),
        "test": Artifact("Parquet: the test rows (with an evaluation output)", required=False),
    },
    outputs={
        "model": Artifact("joblib: the fitted estimator"),
        "evaluation": Artifact("JSON: one grid candidate's scores on the test rows", required=False),
    },
)


def build(algorithm: str, hyperparams: dict[str, Any], seed: int) -> Any:
    if algorithm not in ALGORITHMS:
        raise StepError(f"param 'algorithm': {algorithm!r} is unknown; algorithms: {', '.join(sorted(ALGORITHMS))}")
    if algorithm in SEEDED:
        hyperparams = {"random_state": seed, **hyperparams}
    try:
        return ALGORITHMS[algorithm](**hyperparams)
    except TypeError as exc:
        raise StepError(f"param 'hyperparams': {exc}") from None


def run(ctx: StepContext) -> None:
    frame = ctx.read_parquet("train")
    target = ctx.param("target")
    if target not in frame.columns:
        raise StepError(f"input 'train': target column {target!r} is missing")
    algorithm = ctx.param("algorithm")
    model = build(algorithm, ctx.param("hyperparams"), ctx.param("random_state"))
    x, y = frame.drop(columns=[target]), frame[target]
    started = time.perf_counter()
    try:
        model.fit(x, y)
    except ValueError as exc:
        raise StepError(f"training failed: {exc}") from None
    model_uri = ctx.write_joblib("model", model)
    if "evaluation" in ctx.outputs:
        from sluice_steps.evaluate import score

        test = ctx.read_parquet("test")
        if target not in test.columns:
            raise StepError(f"input 'test': target column {target!r} is missing")
        scores = score(model, test.drop(columns=[target]), test[target])
        ctx.write_json(
            "evaluation",
            {
                "candidate": ctx.param("candidate") or algorithm,
                "algorithm": algorithm,
                "hyperparams": ctx.param("hyperparams"),
                "model": model_uri,
                "scores": scores,
                "test_rows": len(test),
            },
        )
        ctx.metrics.update({f"test_{name}": value for name, value in scores.items()})
    ctx.metrics.update(
        train_rows=len(frame),
        fit_seconds=round(time.perf_counter() - started, 4),
        train_accuracy=round(float(model.score(x, y)), 6),
        algorithm=algorithm,
    )
