"""What a data scientist would write instead of the sharded pipeline: one process, polars and scikit-learn.

    python bench/baseline_polars.py DATA [--out DIR] [--sample-rows 50000] [--holdout-fraction 0.2] [--json]

DATA is a folder of the generated Parquet shards (``python -m sluice_steps.synth DATA --rows ...``; this script
only reads the files). It does the pipeline's work (dags/sharded_training.py) the idiomatic way, with the
whole dataset in memory: de-duplicate by id, log1p the amount, standardize the numerics with the training rows'
mean and (population) standard deviation, impute missing values with the mean, flag a missing amount, one-hot
the region (a missing one is a category of its own); then fit the same candidates with the same
hyper-parameters — averaged SGD over every training row (one epoch), and logistic regression, histogram
gradient boosting and a random forest on a 50 k-row sample of the training rows — score each on the same
held-out shards (the last 20 % of the files, at least one each side), and score every row with the best.

Independent on purpose: it imports nothing of Sluice's (no ``sluice_steps``), so ``make bench-scale``
(bench/scale.py) can report every other way of running the pipeline as a ratio to it. Prints seconds per phase,
peak resident memory and each model's held-out ROC AUC; ``--json`` prints them as one JSON line instead.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.metrics import log_loss, roc_auc_score

FEATURES = [f"f{i:02d}" for i in range(16)]
NUMERIC = [*FEATURES, "log_amount"]
MISSING = "__missing__"


def candidates() -> dict[str, Any]:
    """The DAG's candidates (CANDIDATES in dags/sharded_training.py) with its steps' settings, random_state 0.
    One epoch of SGD: ``max_iter=1, tol=None`` is the idiomatic form of the pipeline's one pass of partial_fit."""
    return {
        "sgd_out_of_core": SGDClassifier(
            loss="log_loss", alpha=1e-4, average=True, max_iter=1, tol=None, random_state=0
        ),
        "logistic_regression": LogisticRegression(max_iter=500, random_state=0),
        "hist_gradient_boosting": HistGradientBoostingClassifier(max_iter=100, random_state=0),
        "random_forest": RandomForestClassifier(n_estimators=50, max_depth=10, random_state=0),
    }


def split_files(data: Path, holdout_fraction: float) -> tuple[list[Path], list[Path]]:
    """The pipeline's split: the last shards (file order) are held out, at least one each side."""
    files = sorted(data.glob("*.parquet"))
    if len(files) < 2:
        raise SystemExit(f"{data}: {len(files)} Parquet shard(s); holding shards out needs at least 2")
    holdout = min(len(files) - 1, max(1, round(len(files) * holdout_fraction)))
    return files[:-holdout], files[-holdout:]


def cleaned(files: list[Path]) -> pl.LazyFrame:
    """Rows de-duplicated by id (the first kept), with log1p of the (non-negative) amount and its missing flag."""
    return (
        pl.scan_parquet(files)
        .unique(subset="id", keep="first", maintain_order=True)
        .with_columns(
            pl.col("amount").clip(lower_bound=0).log1p().alias("log_amount"),
            pl.col("amount").is_null().cast(pl.Float32).alias("amount_missing"),
            pl.col("region").fill_null(MISSING),
        )
    )


