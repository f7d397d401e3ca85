"""train_sample: one candidate algorithm fitted on the sample the featurize shards drew (a bounded size).

The candidates run in parallel (one mapped instance each); with an ``evaluation`` output each scores itself on
the ``holdout`` shards, for the champion step to compare with the out-of-core model. ``max_rows`` caps what is
read, so memory does not grow with the dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from sluice_steps.contract import StepContext, StepError
from sluice_steps.shards import BATCH_ROWS, feature_columns, iter_batches, write_evaluation, xy
from sluice_steps.spec import Artifact, Param, StepSpec

ALGORITHMS: dict[str, Callable[..., Any]] = {
    "logistic_regression": lambda **hp: LogisticRegression(max_iter=500, **hp),
    "hist_gradient_boosting": lambda **hp: HistGradientBoostingClassifier(**hp),
    "random_forest": lambda **hp: RandomForestClassifier(**{"n_estimators": 50, "max_depth": 10, **hp}),
}


SPEC = StepSpec(
    name="train_sample",
    summary="one candidate algorithm fitted on the featurize shards' sample (bounded in size)",
    params={
        "algorithm": Param("string", f"one of {', '.join(sorted(ALGORITHMS))}", required=True),
        "hyperparams": Param("object", "keyword arguments of the estimator", default={}),
        "max_rows": Param("integer", "rows of the sample read at most", default=50_000),
        "batch_rows": Param("integer", "rows held in memory at a time (evaluation)", default=BATCH_ROWS),
    },
    inputs={
        "sample": Artifact("Parquet: the featurize shards' samples (a fan-in)", many=True),
        "holdout": Artifact("Parquet: the held-out shards it scores itself on (with evaluation)", False, many=True),
    },
    outputs={
        "model": Artifact("joblib: the candidate's estimator and features"),
        "evaluation": Artifact("JSON: its scores on the holdout shards", required=False),
    },
)


def run(ctx: StepContext) -> None:
    algorithm = ctx.param("algorithm")
    if algorithm not in ALGORITHMS:
        raise StepError(f"param 'algorithm': {algorithm!r} is unknown; algorithms: {', '.join(sorted(ALGORITHMS))}")
    hyperparams = ctx.param("hyperparams")
    max_rows = ctx.param("max_rows")
    tables: list[pa.Table] = []
    rows = 0
    for uri in ctx.input_list("sample"):
        for batch in iter_batches(uri):
            take = batch.slice(0, max_rows - rows)
            tables.append(pa.Table.from_batches([take]))
            rows += take.num_rows
            if rows >= max_rows:
                break
        if rows >= max_rows:
            break
    if not rows:
        raise StepError("input 'sample': the sample holds no rows")
    x, y = xy(pa.concat_tables(tables))
    if len(np.unique(y)) < 2:
        raise StepError(f"input 'sample': {rows} rows of one class only; raise the featurize step's sample_rows")
    try:
        model = ALGORITHMS[algorithm](random_state=0, **hyperparams)
        model.fit(x, y)
    except (TypeError, ValueError) as exc:
        raise StepError(f"param 'hyperparams' of {algorithm}: {exc}") from None
    names = feature_columns(tables[0].schema)
    uri = ctx.write_joblib("model", {"candidate": algorithm, "estimator": model, "features": names})
    write_evaluation(ctx, algorithm, uri, model)
    ctx.metrics.update(candidate=algorithm, rows=rows, train_accuracy=round(float(model.score(x, y)), 6))
