"""featurize: split train/test and standardize features (fit on train only, so no test leakage)."""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from sluice_steps.contract import StepContext, StepError
from sluice_steps.spec import Artifact, Param, StepSpec

SPEC = StepSpec(
    name="featurize",
    summary="split train/test and standardize the features (fit on the training rows only)",
    params={
        "target": Param("string", "the target column", required=True),
        "drop": Param("array", "columns that are not features (ids)", default=[]),
        "test_size": Param("number", "share of rows held out for testing", default=0.25),
        "random_state": Param("integer", "seed of the split", default=0),
    },
    inputs={"data": Artifact("Parquet: the rows")},
    outputs={
        "train": Artifact("Parquet: the standardized training rows"),
        "test": Artifact("Parquet: the standardized test rows"),
        "transformer": Artifact("joblib: the fitted scaler and the feature columns"),
    },
)


def run(ctx: StepContext) -> None:
    frame = ctx.read_parquet("data")
    target = ctx.param("target")
    drop = ctx.param("drop")
    test_size = float(ctx.param("test_size"))
    seed = ctx.param("random_state")
    missing = [c for c in [target, *drop] if c not in frame.columns]
    if missing:
        raise StepError(
            f"input 'data': column(s) {', '.join(map(repr, missing))} missing; set target/drop to existing columns"
        )
    if not 0 < test_size < 1:
        raise StepError(f"param 'test_size' must be between 0 and 1, got {test_size}")
    features = frame.drop(columns=[target, *drop])
    non_numeric = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if non_numeric:
        raise StepError(
            f"input 'data': non-numeric feature column(s) {', '.join(map(repr, non_numeric))}; add them to drop"
        )
    stratify = frame[target] if frame[target].nunique() <= 20 else None
    x_train, x_test, y_train, y_test = train_test_split(
        features, frame[target], test_size=test_size, random_state=seed, stratify=stratify
    )
    scaler = StandardScaler().fit(x_train)
    train = pd.DataFrame(scaler.transform(x_train), columns=features.columns).assign(**{target: y_train.to_numpy()})
    test = pd.DataFrame(scaler.transform(x_test), columns=features.columns).assign(**{target: y_test.to_numpy()})
    ctx.write_parquet("train", train)
    ctx.write_parquet("test", test)
    ctx.write_joblib("transformer", {"scaler": scaler, "features": list(features.columns), "target": target})
    ctx.metrics.update(train_rows=len(train), test_rows=len(test), features=len(features.columns))