def features(frame: pl.LazyFrame, stats: dict[str, Any], vocabulary: list[str]) -> pl.LazyFrame:
    """Standardized numerics (nulls → the mean, 0), the missing flag, one-hot regions; then the label and id."""
    numeric = [
        ((pl.col(n) - stats[f"{n}_mean"]) / (stats[f"{n}_std"] or 1.0)).fill_null(0.0).cast(pl.Float32).alias(n)
        for n in NUMERIC
    ]
    regions = [(pl.col("region") == v).cast(pl.Float32).alias(f"region={v}") for v in vocabulary]
    return frame.select("id", *numeric, "amount_missing", *regions, "label")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="folder of the generated Parquet shards")
    parser.add_argument("--out", type=Path, help="where scores.parquet goes (default: a temporary folder)")
    parser.add_argument("--sample-rows", type=int, default=50_000, help="rows the sample-trained candidates get")
    parser.add_argument("--holdout-fraction", type=float, default=0.2)
    parser.add_argument("--json", action="store_true", help="print one JSON line (what bench/scale.py reads)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=ConvergenceWarning)  # one SGD epoch, as the pipeline's
    phases: dict[str, float] = {}
    started = clock = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[name] = round(now - clock, 3)
        clock = now

    train_files, holdout_files = split_files(args.data, args.holdout_fraction)
    # Cleaned once, in memory: the statistics, the vocabulary and the features all read it (a lazy frame would
    # scan and de-duplicate the files once per collect: measured at 20 M rows, 34.8 s for this phase, not ~15).
    train = cleaned(train_files).collect()
    stats = train.select(
        *(pl.col(n).mean().alias(f"{n}_mean") for n in NUMERIC),
        *(pl.col(n).std(ddof=0).alias(f"{n}_std") for n in NUMERIC),
    )
    figures = stats.row(0, named=True)
    vocabulary = sorted(train["region"].unique().to_list())
    train_frame = features(train.lazy(), figures, vocabulary).collect()
    del train
    holdout_frame = features(cleaned(holdout_files), figures, vocabulary).collect()
    names = [c for c in train_frame.columns if c not in ("id", "label")]
    x_train, y_train = train_frame.select(names).to_numpy(), train_frame["label"].to_numpy()
    x_holdout, y_holdout = holdout_frame.select(names).to_numpy(), holdout_frame["label"].to_numpy()
    phase("prepare")

    sample = train_frame.sample(n=min(args.sample_rows, train_frame.height), seed=0)
    x_sample, y_sample = sample.select(names).to_numpy(), sample["label"].to_numpy()
    models: dict[str, dict[str, Any]] = {}
    for name, model in candidates().items():
        tick = time.perf_counter()
        if name == "sgd_out_of_core":
            model.fit(x_train, y_train)  # every training row
        else:
            model.fit(x_sample, y_sample)
        scores = model.predict_proba(x_holdout)[:, 1]
        models[name] = {
            "estimator": model,
            "roc_auc": round(float(roc_auc_score(y_holdout, scores)), 6),
            "log_loss": round(float(log_loss(y_holdout, scores)), 6),
            "seconds": round(time.perf_counter() - tick, 3),
        }
    phase("train and evaluate")

    champion = max(models, key=lambda name: models[name]["roc_auc"])
    best = models[champion]["estimator"]
    out = args.out or Path(tempfile.mkdtemp(prefix="sluice-baseline-polars-"))
    out.mkdir(parents=True, exist_ok=True)
    scored = pl.concat(
        [
            frame.select("id").with_columns(pl.Series("score", best.predict_proba(x)[:, 1].astype(np.float32)))
            for frame, x in ((train_frame, x_train), (holdout_frame, x_holdout))
        ]
    ).with_columns((pl.col("score") >= 0.5).cast(pl.Int8).alias("prediction"), pl.lit(champion).alias("model"))
    scored.write_parquet(out / "scores.parquet")
    phase("score")

    result: dict[str, Any] = {
        "seconds": round(time.perf_counter() - started, 3),
        "phases": phases,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rows": train_frame.height + holdout_frame.height,
        "train_rows": train_frame.height,
        "holdout_rows": holdout_frame.height,
        "sample_rows": sample.height,
        "shards": {"train": len(train_files), "holdout": len(holdout_files)},
        "models": {name: {k: v for k, v in m.items() if k != "estimator"} for name, m in models.items()},
        "champion": champion,
        "scores": str(out / "scores.parquet"),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['rows']:,} rows ({result['train_rows']:,} training, {result['holdout_rows']:,} held out)")
    print(f"{result['seconds']:.1f} s ({', '.join(f'{k} {v:.1f} s' for k, v in phases.items())}), ", end="")
    print(f"peak RSS {result['peak_rss_bytes'] / 2**20:,.0f} MiB")
    for name, figures_ in result["models"].items():
        print(f"  {name:24} held-out ROC AUC {figures_['roc_auc']:.4f}  log loss {figures_['log_loss']:.4f}")
    print(f"champion: {champion}; scores at {result['scores']}")


if __name__ == "__main__":
    main()
